"""Benchmark online scoring through running grid and bank serve nodes (not a test).

Starts ``gridcredit serve`` for the grid and for the bank on a trained run (two OS
processes on 127.0.0.1, mutual TLS), then calls ``Scoring.Score`` on the bank node as the
bank's own systems would, over one TLS channel, one call at a time:

- single:  ``--requests`` (1,000) calls of one enterprise each, IDs drawn at random from
  the enterprises both parties hold; latency p50 / p99 / mean / max, in ms.
- batch:   ``--batches`` (5) calls of ``--batch`` (1,000) distinct such IDs each;
  seconds per call and IDs per second.
- session: seconds from starting the bank node to its ``LISTENING`` line (it opens the
  PSI session first: the grid blinds all its rows once, the bank re-blinds them once).

Each call is the whole protocol of ``parties.serving``: the bank blinds the IDs, one
round trip to the grid re-blinds them, the bank looks them up, a second round trip fetches
the grid's partial logits. Both nodes share this machine's cores with the client.

Usage (from the repository root)::

    python bench/score_latency.py                    # trains the bundled demo run first
    python bench/score_latency.py --run runs/latest --json /tmp/score_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np

from federation.processes import ServeProcess
from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.messages import Role
from federation.transport.certs import write_client
from federation.transport.grpc_client import secure_channel

START_TIMEOUT = 300.0
CALL_TIMEOUT = 60.0
WARM_UP = 20


def train_demo(folder: Path) -> Path:
    """A finished ``simulate`` run of the bundled demo (3,000 enterprises) in ``folder``."""
    run = folder / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "federation.cli",
            "simulate",
            "--out",
            str(run),
            "--quiet",
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"simulate failed: {done.stderr.strip().splitlines()[-1:]}")
    return run


def common_ids(run: Path) -> list[str]:
    """IDs of the enterprises both parties hold (the rows of the run's predictions)."""
    lines = (run / "bank" / "predictions.csv").read_text().splitlines()[1:]
    return [line.split(",", 1)[0] for line in lines]


def start_nodes(run: Path, out: Path) -> tuple[list[ServeProcess], str, float]:
    """Grid and bank serve nodes; (nodes, bank address, seconds until the bank listened)."""
    report = json.loads((run / "report.json").read_text())
    module, certs = "federation.cli", str(run / "certs")
    nodes: list[ServeProcess] = []
    grid = ServeProcess(
        "grid",
        [
            "serve",
            "--role",
            "grid",
            "--model",
            str(run / "grid" / "model.json"),
            "--data",
            report["data"]["grid"],
            "--tls-dir",
            certs,
            "--audit",
            str(out / "grid_audit.jsonl"),
        ],
        out / "grid",
        module=module,
    )
    nodes.append(grid)
    grid.start()
    grid_address = grid.wait_listening(START_TIMEOUT)
    started = time.perf_counter()
    bank = ServeProcess(
        "bank",
        [
            "serve",
            "--role",
            "bank",
            "--model",
            str(run / "bank" / "model.json"),
            "--data",
            report["data"]["bank"],
            "--tls-dir",
            certs,
            "--peer",
            grid_address,
            "--audit",
            str(out / "bank_audit.jsonl"),
        ],
        out / "bank",
        module=module,
    )
    nodes.append(bank)
    bank.start()
    address = bank.wait_listening(START_TIMEOUT)
    return nodes, address, time.perf_counter() - started


def timed(stub: vfl_pb2_grpc.ScoringStub, ids: list[str]) -> float:
    """Seconds of one Score call; every ID must come back scored."""
    started = time.perf_counter()
    reply = stub.Score(vfl_pb2.ScoreRequest(ids=ids), timeout=CALL_TIMEOUT)
    seconds = time.perf_counter() - started
    bad = [r.status for r in reply.results if r.status != "scored"]
    if bad:
        raise SystemExit(f"{len(bad)} of {len(ids)} IDs not scored ({bad[0]})")
    return seconds


def measure(address: str, run: Path, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    # As the bank's systems would: a scoring client's certificate, not the bank's key.
    client = write_client(run / "certs", "score-latency-bench", force=True)
    channel = secure_channel(address, client, Role.BANK)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = vfl_pb2_grpc.ScoringStub(channel)
        for _ in range(WARM_UP):
            timed(stub, [rng.choice(ids)])
        single = np.array([timed(stub, [rng.choice(ids)]) for _ in range(args.requests)]) * 1e3
        batch_size = min(args.batch, len(ids))
        batches = np.array([timed(stub, rng.sample(ids, batch_size)) for _ in range(args.batches)])
    finally:
        channel.close()
    return {
        "single": {
            "requests": args.requests,
            "p50_ms": float(np.percentile(single, 50)),
            "p99_ms": float(np.percentile(single, 99)),
            "mean_ms": float(single.mean()),
            "max_ms": float(single.max()),
        },
        "batch": {
            "ids_per_request": batch_size,
            "requests": args.batches,
            "median_s": float(np.median(batches)),
            "ids_per_second": float(batch_size * len(batches) / batches.sum()),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    s, b = result["single"], result["batch"]
    rows = [
        ("grid rows / common IDs", f"{result['grid_rows']} / {result['common_ids']}"),
        ("session open (bank start to LISTENING)", f"{result['session_open_s']:.2f} s"),
        (f"single ID, p50 ({s['requests']} calls)", f"{s['p50_ms']:.2f} ms"),
        ("single ID, p99", f"{s['p99_ms']:.2f} ms"),
        ("single ID, mean / max", f"{s['mean_ms']:.2f} / {s['max_ms']:.2f} ms"),
        (
            f"batch of {b['ids_per_request']}, median ({b['requests']} calls)",
            f"{b['median_s']:.3f} s",
        ),
        ("batch throughput", f"{b['ids_per_second']:,.0f} IDs/s"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"online scoring, {result['cores']} cores, grid + bank + client on one machine")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")


def main() -> int:
    ap = argparse.ArgumentParser(description="online scoring latency and throughput")
    ap.add_argument(
        "--run",
        type=Path,
        help="a finished simulate run (default: train the bundled demo into a temporary folder)",
    )
    ap.add_argument("--requests", type=int, default=1000, help="single-ID calls (default 1000)")
    ap.add_argument("--batch", type=int, default=1000, help="IDs per batch call (default 1000)")
    ap.add_argument("--batches", type=int, default=5, help="batch calls (default 5)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the ID draws (default 7)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="score_latency_") as tmp:
        run = args.run.resolve() if args.run else train_demo(Path(tmp))
        ids = common_ids(run)
        grid_rows = (
            len(
                Path(json.loads((run / "report.json").read_text())["data"]["grid"])
                .read_text()
                .splitlines()
            )
            - 1
        )
        nodes: list[ServeProcess] = []
        try:
            nodes, address, session_s = start_nodes(run, Path(tmp) / "serve")
            result = measure(address, run, ids, args)
        except BaseException:
            for node in nodes:
                print(f"{node.name}: {node.reason()}", file=sys.stderr)
            raise
        finally:
            for node in nodes:
                node.stop()
    result.update(
        grid_rows=grid_rows,
        common_ids=len(ids),
        session_open_s=session_s,
        cores=os.cpu_count(),
        run=str(args.run or "demo (trained for this run)"),
    )
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
