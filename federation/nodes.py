"""Running one node as an OS process: servers, clients, outputs (the gRPC edge).

Each node prints ``LISTENING host:port`` on stdout as soon as its mutual-TLS server is
bound (a party serving the TLS data plane prints ``DATA PLANE host:port`` just before), then
runs its job. The coordinator also reports stage changes and epoch losses on
stdout: as readable lines for an operator, or as ``EVENT {json}`` lines when started by
``simulate`` (``GRIDCREDIT_EVENTS=1``), which turns them into a progress display. Exit codes
are ``ExitCode`` values; the last stderr line of a failed node is its reason.

A node stops by itself when the process that started it is gone (``federation.lifeline``);
a party also when its coordinator stops answering. A party whose job fails, for whatever
reason, removes the outputs it wrote in this run (model, predictions, statistics, scores)
and keeps its audit log and checkpoints.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import sys
import threading
import time
from dataclasses import replace
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from federation.config import CoordinatorConfig, NetworkConfig
from federation.coordinator import Coordinator
from federation.job_stages import JobStage
from federation.lifeline import stop_self, watch_parent
from federation.processes import EVENTS_ENV
from federation.protocol.errors import ConfigError, InputDataError, VflError
from federation.protocol.files import write_atomic
from federation.protocol.messages import PsiProtocol, Role, peer_of
from federation.run_folder import ensure_folder, remove_written, stamp
from federation.transport.audit import AuditLog
from federation.transport.certs import check_own_certificate
from federation.transport.channel import Channel, Inbox, PeerStream
from federation.transport.data_plane import advertised_port, open_channel, tls_plane_wanted
from federation.transport.grpc_client import (
    GrpcCoordinatorLink,
    watch_coordinator,
    watch_parties,
)
from federation.transport.grpc_server import add_coordinator, add_party, start_server
from federation.transport.tls_plane import DataListener

if TYPE_CHECKING:  # the party's modules (pandas among them) load in a party process only
    from parties.node import PartyConfig
    from parties.screen_step import ScreenConfig

log = logging.getLogger(__name__)
FAILING_FLUSH_SECONDS = 2.0  # a failing party's last wait for undelivered messages
TELL_SECONDS = 5.0  # a failed job's coordinator waits this long for a party still starting up
PARTY_HOLD = 64  # audit entries a party holds for one write (federation.transport.audit)
# What a party removes when its job fails (audit log and checkpoints stay).
PARTY_OUTPUTS = ("model.json", "coefficients.csv", "predictions.csv",
                 "bank_only_predictions.csv", "metrics.json", "stats.json", "scores.csv")


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1
    BAD_INPUT = 2
    PEER_FAILED = 3


def bound_native_heap() -> None:
    """Large numpy temporaries go back to the OS when freed (glibc only; elsewhere a no-op).

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after
    which blocks of that size come from the heap and, once freed, mostly stay in the
    process: a node that allocates temporaries of a few to tens of MB per step (the tree
    jobs' row blocks) then grows by hundreds of MB. A fixed threshold (1 MiB) and a trim
    threshold keep its resident memory at what it uses.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 20)
    mallopt(m_trim_threshold, 1 << 20)


def single_threaded_blas() -> None:
    """BLAS on one thread in this node process.

    A node shares the machine with the other two (on 2 cores in the benchmarks), and its
    products are thin (the bin product's E^T m: 440 x 4096 x 3 per row chunk). OpenBLAS's
    worker threads spin while they wait for work: six 40 x 4096 x 12 products took 37 ms
    of process CPU with its default threads against 1.4 ms on one, and the screening
    dealer 1.35 s against 0.27 s (docs/design.md, "Screening").
    """
    threadpool_limits(1, user_api="blas")


def cpu_seconds() -> float:
    """CPU time this process has used so far (user + system, all threads): unlike wall time,
    it hardly changes when other jobs load the machine."""
    t = os.times()
    return t.user + t.system


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would start from the
    parent's size when a node is forked and exec'd by simulate)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exit_code_for(exc: VflError) -> ExitCode:
    if isinstance(exc, (ConfigError, InputDataError)):
        return ExitCode.BAD_INPUT
    return ExitCode.JOB_FAILED


def _announce(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0] or "127.0.0.1"
    address = f"{host}:{port}"
    print(f"LISTENING {address}", flush=True)
    return address


