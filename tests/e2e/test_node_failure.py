"""Killing the grid in the middle of training: the others notice in time and stop cleanly.

Three real node processes (as ``simulate`` starts them) train on synthetic CSVs long
enough to be killed mid-way: the grid gets SIGKILL right after the coordinator's EVENT
line for epoch 2. The bank must notice within the configured peer deadline, tell the
coordinator, and both must exit non-zero naming the grid; no model, prediction, metric
or statistics file may exist and no temporary file may be left behind. Each surviving
audit log (and the killed grid's) must still verify as a chain. The same fault is then
injected into ``gridcredit simulate`` itself, which must exit non-zero naming the grid
and write no report.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from federation.audit_cli import main as audit_main
from federation.processes import NodeFailed, NodeProcess, supervise
from federation.protocol.errors import PeerUnavailable, VflError
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Inbox
from federation.transport.stream import GrpcChannel
from tests.conftest import REPO
from tests.e2e import nodes_helper as nh

pytestmark = pytest.mark.e2e
DEADLINE = 5.0  # --deadline of the job: how long any node waits for a peer's message
# Exit after noticing: the failing party's abort notice, its Fail call to the coordinator and
# each server's 1 s shutdown grace come on top of the deadline.
# The bounds leave room for a machine whose cores are all busy (a starved process exits
# late); a node that waited for the job timeout instead would take minutes.
BANK_EXIT_BOUND = DEADLINE + 10.0
COORDINATOR_EXIT_BOUND = DEADLINE + 12.0
KILL_AFTER_EPOCH = 2
EPOCHS = 200  # far more than run before the kill: training is still going on
OUTPUTS = ("model.json", "coefficients.csv", "predictions.csv", "bank_only_predictions.csv",
           "metrics.json", "stats.json", "scores.csv", "report.json", "summary.md")


@dataclass(frozen=True)
class Killed:
    """What happened after the grid was killed."""

    mode: str
    root: Path
    nodes: dict[str, NodeProcess]
    exited_after: dict[str, float]  # seconds from the kill to each process's exit
    codes: dict[str, int | None]
    errors: dict[str, str]  # each node's last 'error:' line
    supervised: str  # the NodeFailed message supervise() (simulate's watcher) raises
    epoch_at_kill: int


@pytest.fixture(scope="module", params=["shared", "local"])
def killed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Killed]:
    mode: str = request.param
    root = tmp_path_factory.mktemp(f"kill-{mode}")
    grid_csv, bank_csv = nh.write_party_csvs(root / "data", n=3000)
    certs = root / "certs"
    write_federation(certs)
    config = nh.job_toml(root / "party.toml", DEADLINE)
    job = f"kill-{mode}"
    coordinator = nh.coordinator(root / "coordinator", certs, job, "--mode", mode,
                                 "--epochs", str(EPOCHS), "--batch-size", "32",
                                 "--deadline", str(DEADLINE), "--tolerance", "0")
    nodes = {"coordinator": coordinator}
    try:
        coordinator.start()
        address = coordinator.wait_listening(nh.START_TIMEOUT)
        for role, data in (("grid", grid_csv), ("bank", bank_csv)):
            nodes[role] = nh.party(role, root / role, certs, job, address, data, config)
            nodes[role].start()
        event = nh.wait_event(coordinator, lambda e: e.get("event") == "epoch"
                              and int(e["epoch"]) >= KILL_AFTER_EPOCH, 120,
                              watch=[nodes["grid"], nodes["bank"]])
        assert not event["stop"], event
        nh.kill(nodes["grid"].pid)
        killed_at = time.monotonic()
        exited = nh.wait_exits(nodes.values(), killed_at, DEADLINE + 30)
        with pytest.raises(NodeFailed) as failed:
            supervise(list(nodes.values()), 10, lambda e: None, coordinator)
        yield Killed(mode, root, nodes, exited,
                     {name: node.returncode() for name, node in nodes.items()},
                     {name: nh.error_line(node) for name, node in nodes.items()},
                     str(failed.value), int(event["epoch"]))
    finally:
        nh.stop_all(nodes.values())


def test_bank_and_coordinator_stop_within_the_deadline(killed: Killed) -> None:
    print(f"\n[{killed.mode}] killed at epoch {killed.epoch_at_kill}; exit after kill: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(killed.exited_after.items())))
    context = nh.tails(killed.nodes.values())
    assert killed.codes["grid"] == -9, context
    for name, bound in (("bank", BANK_EXIT_BOUND), ("coordinator", COORDINATOR_EXIT_BOUND)):
        assert name in killed.exited_after, f"{name} still running\n{context}"
        assert killed.exited_after[name] <= bound, (name, killed.exited_after[name], context)
        assert killed.codes[name] not in (None, 0), context
    # Nobody gave up on the grid before it was killed. (The bank may notice at once: the
    # grid's stream breaks without its closing frame.)
    assert killed.exited_after["bank"] > 0.0


def test_every_report_names_the_grid(killed: Killed) -> None:
    context = nh.tails(killed.nodes.values())
    bank, coordinator = killed.errors["bank"], killed.errors["coordinator"]
    assert bank.startswith("error: ") and "grid" in bank, context
    # Two paths race and both are right: the bank reports that its peer is gone, or the
    # coordinator's health check sees the dead grid first. Either way the grid is named.
    prefix = f"error: coordinator: job kill-{killed.mode} failed: "
    assert coordinator.startswith(prefix), context
    reason = coordinator[len(prefix):]
    assert reason.startswith(("bank failed: ", "grid ")) and "grid" in reason, context
    job = json.loads((killed.root / "coordinator" / "job.json").read_text())
    assert job["stage"] == "failed" and "grid" in job["failure"], job
    assert len(job["losses"]) >= KILL_AFTER_EPOCH and len(job["losses"]) < EPOCHS
    # simulate's watcher attributes the failure to the node that failed on its own.
    assert killed.supervised.startswith("grid failed (exit -9)"), killed.supervised


def test_no_model_predictions_or_temporary_files_are_left(killed: Killed) -> None:
    files = sorted(p.relative_to(killed.root) for p in killed.root.rglob("*") if p.is_file())
    assert not [f for f in files if f.name in OUTPUTS], files
    assert not [f for f in files if f.suffix == ".tmp" or ".tmp" in f.name], files
    for node in ("coordinator", "grid", "bank"):
        assert (killed.root / node / "audit.jsonl").is_file()


def test_audit_log_of_each_node_is_a_valid_chain_after_the_kill(
        killed: Killed, capsys: pytest.CaptureFixture[str]) -> None:
    certs = ["--certs", str(killed.root / "certs")]
    for node in ("bank", "coordinator"):  # they closed their logs
        log = killed.root / node / "audit.jsonl"
        code = audit_main(["audit", "verify", *certs, str(log)])
        output = capsys.readouterr().out
        assert code == 0 and output.startswith("OK"), (node, output[-2000:])
    grid = killed.root / "grid" / "audit.jsonl"  # killed: its log has no closing entry
    assert audit_main(["audit", "verify", *certs, str(grid)]) == 1
    assert "truncated or still open" in capsys.readouterr().out
    code = audit_main(["audit", "verify", *certs, "--allow-open", str(grid)])
    output = capsys.readouterr().out
    assert code == 0 and "(accepted: --allow-open)" in output and "OK" in output, output


# -- the same fault through `gridcredit simulate` -------------------------------------------
def _epochs_done(audit: Path) -> int:
    """Epoch barriers the coordinator has answered, from its (append-only) audit log."""
    try:
        lines = audit.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    done = 0
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        if entry.get("step") == "sync/epoch" and entry.get("direction") == "sent":
            done = max(done, int(entry["round"]))
    return done


def test_simulate_exits_non_zero_naming_the_grid_and_writes_no_report(tmp_path: Path) -> None:
    grid_csv, bank_csv = nh.write_party_csvs(tmp_path / "data", n=3000)
    out = tmp_path / "run"
    sim = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "simulate", "--grid-data", str(grid_csv),
         "--bank-data", str(bank_csv), "--out", str(out), "--quiet", "--epochs", str(EPOCHS),
         "--batch-size", "32", "--deadline", str(DEADLINE), "--tolerance", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    children: list[tuple[int, str]] = []
    try:
        deadline = time.monotonic() + 120
        while _epochs_done(out / "coordinator" / "audit.jsonl") < KILL_AFTER_EPOCH:
            assert sim.poll() is None, sim.communicate(timeout=10)
            assert time.monotonic() < deadline, "no epoch finished within 120 s"
            time.sleep(0.02)
        children = nh.children_of(sim.pid)
        grids = [pid for pid, cmd in children if " party --role grid " in cmd]
        assert len(grids) == 1, children
        nh.kill(grids[0])
        killed_at = time.monotonic()
        stdout, stderr = sim.communicate(timeout=DEADLINE + 30)
        took = time.monotonic() - killed_at
    finally:
        for pid, _ in children:
            nh.kill(pid)
        if sim.poll() is None:
            sim.kill()
            sim.communicate(timeout=10)
    print(f"\n[simulate] exited {took:.2f} s after the grid was killed")
    assert sim.returncode != 0, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: grid failed (exit -9)"), stderr[-2000:]
    assert took <= DEADLINE + 6.0, took  # + simulate's settle and its own teardown
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert not [f for f in files if f.name in OUTPUTS], files
    assert not [f for f in files if ".tmp" in f.name], files
    assert "validation AUC" not in stdout


# -- how a party words a peer that vanished ---------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_party_whose_peer_vanished_says_it_is_unreachable_not_that_it_aborted(
        tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    write_federation(certs)
    keys = NodeCerts.in_dir(certs, Role.BANK)
    inbox = Inbox("gone", Role.GRID)
    audit = AuditLog(tmp_path / "audit.jsonl", "bank")
    address = f"127.0.0.1:{_closed_port()}"
    channel = GrpcChannel(Role.BANK, address, keys, inbox, audit, deadline=1.0)
    try:
        channel.send(Envelope("gone", Tag(1, "fit"), Role.BANK,
                              {"F": np.zeros(4, dtype=np.uint64)}))
        started = time.monotonic()
        with pytest.raises(VflError) as info:
            channel.recv(Tag(1, "fit"), 10.0)
        assert time.monotonic() - started < 5.0
    finally:
        channel.close()
        audit.close()
    message = str(info.value)
    assert "grid" in message and address in message, message
    assert "aborted the job" not in message, message
    assert isinstance(info.value, PeerUnavailable), repr(info.value)
