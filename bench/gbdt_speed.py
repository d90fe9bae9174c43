"""Federated gradient-boosted trees against the centralized GBDT, in the same run.

Writes synthetic vertically split data (``bench/common.py``: IDs ``E%08d``, features
N(0, 1), labels of a logistic model), runs ``gridcredit simulate --model gbdt`` (three
processes over loopback with mutual TLS) and prints, next to each other:

- the federated fit time (both parties' ``fit_seconds``, PSI excluded) and scikit-learn's
  ``HistGradientBoostingClassifier`` on the joined rows with the same trees, depth, bins,
  learning rate and L2 (the report's centralized model, timed in the same run);
- the training traffic per node and step from the audit logs, against the protocol's
  lower bound: the ring elements and bits its messages must carry at l bits each
  (E once, F and z per product, the AND exchanges of grid splits, the dealer's c_1),
  computed from the trees actually grown;
- each node's peak RSS (``VmHWM`` sampled from this process), the validation AUCs.

Defaults: 80,000 rows, 15 + 15 features, 32 bins, 50 trees of depth 5, no early stopping
(every run grows all 50 trees). Not a test; ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, RssSampler, audit_bytes, make_data, write_json  # noqa: E402

from crypto.limbs import ring_bits  # noqa: E402
from federation.protocol.messages import Model, TrainSettings  # noqa: E402
from federation.simulate import SimulationSpec, run_simulation  # noqa: E402

NODES = ("coordinator", "grid", "bank")
FIT_STEPS = ("bins-masked", "bins-product", "gbdt-route", "deal", "sync/tree")  # prefixes
SEED = 11
REFERENCE = {
    "target_seconds": 60.0, "target_traffic_gb": 1.5, "target_rss_mb": 1024.0,
    "secretflow_sgb_seconds": 551.0, "secretflow_sgb_traffic_gb": 1.56,
    "secretflow_sgb_rss_mb": 1200.0, "sklearn_hgb_seconds_quoted": 0.4,
}


def lower_bound(run: Path, n_train: int, n_rows: int, k_grid: int, s: TrainSettings
                ) -> dict[str, float]:
    """Bytes the protocol's messages must carry, at l bits per ring element and 1 bit per
    AND bit, for the trees in the bank's model file (what was actually grown)."""
    bank = json.loads((run / "bank" / "model.json").read_text())
    bits = ring_bits(n_train, s.frac_bits + 1)
    width = k_grid * (s.bins + 1)
    columns = grid_splits = 0
    for tree in bank["trees"]:
        split = [node["id"] for node in tree if node["kind"] in ("bank", "grid")]
        grid_splits += sum(1 for node in tree if node["kind"] == "grid")
        # the root's g and h, then per split node above the last level its smaller child's
        columns += 2 + 2 * sum(1 for i in split if _level(i) + 1 < s.depth)
    trees = len(bank["trees"])
    out = {
        "masked_matrix": n_train * width * bits / 8,          # E, once
        "products": columns * (n_train + width) * bits / 8,    # F to the grid, z back
        "routing": grid_splits * 3 * n_rows / 8,               # F, E, z bits per grid split
        "dealer": trees * (width * 2**s.depth * bits + (2**s.depth - 1) * n_rows) / 8,
    }
    out["total"] = sum(out.values())
    out["ring_bits"] = float(bits)
    out["product_columns"] = float(columns)
    return out


def _level(node: int) -> int:
    return (node + 1).bit_length() - 1


