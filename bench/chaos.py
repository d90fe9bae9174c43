"""Chaos: training jobs in a row on loopback, each with one random fault; none may hang.

Each job starts coordinator, grid and bank as OS processes (mutual TLS, ports chosen at run
time, ``federation.processes.supervise`` watching them exactly as ``simulate`` does) and
injects one fault, chosen at random with ``--seed``:

- ``kill`` / ``stop``: SIGKILL or SIGSTOP one node (coordinator, grid or bank) right after a
  random coordinator event (stage change, alignment, an epoch) of the fault-free run;
- ``delay`` / ``drop`` / ``corrupt``: a fault-injecting TCP proxy in front of one party
  (``bench/chaos_proxy.py``; the party advertises the proxy's gRPC address and names its
  data-plane port, ``GRIDCREDIT_DATA_PLANE_ADVERTISE``) holds one chunk of the
  party-to-party traffic past the deadline, resets the connection, or flips a byte. The
  traffic is the TLS data plane's (``--plane tls``, the default) or the gRPC stream's
  (``--plane grpc``), TLS end to end either way: a flipped byte is a TLS error;
- ``restart``: the coordinator is killed and started again on the same address.

Kinds take turns (job n gets kind n mod the number of kinds); the node, the moment and the
chunk are drawn at random.

Every job must either finish with the model of a fault-free run (each weight within
``--tolerance``; shared-mode truncation makes runs differ in the last fixed-point bits), or
fail within ``deadline + GRACE`` seconds of the fault with a message naming the faulted node
(any party for a proxy fault), leaving no model, predictions or report (the job folder is a
``RunFolder``, as simulate's), no process of the job alive, and audit logs whose chains and
signatures verify (finished jobs: every message also paired across the logs). Prints counts
per fault kind and writes ``bench/results/chaos.json``.

    python bench/chaos.py --jobs 20          # about 20-40 s per job on 2 loaded cores
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.chaos_checks import (  # noqa: E402
    audit_problems,
    leftover_outputs,
    model_gap,
    orphans,
)
from bench.chaos_proxy import FaultProxy  # noqa: E402
from bench.common import make_data, write_json  # noqa: E402
from federation.processes import NodeFailed, NodeProcess, supervise  # noqa: E402
from federation.run_folder import RunFolder  # noqa: E402
from federation.transport.certs import write_federation  # noqa: E402
from federation.transport.data_plane import (  # noqa: E402
    DATA_PLANE_ADVERTISE_ENV,
    DATA_PLANE_ENV,
)

KINDS = ("kill", "stop", "delay", "drop", "corrupt", "restart")
ROLES = ("coordinator", "grid", "bank")
PARTIES = ("grid", "bank")
GRACE = 25.0  # noticing (health checks, 5-10 s) + aborting (5 s) + supervise settling (5 s)
JOB_TIMEOUT = 180.0


@dataclass(frozen=True)
class Setup:
    root: Path
    certs: Path
    grid: Path
    bank: Path
    deadline: float
    epochs: int
    batch: int
    mode: str
    plane: str = "tls"  # the parties' transport: the TLS data plane or the gRPC stream


@dataclass
class Fault:
    kind: str
    target: str  # the node killed or stopped, or the party whose proxy misbehaves
    after_event: int = -1  # process faults: index of the coordinator event to wait for
    extra: float = 0.0  # and seconds after it
    chunk: int = 0  # proxy faults: the eligible chunk to hit
    fired_at: float | None = None


@dataclass
class Outcome:
    job: int
    kind: str
    target: str
    result: str = ""  # finished / failed / not started
    fired: bool = False
    fired_on: str = ""  # proxy faults: "data plane" or "gRPC", the proxied port it hit
    seconds: float = 0.0
    fail_after_fault: float | None = None
    message: str = ""
    violations: list[str] = field(default_factory=list)


def _toml(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _coordinator_config(s: Setup, out: Path) -> Path:
    return _toml(out / "configs" / "coordinator.toml", {
        "node": {"role": "coordinator", "job_id": out.name, "listen": "127.0.0.1:0",
                 "out": str(out / "coordinator")}, "tls": {"dir": str(s.certs)},
        "training": {"mode": s.mode, "epochs": s.epochs, "batch_size": s.batch,
                     "deadline_seconds": s.deadline, "tolerance": 0.0},
        "job": {"barrier_timeout": 4 * s.deadline, "job_timeout": JOB_TIMEOUT}})


def _party_config(s: Setup, out: Path, role: str, coordinator: str, advertise: str) -> Path:
    return _toml(out / "configs" / f"{role}.toml", {
        "node": {"role": role, "job_id": out.name, "listen": "127.0.0.1:0",
                 "coordinator": coordinator, "advertise": advertise, "out": str(out / role)},
        "tls": {"dir": str(s.certs)},
        "data": {"path": str(s.grid if role == "grid" else s.bank), "id_column": "id",
                 **({"label_column": "y"} if role == "bank" else {})},
        "job": {"deadline": s.deadline, "barrier_timeout": 4 * s.deadline}})


def _restart(nodes: list[NodeProcess], config: Path, out: Path) -> None:
    """Kill the coordinator and start a new one on its address (its audit log continues)."""
    old = nodes[0]
    new = NodeProcess("coordinator", ["coordinator", "--config", str(config), "--listen",
                                      old.address], out / "coordinator-restarted")
    nodes[0] = new  # supervise sees a running coordinator, never the killed one
    if old.proc is not None and old.proc.poll() is None:
        os.kill(old.proc.pid, signal.SIGKILL)
        old.proc.wait(10)
    new.start()


def _inject(fault: Fault, nodes: list[NodeProcess], config: Path, out: Path,
            over: threading.Event) -> None:
    if over.is_set():  # the job ended before the fault's moment: nothing to break
        return
    fault.fired_at = time.monotonic()
    if fault.kind == "restart":
        _restart(nodes, config, out)
        return
    node = next(n for n in nodes if n.name == fault.target)
    if node.proc is not None and node.proc.poll() is None:
        os.kill(node.proc.pid, signal.SIGKILL if fault.kind == "kill" else signal.SIGSTOP)


def run_job(s: Setup, index: int, fault: Fault | None) -> tuple[Outcome, dict[str, Any]]:
    """One job; ``fault=None`` is the fault-free reference (events and chunk counts)."""
    out = s.root / f"job{index:03d}"
    folder = RunFolder.open(out, "chaos", force=True)
    kind = fault.kind if fault else "none"
    outcome = Outcome(index, kind, fault.target if fault else "")
    proxies = {r: FaultProxy(kind if fault and fault.target == r and kind in
                             ("delay", "drop", "corrupt") else None,
                             fault.chunk if fault else 0, s.deadline + 3.0) for r in PARTIES}
    config = _coordinator_config(s, out)
    nodes = [NodeProcess("coordinator", ["coordinator", "--config", str(config)],
                         out / "coordinator", log_level="INFO")]
    events: list[dict[str, object]] = []
    timers: list[threading.Timer] = []
    over = threading.Event()

    def on_event(event: dict[str, object]) -> None:
        events.append(event)
        if fault and fault.after_event == len(events) - 1:
            timer = threading.Timer(fault.extra, _inject, (fault, nodes, config, out, over))
            timers.append(timer)
            timer.start()

    started = failed_at = time.monotonic()
    pgids: set[int] = set()
    try:
        nodes[0].start()
        address = nodes[0].wait_listening(60)
        for role in PARTIES:
            path = _party_config(s, out, role, address, proxies[role].address)
            env = {DATA_PLANE_ENV: s.plane,
                   DATA_PLANE_ADVERTISE_ENV: str(proxies[role].data_port)}
            nodes.append(NodeProcess(role, ["party", "--role", role, "--config", str(path)],
                                     out / role, log_level="INFO", env=env))
            nodes[-1].start()
        for node in nodes[1:]:
            proxies[node.name].forward_to(node.wait_listening(60))
            if node.data_address:  # printed before LISTENING
                proxies[node.name].forward_data_to(node.data_address)
        pgids = {n.pid for n in nodes}
        supervise(nodes, JOB_TIMEOUT, on_event, nodes[0], linger=2 * s.deadline + 5)
        outcome.result = "finished"
        folder.done()
    except NodeFailed as exc:
        failed_at = time.monotonic()  # when the job reports its failure (before cleanup)
        outcome.result, outcome.message = "failed", str(exc)
        folder.failed(str(exc))
    finally:
        over.set()
        for timer in timers:
            timer.cancel()
            timer.join(30)
        for node in nodes:
            node.stop()
        pgids |= {n.pid for n in nodes}
        for proxy in proxies.values():
            proxy.close()
    outcome.seconds = time.monotonic() - started
    fired = [t for t in [fault.fired_at if fault else None,
                         *(p.fired_at for p in proxies.values())] if t is not None]
    outcome.fired = bool(fired)
    outcome.fired_on = next((p.fired_on for p in proxies.values() if p.fired_on), "")
    if outcome.result == "failed" and fired:
        outcome.fail_after_fault = failed_at - min(fired)
    outcome.violations += orphans(pgids, out)
    info = {"events": len(events), "chunks": {r: p.eligible_chunks for r, p in proxies.items()},
            "ports": {r: dict(p.counted) for r, p in proxies.items()}}
    return outcome, info


def check(s: Setup, outcome: Outcome, fault: Fault, reference: Path, tolerance: float) -> None:
    """Add every broken promise of the job to ``outcome.violations``."""
    out = s.root / f"job{outcome.job:03d}"
    v = outcome.violations
    finished = outcome.result == "finished"
    v += audit_problems(out, s.certs, pair=finished)
    if finished:
        gap = model_gap(out, reference)
        if gap > tolerance:
            v.append(f"finished with another model (max weight gap {gap:.2e})")
        return
    if "did not finish within" in outcome.message:
        v.append("hung until the job timeout")
    v += leftover_outputs(out)
    if not outcome.fired:
        v.append("failed although the fault never fired")
        return
    bound = s.deadline + GRACE
    if outcome.fail_after_fault is not None and outcome.fail_after_fault > bound:
        v.append(f"failed {outcome.fail_after_fault:.1f} s after the fault (bound {bound:g} s)")
    names = PARTIES if fault.kind in ("delay", "drop", "corrupt") else (
        ("coordinator",) if fault.kind == "restart" else (fault.target,))
    if not any(name in outcome.message for name in names):
        v.append(f"the failure does not name {' or '.join(names)}")


def draw(rng: random.Random, kind: str, events: int, chunks: dict[str, int]) -> Fault:
    """A fault of ``kind`` at a random node and moment (proxy faults: a random chunk)."""
    if kind in ("delay", "drop", "corrupt"):
        target = rng.choice([r for r in PARTIES if chunks[r] > 0] or list(PARTIES))
        return Fault(kind, target, chunk=rng.randint(1, max(1, chunks[target])))
    target = "coordinator" if kind == "restart" else rng.choice(ROLES)
    return Fault(kind, target, after_event=rng.randrange(max(1, events - 1)),
                 extra=rng.uniform(0.0, 0.3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=50, help="faulty jobs to run (default: 50)")
    p.add_argument("--kinds", default=",".join(KINDS), help="fault kinds to draw from")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault draws (default: 1)")
    p.add_argument("--budget", type=float, default=3600.0,
                   help="seconds after which no new job starts (default: 3600)")
    p.add_argument("--rows", type=int, default=600, help="enterprises (default: 600)")
    p.add_argument("--deadline", type=float, default=4.0, help="job deadline (default: 4)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest weight gap to the fault-free model (default: 1e-3)")
    p.add_argument("--twin", action=argparse.BooleanOptionalAction, default=True,
                   help="run a second fault-free job to show how far two runs differ")
    p.add_argument("--plane", choices=("tls", "grpc"), default="tls",
                   help="party-to-party transport the proxy faults hit: the TLS data plane "
                        "(default) or the gRPC stream")
    p.add_argument("--root", type=Path, default=Path("runs/chaos"), help="work folder")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "chaos.json")
    args = p.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or any(k not in KINDS for k in kinds):
        p.error(f"--kinds takes a comma-separated subset of {','.join(KINDS)}")
    args.root.mkdir(parents=True, exist_ok=True)
    certs = args.root / "certs"
    write_federation(certs, force=True)
    grid, bank = make_data(args.rows, 4, 3, 7, args.root)
    s = Setup(args.root, certs, grid, bank, args.deadline, 3, 64, "shared", args.plane)
    ref, info = run_job(s, 0, None)
    if ref.result != "finished" or ref.violations:
        print(f"the fault-free reference run failed: {ref.message} {ref.violations}")
        return 1
    twin = ""
    if args.twin:  # how far two fault-free runs differ (truncation noise)
        run_job(s, 999, None)
        gap = model_gap(s.root / "job999", s.root / "job000")
        twin = f"; a second fault-free run differs by {gap:.2e}"
    print(f"reference ({args.plane} plane): {ref.seconds:.1f} s, {info['events']} events, "
          f"eligible chunks {info['ports']}{twin}", flush=True)
    rng = random.Random(args.seed)
    outcomes: list[Outcome] = []
    began = time.monotonic()
    for n in range(1, args.jobs + 1):
        if time.monotonic() - began > args.budget:
            print(f"budget of {args.budget:g} s spent: stopping after {n - 1} jobs")
            break
        fault = draw(rng, kinds[(n - 1) % len(kinds)], int(info["events"]), info["chunks"])
        outcome, _ = run_job(s, n, fault)
        check(s, outcome, fault, s.root / "job000", args.tolerance)
        outcomes.append(outcome)
        print(f"job {n:3d} {fault.kind:8s} {fault.target:11s} {outcome.fired_on or '-':10s} "
              f"{outcome.result:8s} "
              f"{outcome.seconds:5.1f} s  {'; '.join(outcome.violations) or 'ok'}  "
              f"{outcome.message[:110]}", flush=True)
    _summary(outcomes)
    write_json(args.results, [asdict(o) for o in outcomes],
               {"deadline": args.deadline, "grace": GRACE, "rows": args.rows,
                "plane": args.plane,
                "tolerance": args.tolerance, "seed": args.seed, "load_1m": os.getloadavg()[0]})
    return 1 if any(o.violations for o in outcomes) else 0


def _summary(outcomes: list[Outcome]) -> None:
    print(f"\n{'fault':8s} {'jobs':>5s} {'same model':>11s} {'failed ok':>10s} "
          f"{'violations':>11s} {'max s to fail':>14s}")
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if not mine:
            continue
        c = Counter("bad" if o.violations else o.result for o in mine)
        late = max((o.fail_after_fault or 0.0 for o in mine), default=0.0)
        print(f"{kind:8s} {len(mine):5d} {c['finished']:11d} {c['failed']:10d} {c['bad']:11d} "
              f"{late:14.1f}")
    total = Counter("bad" if o.violations else o.result for o in outcomes)
    print(f"{'all':8s} {len(outcomes):5d} {total['finished']:11d} {total['failed']:10d} "
          f"{total['bad']:11d}")


if __name__ == "__main__":
    raise SystemExit(main())
