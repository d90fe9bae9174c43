"""Running one node as an OS process: servers, clients, outputs (the gRPC edge).

Each node prints ``LISTENING host:port`` on stdout as soon as its mutual-TLS server is
bound, then runs its job. The coordinator also prints ``EVENT {json}`` lines (stage
changes, epoch losses) that ``simulate`` turns into a progress display. Exit codes are
``ExitCode`` values; the last stderr line of a failed node is its reason.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import sys
import time
from dataclasses import replace
from enum import IntEnum
from pathlib import Path
from typing import Any

from federation.config import CoordinatorConfig, NetworkConfig
from federation.coordinator import Coordinator, JobStage
from federation.protocol.errors import ConfigError, InputDataError, VflError
from federation.protocol.messages import Role, peer_of
from federation.transport.audit import AuditLog
from federation.transport.certs import check_own_certificate
from federation.transport.channel import Inbox
from federation.transport.grpc_client import GrpcChannel, GrpcCoordinatorLink, watch_parties
from federation.transport.grpc_server import add_coordinator, add_party, start_server
from parties.model import atomic_write_text
from parties.node import PartyConfig, PartyNode

log = logging.getLogger(__name__)


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


def run_coordinator(cfg: CoordinatorConfig) -> ExitCode:
    net = cfg.network
    bound_native_heap()
    check_own_certificate(net.certs, Role.COORDINATOR)
    net.out.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(net.out / "audit.jsonl", Role.COORDINATOR.value,
                     net.certs.key.read_bytes())

    def event(payload: dict[str, object]) -> None:
        print("EVENT " + json.dumps(payload), flush=True)

    coordinator = Coordinator(net.job_id, cfg.settings, barrier_timeout=cfg.barrier_timeout,
                              on_event=event)
    server, port = start_server(net.certs, net.listen, add_coordinator(coordinator, audit))
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
            "stage_seconds": coordinator.stage_seconds,
            "peak_rss_mb": peak_rss_mb(), "cpu_seconds": cpu_seconds(),
            "settings": cfg.settings.as_dict(),
        }
        atomic_write_text(net.out / "job.json", json.dumps(summary, indent=2) + "\n")
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
    role = net.role
    bound_native_heap()
    check_own_certificate(net.certs, role)
    net.out.mkdir(parents=True, exist_ok=True)
    audit = AuditLog(net.out / "audit.jsonl", role.value, net.certs.key.read_bytes())
    inbox = Inbox(net.job_id, peer_of(role))
    server, port = start_server(net.certs, net.listen, add_party(inbox, audit))
    address = _announce(net.listen, port)
    if net.advertise:
        address = net.advertise
    link = GrpcCoordinatorLink(role, net.coordinator, net.certs, audit, deadline, barrier_wait)
    channels: list[GrpcChannel] = []

    def connect(peer_address: str) -> GrpcChannel:
        channel = GrpcChannel(role, peer_address, net.certs, inbox, audit, deadline)
        channels.append(channel)
        return channel

    def on_epoch(epoch: int, loss: float) -> None:
        log.info("%s: epoch %d, mean Taylor loss %.6f", role, epoch, loss)

    try:
        node = PartyNode(replace(party, out=net.out), link, connect, address, on_epoch)
        stats = node.run()
        stats["bytes_sent_to_coordinator"] = link.bytes_sent
        stats["peak_rss_mb"] = peak_rss_mb()
        stats["cpu_seconds"] = cpu_seconds()
        atomic_write_text(net.out / "stats.json", json.dumps(stats, indent=2) + "\n")
    finally:
        for channel in channels:
            channel.close()
        link.close()
        server.stop(grace=1.0).wait(5)
        audit.close()
    return ExitCode.OK


def party_config(net: NetworkConfig, data: dict[str, Any], deadline: float) -> PartyConfig:
    if "path" not in data:
        raise ConfigError(f"{net.role}: no data file given ([data] path or --data)")
    model = data.get("model")
    return PartyConfig(role=net.role, job_id=net.job_id, data=Path(data["path"]), out=net.out,
                       id_column=data.get("id_column", "id"),
                       label_column=data.get("label_column", "y"),
                       model=Path(model) if model else None,
                       psi_workers=data.get("psi_workers"), deadline_seconds=deadline)