def run(args: argparse.Namespace) -> dict[str, Any]:
    s = TrainSettings(model=Model.GBDT, trees=args.trees, depth=args.depth, bins=args.bins,
                      learning_rate=args.learning_rate, l2=args.l2,
                      early_stopping_rounds=args.early_stopping_rounds,
                      validation_fraction=0.2, deadline_seconds=args.deadline)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="gbdt_speed_"))
    try:
        grid_csv, bank_csv = make_data(args.rows, args.grid_features, args.bank_features,
                                       SEED, tmp)
        print(f"[{args.rows:,} rows] data written; load average {load_before[0]:.2f}; "
              "running simulate --model gbdt ...", file=sys.stderr, flush=True)
        out = tmp / "run"
        started = time.perf_counter()
        with RssSampler() as sampler:
            report = run_simulation(SimulationSpec(out, grid_csv, bank_csv, settings=s,
                                                   quiet=True, timeout=args.timeout,
                                                   compare_lr=args.compare_lr))
        wall = time.perf_counter() - started
        sent = audit_bytes(out, NODES)
        stats = {n: json.loads((out / n / "stats.json").read_text()) for n in ("grid", "bank")}
        job = json.loads((out / "coordinator" / "job.json").read_text())
        n_rows = report["intersection_size"]
        n_train = n_rows - int(round(n_rows * s.validation_fraction))
        bound = lower_bound(out, n_train, n_rows, args.grid_features, s)
        pids = {n: int(report["nodes"][n]["pid"]) for n in NODES}
        if args.keep is not None:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(out, args.keep, ignore=shutil.ignore_patterns("certs"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    traffic = {n: sum(v for k, v in sent[n].items() if k.startswith(FIT_STEPS)) for n in NODES}
    fit, central = report["fit_seconds"], report["centralized"]["fit_seconds"]
    result = {
        "rows": args.rows, "features": [args.grid_features, args.bank_features],
        "trees": args.trees, "trees_run": report["trees_run"], "depth": args.depth,
        "bins": args.bins, "federated_fit_seconds": fit,
        "centralized_sklearn_seconds": central, "ratio_federated_to_centralized": fit / central,
        "ratio_to_target": fit / REFERENCE["target_seconds"],
        "speedup_over_secretflow_sgb": REFERENCE["secretflow_sgb_seconds"] / fit,
        "psi_seconds": report["psi_seconds"], "simulate_wall_seconds": wall,
        "fit_bytes": traffic, "fit_gigabytes_total": sum(traffic.values()) / 1e9,
        "lower_bound_gigabytes": bound["total"] / 1e9,
        "ratio_traffic_to_bound": sum(traffic.values()) / bound["total"],
        "lower_bound": bound, "bytes_sent_by_step": sent,
        "peak_rss_mb": {n: sampler.hwm.get(pids[n]) for n in NODES},
        "cpu_seconds": {"coordinator": job.get("cpu_seconds"),
                        **{n: stats[n].get("cpu_seconds") for n in ("grid", "bank")}},
        "fit_time_split": {n: stats[n].get("fit_time_split", {}) for n in ("grid", "bank")},
        "validation_auc": {"federated": report["validation"]["auc"],
                           "centralized_gbdt": report["centralized"]["validation"]["auc"],
                           "bank_only_gbdt": report["bank_only"]["validation"]["auc"],
                           "centralized_lr": report["centralized_lr"]["validation"]["auc"]},
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
    }
    if report.get("federated_lr"):
        result["validation_auc"]["federated_lr"] = report["federated_lr"]["validation"]["auc"]
        result["federated_lr_fit_seconds"] = report["federated_lr"]["fit_seconds"]
    return result


def print_result(r: dict[str, Any]) -> None:
    auc = r["validation_auc"]
    rss = r["peak_rss_mb"]
    lb = r["lower_bound"]
    print(f"{r['rows']:,} rows x ({r['features'][0]}+{r['features'][1]}) features, "
          f"{r['trees_run']} trees of depth {r['depth']}, {r['bins']} bins "
          f"(ring Z_2^{int(lb['ring_bits'])}, {int(lb['product_columns'])} product columns)")
    print(f"  fit: federated {r['federated_fit_seconds']:.1f} s vs centralized scikit-learn "
          f"{r['centralized_sklearn_seconds']:.2f} s (x{r['ratio_federated_to_centralized']:.0f}"
          f"); target 60 s (x{r['ratio_to_target']:.2f}); SecretFlow SGB 551 s "
          f"({r['speedup_over_secretflow_sgb']:.1f}x faster); PSI {r['psi_seconds']:.1f} s")
    print(f"  traffic: {r['fit_gigabytes_total']:.3f} GB sent during the fit "
          + ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in r["fit_bytes"].items())
          + f"; lower bound {r['lower_bound_gigabytes']:.3f} GB (x{r['ratio_traffic_to_bound']:.2f}"
          f"); target 1.5 GB")
    print("  CPU seconds per process (whole job, PSI included): " + ", ".join(
        f"{n} {v:.1f}" for n, v in r["cpu_seconds"].items() if v is not None))
    print("  peak RSS: " + ", ".join(f"{n} {v:.0f} MB" if v else f"{n} ?" for n, v in
                                      rss.items()) + "; target 1024 MB per party")
    print("  validation AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in auc.items()))
    print(f"  load average before {r['load_average_before'][0]:.2f}, after "
          f"{r['load_average_after'][0]:.2f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=80_000, help="rows (default: 80000)")
    p.add_argument("--grid-features", type=int, default=15, help="(default: 15)")
    p.add_argument("--bank-features", type=int, default=15, help="(default: 15)")
    p.add_argument("--trees", type=int, default=50, help="(default: 50)")
    p.add_argument("--depth", type=int, default=5, help="(default: 5)")
    p.add_argument("--bins", type=int, default=32, help="(default: 32)")
    p.add_argument("--learning-rate", type=float, default=0.1, help="(default: 0.1)")
    p.add_argument("--l2", type=float, default=1.0, help="(default: 1.0)")
    p.add_argument("--early-stopping-rounds", type=int, default=0,
                   help="(default: 0, all trees are grown)")
    p.add_argument("--compare-lr", action="store_true",
                   help="also train the federated LR (PSI again; adds its AUC and time)")
    p.add_argument("--deadline", type=float, default=300.0, help="(default: 300 s)")
    p.add_argument("--timeout", type=float, default=3600.0, help="(default: 3600 s)")
    p.add_argument("--keep", type=Path, help="copy the run folder here")
    p.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "gbdt_speed.json",
                   help="where to write the results (default: bench/results/gbdt_speed.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print_result(result)
    write_json(args.json, [result], REFERENCE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