def _event_line(payload: dict[str, object]) -> str:
    """An event as an operator reads it (``simulate`` reads the JSON form instead)."""
    kind = payload.get("event")
    if kind == "epoch":
        return (f"epoch {payload['epoch']}/{payload.get('epochs', '?')}: mean Taylor loss "
                f"{float(str(payload['loss'])):.6f}")
    if kind == "aligned":
        return f"aligned {payload['intersection_size']} enterprises by PSI"
    if kind == "failed":
        return f"job failed: {payload['reason']}"
    if kind == "stage":
        return f"stage: {payload['stage']}"
    if kind == "joined":
        return f"{payload['role']} joined"
    details = ", ".join(f"{k} {v}" for k, v in payload.items() if k != "event")
    return f"{kind}: {details}" if details else str(kind)


def print_event(payload: dict[str, object]) -> None:
    """One event on stdout; a closed stdout (the reader is gone) never fails the job here:
    the parent watch stops a node whose ``simulate`` is gone."""
    line = ("EVENT " + json.dumps(payload) if os.environ.get(EVENTS_ENV) == "1"
            else _event_line(payload))
    try:
        print(line, flush=True)
    except OSError as exc:  # BrokenPipeError when simulate was killed
        log.info("event not printed: %s", exc)


def run_coordinator(cfg: CoordinatorConfig) -> ExitCode:
    net = cfg.network
    bound_native_heap()
    single_threaded_blas()
    check_own_certificate(net.certs, Role.COORDINATOR)
    ensure_folder(net.out)
    watch_parent()
    audit = AuditLog(net.out / "audit.jsonl", Role.COORDINATOR.value,
                     net.certs.key.read_bytes(), job=net.job_id, ca_pem=net.certs.ca.read_bytes())
    coordinator = Coordinator(net.job_id, cfg.settings, barrier_timeout=cfg.barrier_timeout,
                              on_event=print_event)
    try:
        server, port = start_server(net.certs, net.listen, add_coordinator(coordinator, audit))
    except BaseException:
        audit.close()
        raise
    _announce(net.listen, port)
    watch_parties(coordinator, net.certs)
    try:
        stage = coordinator.wait_finished(cfg.job_timeout)
        summary: dict[str, Any] = {
            "job_id": net.job_id, "pid": os.getpid(), "stage": stage.value,
            "failure": coordinator.failure, "intersection_size": coordinator.intersection_size,
            "losses": coordinator.losses, "delta_norms": coordinator.delta_norms,
            "validation_losses": coordinator.validation_losses,
            "kept_trees": coordinator.kept_trees,
            "stop_reason": coordinator.stop_reason,
            "stage_seconds": coordinator.stage_seconds,
            "psi_sizes": coordinator.psi.sizes,
            "psi_match_seconds": coordinator.psi.seconds,
            "peak_rss_mb": peak_rss_mb(), "cpu_seconds": cpu_seconds(),
            "settings": cfg.settings.as_dict(),
        }
        write_atomic(net.out / "job.json", json.dumps(summary, indent=2) + "\n")
        if stage is JobStage.FAILED:  # a party still starting up gets the reason, not silence
            coordinator.wait_told(TELL_SECONDS)
        time.sleep(0.2)  # let the last barrier replies reach both parties
    finally:
        server.stop(grace=1.0).wait(5)
        audit.close()
    if stage is not JobStage.DONE:
        print(f"error: coordinator: job {net.job_id} failed: {coordinator.failure}",
              file=sys.stderr, flush=True)
        return ExitCode.JOB_FAILED
    return ExitCode.OK


