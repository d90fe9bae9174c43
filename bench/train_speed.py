"""Federated training speed against centralized numpy SGD on the same rows and batches.

Not a test. Generates a synthetic vertically split data set (default 80,000 rows, 15 grid +
15 bank features), runs ``gridcredit simulate`` (three real processes over loopback with
mutual TLS), and prints:

- the federated ``fit_seconds`` (from the parties' own clocks, PSI and start-up excluded),
- the same epochs and batches as plain numpy mini-batch SGD (float64, exact sigmoid) and the
  same Taylor SGD in plaintext, and scikit-learn's LogisticRegression,
- the ratio federated / centralized numpy SGD,
- bytes sent during training (per party and by the coordinator) against the protocol's lower
  bound, and where the parties' time went (compute, send, waiting for the peer),
- validation AUC of each.

    python bench/train_speed.py                       # 80k rows, 5 epochs, batch 1024
    python bench/train_speed.py --rows 100000 --json bench/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from federation.messages import TrainSettings  # noqa: E402
from federation.schedule import Schedule  # noqa: E402
from federation.simulate import SimulationSpec, run_simulation  # noqa: E402
from parties import metrics  # noqa: E402
from parties.reference import centralized_lr, taylor_sgd  # noqa: E402

FIT_STEPS = {"pair-key", "masked-x", "fit"}
REFERENCE = {"secretflow_ss_lr_seconds": 4.5, "secretflow_ss_lr_mb": 198.0,
             "target_seconds": 1.5, "target_mb": 40.0}


def make_data(rows: int, k_grid: int, k_bank: int, seed: int, folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    xg, xb = rng.normal(size=(rows, k_grid)), rng.normal(size=(rows, k_bank))
    logit = xg @ rng.normal(scale=0.4, size=k_grid) + xb @ rng.normal(scale=0.4, size=k_bank) - 1
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = np.array([f"E{i:08d}" for i in range(rows)])
    grid, bank = folder / "grid.csv", folder / "bank.csv"
    _write(grid, ["id"] + [f"g{j}" for j in range(k_grid)], ids, xg)
    _write(bank, ["id", "y"] + [f"b{j}" for j in range(k_bank)], ids, np.column_stack([y, xb]))
    return grid, bank


def _write(path: Path, header: list[str], ids: np.ndarray, x: np.ndarray) -> None:
    body = np.char.add(np.char.add(ids.astype(str), ","),
                       np.array([",".join(f"{v:.6g}" for v in row) for row in x]))
    path.write_text(",".join(header) + "\n" + "\n".join(body.tolist()) + "\n")


def numpy_sgd(x: np.ndarray, y: np.ndarray, schedule: Schedule, s: TrainSettings) -> np.ndarray:
    """Plain float64 mini-batch SGD with the exact sigmoid, same batches and order."""
    rows = schedule.train_rows
    theta = np.zeros(x.shape[1])
    for epoch in range(1, s.epochs + 1):
        for batch in schedule.order(epoch):
            a, b = schedule.batch_bounds[int(batch)]
            idx = rows[a:b]
            p = 1 / (1 + np.exp(-(x[idx] @ theta)))
            theta -= s.learning_rate * (x[idx].T @ (p - y[idx]) / len(idx) + s.l2 * theta)
    return theta


def fit_traffic(run: Path) -> dict[str, int]:
    out = {}
    for node in ("grid", "bank", "coordinator"):
        total = 0
        for line in (run / node / "audit.jsonl").read_text().splitlines():
            e = json.loads(line)
            if e["direction"] == "sent" and (e["step"] in FIT_STEPS or e["step"] in
                                             ("deal", "sync/epoch")):
                total += e["bytes"]
        out[node] = total
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=80_000, help="rows (default: 80000)")
    ap.add_argument("--grid-features", type=int, default=15, help="(default: 15)")
    ap.add_argument("--bank-features", type=int, default=15, help="(default: 15)")
    ap.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    ap.add_argument("--batch-size", type=int, default=1024, help="(default: 1024)")
    ap.add_argument("--learning-rate", type=float, default=0.15, help="(default: 0.15)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    s = TrainSettings(epochs=args.epochs, batch_size=args.batch_size,
                      learning_rate=args.learning_rate, tolerance=0.0,
                      validation_fraction=0.2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid_csv, bank_csv = make_data(args.rows, args.grid_features, args.bank_features, 7,
                                       folder)
        started = time.perf_counter()
        report = run_simulation(SimulationSpec(folder / "run", grid_csv, bank_csv, settings=s,
                                               quiet=True))
        wall = time.perf_counter() - started
        traffic = fit_traffic(folder / "run")
        stats = {n: json.loads((folder / "run" / n / "stats.json").read_text())
                 for n in ("grid", "bank")}
        # Centralized baselines on exactly the aligned rows, split and batches.
        from parties.data import Standardizer, load_party_csv

        g, b = load_party_csv(grid_csv), load_party_csv(bank_csv, label_column="y")
        order = [line.split(",")[0] for line in
                 (folder / "run" / "bank" / "predictions.csv").read_text().splitlines()[1:]]
        gi, bi = {v: i for i, v in enumerate(g.ids)}, {v: i for i, v in enumerate(b.ids)}
        xg = g.x[[gi[i] for i in order]]
        xb = b.x[[bi[i] for i in order]]
        y = b.y[[bi[i] for i in order]] if b.y is not None else np.zeros(len(order))
    schedule = Schedule(len(order), s.validation_fraction, s.batch_size, s.seed)
    tr, va = schedule.train_rows, schedule.validation_rows
    zg, zb = Standardizer.fit(xg[tr]).apply(xg), Standardizer.fit(xb[tr]).apply(xb)
    x1 = np.hstack([zg, zb, np.ones((len(order), 1))])
    t0 = time.perf_counter()
    theta = numpy_sgd(x1, y, schedule, s)
    t_sgd = time.perf_counter() - t0
    t0 = time.perf_counter()
    tg, tb, _ = taylor_sgd(zg, np.hstack([zb, np.ones((len(order), 1))]), y, schedule, s, None)
    t_taylor = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = centralized_lr(np.hstack([zg, zb])[tr], y[tr], s.l2, s.seed)
    t_sk = time.perf_counter() - t0
    auc = {
        "federated": report["validation"]["auc"],
        "numpy_sgd_exact_sigmoid": metrics.roc_auc(y[va], 1 / (1 + np.exp(-(x1[va] @ theta)))),
        "numpy_taylor_sgd": metrics.roc_auc(
            y[va], 1 / (1 + np.exp(-(zg[va] @ tg + np.hstack([zb[va], np.ones((len(va), 1))]) @ tb)))),
        "sklearn": metrics.roc_auc(y[va], sk.predict_proba(np.hstack([zg, zb])[va])[:, 1]),
    }
    n_iter = report["epochs_run"] * schedule.n_batches
    # Lower bound of mode local per DESIGN.md: E once per batch (n_train x k x 8 bytes per
    # party), then per iteration and direction F (b x 8) + z (k x 8) + masked loss (b x 8).
    k_g, k_b = args.grid_features, args.bank_features + 1
    bound = 8 * schedule.n_train * (k_g + k_b) + n_iter * 8 * (
        2 * 2 * schedule.width + k_g + k_b)
    fit = report["fit_seconds"]
    result = {
        "rows": args.rows, "features": [args.grid_features, args.bank_features],
        "epochs": args.epochs, "batch_size": args.batch_size, "iterations": n_iter,
        "federated_fit_seconds": fit, "numpy_sgd_seconds": t_sgd,
        "numpy_taylor_sgd_seconds": t_taylor, "sklearn_seconds": t_sk,
        "ratio_federated_to_numpy_sgd": fit / t_sgd,
        "ratio_to_target": fit / REFERENCE["target_seconds"],
        "ratio_to_secretflow": fit / REFERENCE["secretflow_ss_lr_seconds"],
        "psi_seconds": report["psi_seconds"], "simulate_wall_seconds": wall,
        "fit_bytes": traffic, "fit_megabytes_total": sum(traffic.values()) / 1e6,
        "protocol_lower_bound_megabytes": bound / 1e6,
        "time_split": {n: stats[n].get("fit_time_split", {}) for n in ("grid", "bank")},
        "validation_auc": auc, "reference": REFERENCE,
    }
    print(f"rows {args.rows}, {args.grid_features}+{args.bank_features} features, "
          f"{args.epochs} epochs, batch {args.batch_size}: {n_iter} iterations")
    print(f"{'':34}{'seconds':>10}{'ratio':>10}")
    print(f"{'federated fit (3 processes, mTLS)':34}{fit:10.3f}{fit / t_sgd:10.1f}")
    print(f"{'numpy SGD, exact sigmoid':34}{t_sgd:10.3f}{1.0:10.1f}")
    print(f"{'numpy Taylor SGD (same algorithm)':34}{t_taylor:10.3f}{t_taylor / t_sgd:10.1f}")
    print(f"{'scikit-learn LogisticRegression':34}{t_sk:10.3f}{t_sk / t_sgd:10.1f}")
    print(f"target {REFERENCE['target_seconds']} s -> x{fit / REFERENCE['target_seconds']:.2f}; "
          f"SecretFlow SS-LR 4.5 s -> x{fit / 4.5:.2f}")
    print(f"training traffic {sum(traffic.values()) / 1e6:.1f} MB {traffic} "
          f"(lower bound {bound / 1e6:.1f} MB; target 40 MB; SecretFlow 198 MB)")
    for node in ("grid", "bank"):
        print(f"{node} time split: {stats[node].get('fit_time_split')}")
    print("validation AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in auc.items()))
    print(f"PSI {report['psi_seconds']:.2f} s for {args.rows} x {args.rows}; whole simulate "
          f"{wall:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
