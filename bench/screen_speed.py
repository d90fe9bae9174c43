"""Federated screening speed, traffic and memory against the same statistics computed
centrally (the non-private limit) on the same rows, in the same run.

Not a test. Generates a vertically split data set (40 grid + 12 bank indicators by default,
every ID on both sides, 10 % missing cells, a third of the columns with heavy ties, labels
from a logistic model of a few columns), runs ``gridcredit screen`` (coordinator, grid and
bank as three real processes over loopback with mutual TLS, PSI included) and reports:

- screening seconds: the slower party's own clock from the end of PSI to its outputs
  (binning, both secure products, statistics, selection, the reply to the grid); PSI
  seconds of the same run; the wall time of the whole command (process start-up, PSI,
  screening, summary and plots);
- the centralized computation of the same outputs on the joined data in this process
  (binning, per-bin counts with ``np.bincount``, correlations, statistics and selection:
  ``parties.evaluation.screening.document.screen``), and the ratio;
- bytes the parties sent during screening (audit logs, PSI steps excluded) against the
  protocol's lower bound: the tensors the protocol defines at their ring widths (E of the
  one-hot matrix, F and z of the counts product; E, F, z of the correlation product; the
  grid's names, layout and own correlations; the kept names);
- each node's peak RSS (``VmHWM`` in its stats).

Usage (from the repository root)::

    python bench/screen_speed.py                                  # 100k rows, 40 + 12
    python bench/screen_speed.py --rows 20000 --keep /tmp/screen  # keep the run folder
    python bench/screen_speed.py --json bench/results/screen_100k.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from crypto.limbs import elementwise_bytes
from federation.protocol.messages import TrainSettings
from federation.protocol.schedule import Schedule
from federation.screen import ScreenSpec, run_screen
from parties.binning import bin_matrix
from parties.evaluation.screening.document import SlotCounts, screen
from parties.evaluation.screening.redundancy import correlation, standardize
from parties.evaluation.screening.selection import Rules
from parties.screen_step import Sizes

NODES = ("coordinator", "grid", "bank")
SCREEN_STEPS = ("bins-masked", "bins-product", "screen-grid-info", "screen-selection",
                "screen-bank_columns")


def make_data(rows: int, k_grid: int, k_bank: int, seed: int = 5
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(rows, k_grid))
    b = rng.normal(size=(rows, k_bank))
    g[:, : k_grid // 3] = np.round(g[:, : k_grid // 3] * 1.5)  # heavy ties
    g[:, k_grid // 3: k_grid // 2] += 0.7 * g[:, :1]  # correlated block
    logit = 0.9 * g[:, 1] - 0.6 * g[:, k_grid // 2] + 0.8 * b[:, 0] - 1.6
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    g[rng.random(g.shape) < 0.1] = np.nan
    b[rng.random(b.shape) < 0.1] = np.nan
    ids = [f"9100{v:012d}" for v in rng.permutation(rows) * 7919 + 100_003]
    grid = pd.DataFrame(g, columns=[f"g{j:02d}" for j in range(k_grid)])
    grid.insert(0, "id", ids)
    bank = pd.DataFrame(b, columns=[f"b{j:02d}" for j in range(k_bank)])
    bank.insert(0, "y", y)
    bank.insert(0, "id", ids)
    return grid, bank


def central(grid: pd.DataFrame, bank: pd.DataFrame, bins: int, seed: int = 42,
            validation: float = 0.2) -> float:
    """The same outputs computed on the joined data in one process; seconds."""
    started = time.perf_counter()
    joined = bank.merge(grid, on="id")
    y = joined["y"].to_numpy(np.float64)
    xg = joined[[c for c in grid.columns if c != "id"]].to_numpy(np.float64)
    xb = joined[[c for c in bank.columns if c not in ("id", "y")]].to_numpy(np.float64)
    s = Schedule(len(y), validation, 256, seed)
    train, valid = np.sort(s.train_rows), s.validation_rows
    entries = []
    for party, x in (("grid", xg), ("bank", xb)):
        binned = bin_matrix(x, train, bins, fixed_width=True)
        for j in range(x.shape[1]):
            c, w = binned.codes[:, j], int(binned.slots[j])
            entries.append(SlotCounts(party, f"{party}{j}", np.bincount(c[train], minlength=w),
                                      np.bincount(c[train], y[train], minlength=w).astype(
                                          np.int64), np.bincount(c[valid], minlength=w)))
    z = standardize(np.hstack([xg[train], xb[train]]))
    screen(entries, correlation(z, z), Rules())
    return time.perf_counter() - started


def audit_bytes(run: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for node in NODES:
        steps: dict[str, int] = {}
        with (run / node / "audit.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                e = json.loads(line)
                if e["direction"] == "sent":
                    steps[e["step"]] = steps.get(e["step"], 0) + int(e["bytes"])
        out[node] = steps
    return out


def lower_bound(rows: int, k_grid: int, k_bank: int, bins: int, kept_grid: int,
                seed: int = 42) -> dict[str, int]:
    """Bytes the protocol must send (tensors at their ring widths; no framing, no TLS)."""
    s = Sizes.of(rows, Schedule(rows, 0.2, 256, seed).n_train)
    cb, pb = elementwise_bytes(s.count_bits), elementwise_bytes(s.pearson_bits)
    width = k_grid * (bins + 1)
    grid = (rows * width * cb + width * 3 * cb  # E and z of the counts
            + s.n_train * k_grid * pb + k_grid * k_bank * pb  # E and z of the correlations
            + k_grid * 8 * (k_grid + 2) + k_grid * 4 * 3)  # own correlations, layout, names
    bank = rows * 3 * cb + s.n_train * k_bank * pb + 8 + kept_grid * 4 * 3
    return {"grid": grid, "bank": bank}


def run(args: argparse.Namespace) -> dict[str, Any]:
    grid, bank = make_data(args.rows, args.grid, args.bank)
    central_seconds = central(grid, bank, args.bins)
    work = Path(tempfile.mkdtemp(prefix="screen_bench_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    grid_csv, bank_csv = work / "grid.csv", work / "bank.csv"
    grid.to_csv(grid_csv, index=False, lineterminator="\n")
    bank.to_csv(bank_csv, index=False, lineterminator="\n")
    del grid, bank
    load_before = os.getloadavg()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    report = run_screen(ScreenSpec(work / "run", grid_csv, bank_csv, bins=args.bins,
                                   settings=TrainSettings(deadline_seconds=args.deadline),
                                   quiet=True, top_plots=args.plots))
    wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    node_cpu = (children.ru_utime - children_before.ru_utime
                + children.ru_stime - children_before.ru_stime)
    sent = audit_bytes(work / "run")
    # E goes in numbered messages ("bins-masked/0", ...): a step counts by its name's stem
    traffic = {n: sum(v for k, v in sent[n].items() if k.split("/")[0] in SCREEN_STEPS)
               for n in NODES}
    bound = lower_bound(args.rows, args.grid, args.bank, args.bins, report["kept"]["grid"])
    result = {
        "rows": args.rows, "grid_indicators": args.grid, "bank_indicators": args.bank,
        "bins": args.bins, "screen_seconds": report["screen_seconds"],
        "psi_seconds": report["psi_seconds"], "command_wall_seconds": wall,
        "central_seconds": central_seconds,
        "screen_cpu_seconds": report["screen_cpu_seconds"],
        "all_nodes_cpu_seconds": node_cpu,
        "ratio_screen_to_central": report["screen_seconds"] / central_seconds,
        "traffic_bytes": traffic, "lower_bound_bytes": bound,
        "traffic_over_bound": {n: traffic[n] / bound[n] for n in ("grid", "bank")},
        "peak_rss_mb": report["peak_rss_mb"], "kept": report["kept"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": load_before, "load_after": os.getloadavg(),
                    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
    }
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="aligned rows")
    parser.add_argument("--grid", type=int, default=40, help="grid indicators")
    parser.add_argument("--bank", type=int, default=12, help="bank indicators")
    parser.add_argument("--bins", type=int, default=10, help="equal-frequency bins per indicator")
    parser.add_argument("--plots", type=int, default=6, help="WOE plots in the summary")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds a node waits for its peer before failing the job")
    parser.add_argument("--keep", type=Path, help="keep the data and run folder here")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    r = run(args)
    mb = 1e6
    print(f"{r['rows']} rows x ({r['grid_indicators']} grid + {r['bank_indicators']} bank) "
          f"indicators, {r['bins']} bins")
    print(f"  screening {r['screen_seconds']:.2f} s (PSI excluded; PSI {r['psi_seconds']:.1f} s; "
          f"whole command {r['command_wall_seconds']:.1f} s)")
    cpu = r["screen_cpu_seconds"]
    print(f"  CPU seconds of the screening step: grid {cpu['grid']:.2f}, bank {cpu['bank']:.2f}; "
          f"all three processes, whole command {r['all_nodes_cpu_seconds']:.1f}")
    print(f"  centralized same outputs {r['central_seconds']:.2f} s; ratio "
          f"{r['ratio_screen_to_central']:.1f}x")
    for n in ("grid", "bank"):
        print(f"  {n} sent {r['traffic_bytes'][n] / mb:.1f} MB, lower bound "
              f"{r['lower_bound_bytes'][n] / mb:.1f} MB ({r['traffic_over_bound'][n]:.3f}x); "
              f"peak RSS {r['peak_rss_mb'][n]:.0f} MB")
    print(f"  coordinator peak RSS {r['peak_rss_mb']['coordinator']:.0f} MB, sent "
          f"{r['traffic_bytes']['coordinator'] / mb:.3f} MB during screening")
    print(f"  load average before/after {r['machine']['load_before'][0]:.1f}/"
          f"{r['machine']['load_after'][0]:.1f} on {r['machine']['cpus']} CPUs")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