def run_party(net: NetworkConfig, party: PartyConfig, deadline: float,
              barrier_wait: float) -> ExitCode:
    from parties.node import PartyNode

    role = net.role
    bound_native_heap()
    single_threaded_blas()
    check_own_certificate(net.certs, role)
    before = stamp(ensure_folder(net.out), PARTY_OUTPUTS)
    watch_parent()
    audit = AuditLog(net.out / "audit.jsonl", role.value, net.certs.key.read_bytes(),
                     job=net.job_id, ca_pem=net.certs.ca.read_bytes(), hold=PARTY_HOLD)
    inbox = Inbox(net.job_id, peer_of(role), max_message_bytes=None)  # bound: from the plan
    plane: DataListener | None = None
    try:
        if tls_plane_wanted():
            plane = DataListener(net.certs, net.listen.rpartition(":")[0].strip("[]"), inbox,
                                 audit, net.data_port, direct=True)
        server, port = start_server(net.certs, net.listen, add_party(
            inbox, audit, advertised_port(plane.port) if plane else 0))
    except BaseException:
        if plane is not None:
            plane.close()
        audit.close()
        raise
    if plane is not None:  # before LISTENING: a forwarder started with the node needs it
        print(f"DATA PLANE {net.listen.rsplit(':', 1)[0] or '127.0.0.1'}:{plane.port}",
              flush=True)
    address = _announce(net.listen, port)
    if net.advertise:
        address = net.advertise
    link = GrpcCoordinatorLink(role, net.coordinator, net.certs, audit, deadline, barrier_wait,
                               on_plan=lambda plan: inbox.set_limit(plan.max_message_bytes))
    channels: list[PeerStream] = []
    over = threading.Event()
    failing = False

    def coordinator_gone(why: str) -> None:  # from the watcher thread
        link.gone = True
        stop_self(f"{role}: {why}")

    watch_coordinator(net.coordinator, net.certs, coordinator_gone, over, grace=deadline)

    def connect(peer_address: str) -> Channel:
        channel = open_channel(role, peer_address, net.certs, inbox, audit, deadline, plane)
        channels.append(channel)
        return channel

    def on_epoch(epoch: int, loss: float) -> None:
        log.info("%s: epoch %d, mean Taylor loss %.6f", role, epoch, loss)

    try:
        node = PartyNode(replace(party, out=net.out), link, connect, address, on_epoch)
        stats = node.run()
        over.set()  # the job is over: the coordinator may exit now
        stats["bytes_sent_to_coordinator"] = link.bytes_sent
        stats["peak_rss_mb"] = peak_rss_mb()
        stats["cpu_seconds"] = cpu_seconds()
        write_atomic(net.out / "stats.json", json.dumps(stats, indent=2) + "\n")
    except BaseException:
        over.set()
        failing = True
        remove_written(net.out, before)
        raise
    finally:
        over.set()
        for channel in channels:  # a failing node told its peer already (or could not)
            channel.close(timeout=FAILING_FLUSH_SECONDS if failing else None)
        link.close()
        server.stop(grace=1.0).wait(5)
        if plane is not None:
            plane.close()
        audit.close()
    return ExitCode.OK


def screen_config(table: dict[str, Any] | None) -> ScreenConfig | None:
    """The [screen] table of a party's config (None: not a screening node)."""
    from parties.screen_step import ScreenConfig

    if table is None:
        return None
    bins = table.get("bins", 10)
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 256:
        raise ConfigError(f"[screen] bins = {bins!r}: expected an integer in [2, 256]")
    reveal = table.get("reveal_to_grid", "none")
    if reveal not in ("none", "summary"):
        raise ConfigError(f"[screen] reveal_to_grid = {reveal!r}: expected 'none' or 'summary'")
    merge = table.get("monotone_merge", False)
    if not isinstance(merge, bool):
        raise ConfigError(f"[screen] monotone_merge = {merge!r}: expected true or false")
    rules, compare = table.get("rules"), table.get("compare")
    return ScreenConfig(bins, Path(rules) if rules else None, reveal, merge,
                        Path(compare) if compare else None)


def party_config(net: NetworkConfig, data: dict[str, Any], deadline: float,
                 screen: dict[str, Any] | None = None) -> PartyConfig:
    from parties.node import PartyConfig
    from parties.pca import parse_components

    if "path" not in data:
        raise ConfigError(f"{net.role}: no data file given ([data] path or --data)")
    model = data.get("model")
    psi = data.get("psi")
    try:
        required = PsiProtocol(psi) if psi is not None else None
    except ValueError:
        raise ConfigError(f"{net.role}: [data] psi = {psi!r}: expected 'server-aided' or "
                          "'ecdh'") from None
    features = data.get("features")
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) for f in features)):
        raise ConfigError(f"{net.role}: [data] features must be a list of column names")
    try:
        pca = parse_components(data.get("pca"))
    except ValueError as exc:
        raise ConfigError(f"{net.role}: [data] pca: {exc}") from exc
    return PartyConfig(role=net.role, job_id=net.job_id, data=Path(data["path"]), out=net.out,
                       id_column=data.get("id_column", "id"),
                       label_column=data.get("label_column", "y"),
                       model=Path(model) if model else None,
                       psi_workers=data.get("psi_workers"), deadline_seconds=deadline,
                       psi=required,
                       features=None if features is None else tuple(features), pca=pca,
                       screen=screen_config(screen))
