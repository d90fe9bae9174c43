"""Post-loan monitoring per period: time split by stage, against the non-private limit.

Not a test. Trains once on a small synthetic universe (``--train-enterprises``; the models
only need the indicator names), generates the monitored universe (``--enterprises``,
``--months``), starts a grid and a bank ``gridcredit monitor`` node (mutual TLS, loopback)
and replays ``--periods`` months ending at the data's last month. Per period it reports the
bank node's stages (``bank_data``: active book and bank indicators; ``grid_session``: the
grid's indicators, ratings and u_G at that month plus the PSI session; ``joint_scoring``;
``rules_alerts``), the wall time between PERIOD lines and both nodes' peak RSS. The
non-private limit of the same period is the same data stages in one process with the plain
logistic function (no PSI, no TLS): ``vs_plain`` is the period's wall time over it.

Usage (from the repository root)::

    python bench/monitor_speed.py --enterprises 5000 --periods 3
    python bench/monitor_speed.py --enterprises 100000 --periods 12 \
        --json bench/results/monitor.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, RssSampler, write_json  # type: ignore[import-not-found, unused-ignore]


def cli(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "federation.cli", *args], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"gridcredit {args[0]} failed: {result.stderr[-2000:]}")


def start(args: list[str], log: Path) -> tuple[subprocess.Popen[str], list[str]]:
    lines: list[str] = []
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "federation.cli", *args], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=err, text=True)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def wait_for(lines: list[str], prefix: str, proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines:
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            sys.exit(f"node exited ({proc.returncode}) before {prefix!r}")
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {prefix!r}")


def plain(raw: Path, run: Path, month: int) -> float:
    """Seconds for one period's data stages and the plain score in one process."""
    import numpy as np

    from crypto.sigmoid import sigmoid
    from federation.protocol.messages import Role
    from parties.labels.sources import open_source
    from parties.model import PartyModel
    from parties.monitoring_data import bank_period, grid_period

    started = time.perf_counter()
    g = grid_period(open_source(raw, "grid"), month,
                    PartyModel.load(run / "grid/model.json", Role.GRID))
    b = bank_period(open_source(raw, "bank"), month,
                    PartyModel.load(run / "bank/model.json", Role.BANK))
    u_g = dict(zip(g.ids, g.u, strict=True))
    sigmoid(np.array([u + u_g[i] for i, u in zip(b.ids, b.u, strict=True) if i in u_g]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--enterprises", type=int, default=5000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--periods", type=int, default=3)
    parser.add_argument("--train-enterprises", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    a = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from parties.labels.schema import format_month, parse_month

    work = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    cli("synth", "--enterprises", str(a.train_enterprises), "--months", "30", "--seed", "1",
        "--out", str(work / "train"))
    for role in ("grid", "bank"):
        cli("features", "build", "--role", role, "--raw", str(work / "train"), "--impute",
            "median", "--out", str(work / f"{role}.csv"))
    cli("simulate", "--grid-data", str(work / "grid.csv"), "--bank-data",
        str(work / "bank.csv"), "--epochs", "1", "--batch-size", "256", "--out",
        str(work / "run"), "--quiet")
    t = time.perf_counter()
    cli("synth", "--enterprises", str(a.enterprises), "--months", str(a.months), "--seed", "2",
        "--out", str(work / "raw"))
    synth_s = time.perf_counter() - t
    last = parse_month(json.loads((work / "raw/manifest.json").read_text())["as_of"])
    first = last - a.periods + 1
    run, raw = work / "run", work / "raw"
    common = ["--tls-dir", str(run / "certs"), "--out", str(work / "mon"), "--raw", str(raw)]
    grid, glines = start(["monitor", "--role", "grid", "--model", str(run / "grid/model.json"),
                          *common], work / "grid.log")
    peer = wait_for(glines, "LISTENING ", grid, 120).split()[1]
    bank, blines = start(["monitor", "--role", "bank", "--model",
                          str(run / "bank/model.json"), "--peer", peer, "--period-from",
                          format_month(first), "--period-to", format_month(last), *common],
                         work / "bank.log")
    rows = []
    with RssSampler() as rss:
        before = time.perf_counter()
        for month in range(first, last + 1):
            line = wait_for(blines, f"PERIOD {format_month(month)} done", bank, 1800)
            now = time.perf_counter()
            stages = dict(part.split("=") for part in line.split()[3:])
            summary = json.loads((work / "mon/periods" / format_month(month) /
                                  "summary.json").read_text())
            rows.append({"period": format_month(month), "wall_s": round(now - before, 2),
                         "borrowers": summary["borrowers"],
                         **{k: float(v.rstrip("s")) for k, v in stages.items()}})
            before = now
        wait_for(blines, "REPLAY done", bank, 60)
    grid.terminate()
    grid.wait(30)
    bank.wait(30)
    limit = plain(raw, run, last)
    for r in rows:
        print(json.dumps(r))
    wall = sum(r["wall_s"] for r in rows) / len(rows)
    reference = {"enterprises": a.enterprises, "mean_period_s": round(wall, 2),
                 "plain_period_s": round(limit, 2), "vs_plain": round(wall / limit, 2),
                 "synth_s": round(synth_s, 1),
                 "grid_peak_rss_mb": round(rss.tree.get(grid.pid, float("nan")), 1),
                 "bank_peak_rss_mb": round(rss.tree.get(bank.pid, float("nan")), 1)}
    print(json.dumps(reference))
    if a.json:
        write_json(a.json, rows, reference)


if __name__ == "__main__":
    main()
