"""Federated training speed, traffic and memory against centralized numpy SGD on the same rows.

Not a test. For each size in ``--rows`` and each mode in ``--mode`` it generates a synthetic
vertically split data set (15 grid + 15 bank features by default, every ID on both sides),
runs ``gridcredit simulate`` (coordinator, grid and bank as three real processes over
loopback with mutual TLS, PSI included) and reports:

- the federated ``fit_seconds`` (the slower party's own clock; PSI and start-up excluded),
- the same epochs and batches as plain numpy mini-batch SGD (float64, exact sigmoid), the
  same Taylor SGD in plaintext (``parties.reference.taylor_sgd``), and scikit-learn's
  LogisticRegression (L-BFGS, to convergence), with the ratio of each to numpy SGD,
- bytes sent per iteration per party from the audit logs (steps of the fit only) against
  the protocol's lower bound (the tensors the protocol must send, nothing else; see
  ``protocol_bound``), both for the per-iteration message and amortized with the one-off
  masked feature matrix E,
- peak RSS per process: each node's ``VmHWM`` read here from /proc every 0.25 s (its
  self-reported ``ru_maxrss`` in ``<run>/<node>/stats.json`` and
  ``<run>/coordinator/job.json`` is shown too, but it includes this process's RSS at the
  fork: see ``RssSampler``), and the peak of the node's whole process tree (the node plus
  its PSI worker processes), sampled with psutil,
- PSI seconds, where the fit time went, validation AUC; then one table (``--json``: all).

Usage (from the repository root)::

    python bench/train_speed.py                          # 80k rows, mode shared (--mode local)
    python bench/train_speed.py --rows 10000,100000,1000000 --json bench/results/train.json
    python bench/train_speed.py --table bench/results/train_*.json      # reprint saved runs
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

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    RssSampler,
    aligned_order,
    audit_bytes,
    int_list,
    make_data,
    synthetic,
    write_json,
)
from federation.protocol.messages import Mode, TrainSettings
from federation.protocol.schedule import Schedule, min_batch_size
from federation.simulate import SimulationSpec, run_simulation
from parties.data import Standardizer
from parties.evaluation import metrics
from parties.reference import centralized_lr, taylor_sgd

Float = npt.NDArray[np.float64]
# Audit steps of the fit, by kind: one-off setup, per-iteration messages, the end.
SETUP_STEPS = {"pair-key", "masked-x"}
ITERATION_STEPS = {"fit", "fit-start"}
END_STEPS = {"reveal"}
COORDINATOR_STEPS = {"deal", "sync/epoch"}
FIT_STEPS = SETUP_STEPS | ITERATION_STEPS | END_STEPS
NODES = ("grid", "bank", "coordinator")
SEED = 7
REFERENCE = {"secretflow_ss_lr_seconds": 6.8, "secretflow_ss_lr_best_seconds": 4.5,  # issue 10
             "secretflow_ss_lr_mb": 198.0, "target_seconds": 0.5, "target_mb": 40.0,
             "rss_budget_mb_per_party": 2048.0}


# -- baselines -------------------------------------------------------------------------
def numpy_sgd(x: Float, y: Float, schedule: Schedule, s: TrainSettings) -> Float:
    """Plain float64 mini-batch SGD with the exact sigmoid, same batches and order.

    The last column of ``x`` is the intercept's column of ones, not penalized (as federated).
    """
    rows = schedule.train_rows
    theta = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], s.l2)
    penalty[-1] = 0.0
    for epoch in range(1, s.epochs + 1):
        for batch in schedule.order(epoch):
            a, b = schedule.batch_bounds[int(batch)]
            idx = rows[a:b]
            xb = x[idx]
            p = 1 / (1 + np.exp(-(xb @ theta)))
            theta -= s.learning_rate * (xb.T @ (p - y[idx]) / len(idx) + penalty * theta)
    return theta


# -- traffic ---------------------------------------------------------------------------
def fit_traffic(run: Path) -> dict[str, int]:
    """Bytes each node sent during the fit (the per-node totals of the classic output)."""
    sent = audit_bytes(run, NODES)
    return {node: sum(v for k, v in sent[node].items()
                      if k in FIT_STEPS or k in COORDINATOR_STEPS) for node in NODES}


def protocol_bound(mode: str, schedule: Schedule, k: dict[str, int]) -> dict[str, Any]:
    """Bytes the protocol must send, from the tensors it defines (8-byte ring elements).

    Per iteration on a batch of b rows each party sends (module docstrings of
    ``parties/shared_fit.py`` and ``parties/local_fit.py``):

    - mode shared: F = <d> - m (b), L = <d> - a (b), W = its share of the peer's weights
      minus a mask (k_own; the first W of an epoch goes in ``fit-start``);
    - mode local:  F (b), L (b), z = E_peer^T d + c_1 (k_peer).

    Once per job each party sends E = X - M (n_train x k_own). Per epoch the dealer sends
    each party one correction per product and iteration: mode shared c_1 of the forward
    product (widest batch) and of the backward product (k_peer), plus the bank's square
    triple (1); mode local c_1 of the gradient product (k_peer), plus the bank's loss
    triple (1). Nothing here counts framing, tags, shapes or TLS.
    """
    nb, n_train, w = schedule.n_batches, schedule.n_train, schedule.width
    out: dict[str, Any] = {}
    for role, peer in (("grid", "bank"), ("bank", "grid")):
        rows_per_iter = 2 * n_train / nb  # F and L, averaged over the epoch's batches
        extra = k[role] if mode == "shared" else k[peer]
        per_iter = 8 * (rows_per_iter + extra)
        setup = 8 * n_train * k[role]
        dealt = 8 * ((w + k[peer]) if mode == "shared" else k[peer]) + (8 if role == "bank" else 0)
        out[role] = {"per_iteration": per_iter, "setup": setup,
                     "dealer_per_iteration": dealt}
    return out


# -- one run ---------------------------------------------------------------------------
def run_one(rows: int, mode: str, args: argparse.Namespace, keep: Path | None
            ) -> dict[str, Any]:
    s = TrainSettings(mode=Mode(mode), epochs=args.epochs, batch_size=args.batch_size,
                      learning_rate=args.learning_rate, tolerance=0.0,
                      validation_fraction=0.2, deadline_seconds=args.deadline)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix=f"train_{rows}_{mode}_"))
    try:
        t0 = time.perf_counter()
        # The arrays are dropped before the nodes start and made again afterwards, so that
        # this process stays small while it forks them.
        grid_csv, bank_csv = make_data(rows, args.grid_features, args.bank_features, SEED, tmp)
        t_data = time.perf_counter() - t0
        print(f"[{rows:,} rows, mode {mode}] data written in {t_data:.1f} s; load average "
              f"{load_before[0]:.2f}; running simulate ...", file=sys.stderr, flush=True)
        run = tmp / "run"
        started = time.perf_counter()
        with RssSampler() as sampler:
            report = run_simulation(SimulationSpec(run, grid_csv, bank_csv, settings=s,
                                                   quiet=True, timeout=args.timeout))
        wall = time.perf_counter() - started
        sent = audit_bytes(run, NODES)
        traffic = fit_traffic(run)
        stats = {n: json.loads((run / n / "stats.json").read_text()) for n in ("grid", "bank")}
        job = json.loads((run / "coordinator" / "job.json").read_text())
        order = aligned_order(run / "bank" / "predictions.csv")
        pids = {n: int(report["nodes"][n]["pid"]) for n in NODES}
        if keep is not None:
            dest = keep / f"{rows}_{mode}"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(run, dest, ignore=shutil.ignore_patterns("certs"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Centralized baselines on exactly the aligned rows, split and batches.
    xg, xb, y = (a[order] for a in synthetic(rows, args.grid_features, args.bank_features,
                                              SEED))
    need = min_batch_size([xg.shape[1], xb.shape[1] + 1])  # the coordinator's rule
    schedule = Schedule(len(order), s.validation_fraction, s.batch_size, s.seed, need)
    tr, va = schedule.train_rows, schedule.validation_rows
    zg, zb = Standardizer.fit(xg[tr]).apply(xg), Standardizer.fit(xb[tr]).apply(xb)
    ones = np.ones((len(order), 1))
    x1 = np.hstack([zg, zb, ones])
    t0 = time.perf_counter()
    theta = numpy_sgd(x1, y, schedule, s)
    t_sgd = time.perf_counter() - t0
    zb1 = np.hstack([zb, ones])
    t0 = time.perf_counter()
    tg, tb, _ = taylor_sgd(zg, zb1, y, schedule, s, None)
    t_taylor = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = centralized_lr(x1[tr, :-1], y[tr], s.l2, s.seed)
    t_sk = time.perf_counter() - t0
    auc = {
        "federated": report["validation"]["auc"],
        "numpy_sgd_exact_sigmoid": metrics.roc_auc(y[va], 1 / (1 + np.exp(-(x1[va] @ theta)))),
        "numpy_taylor_sgd": metrics.roc_auc(
            y[va], 1 / (1 + np.exp(-(zg[va] @ tg + zb1[va] @ tb)))),
        "sklearn": metrics.roc_auc(y[va], sk.predict_proba(x1[va, :-1])[:, 1]),
    }
    n_iter = report["epochs_run"] * schedule.n_batches
    k = {"grid": args.grid_features, "bank": args.bank_features + 1}
    bound = protocol_bound(mode, schedule, k)
    per_party: dict[str, Any] = {}
    for role in ("grid", "bank"):
        steps = sent[role]
        it = sum(steps.get(x, 0) for x in ITERATION_STEPS)
        setup = sum(steps.get(x, 0) for x in SETUP_STEPS)
        end = sum(steps.get(x, 0) for x in END_STEPS)
        b = bound[role]
        per_party[role] = {
            "iteration_bytes_per_iter": it / n_iter,
            "bound_iteration_bytes_per_iter": b["per_iteration"],
            "fit_bytes_per_iter": (it + setup + end) / n_iter,
            "bound_fit_bytes_per_iter": b["per_iteration"] + b["setup"] / n_iter,
            "overhead_iteration": it / n_iter / b["per_iteration"] - 1,
            "setup_bytes": setup, "bound_setup_bytes": b["setup"],
            "to_coordinator_bytes": sum(steps.get(x, 0) for x in COORDINATOR_STEPS),
            "dealt_bytes_per_iter": sent["coordinator"].get("deal", 0) / 2 / n_iter,
            "bound_dealt_bytes_per_iter": b["dealer_per_iteration"],
            "peak_rss_mb": sampler.hwm.get(pids[role]),
            "peak_rss_mb_self_reported": stats[role].get("peak_rss_mb"),
            "peak_rss_tree_mb_sampled": sampler.tree.get(pids[role]),
            "fit_time_split": stats[role].get("fit_time_split", {}),
            "fit_seconds": stats[role].get("fit_seconds"),
            "psi_seconds": stats[role].get("psi_seconds"),
        }
    fit = report["fit_seconds"]
    bound_total = sum(bound[r]["setup"] + n_iter * (bound[r]["per_iteration"]
                                                    + bound[r]["dealer_per_iteration"])
                      for r in ("grid", "bank"))
    return {
        "rows": rows, "mode": mode, "features": [args.grid_features, args.bank_features],
        "epochs": args.epochs, "batch_size": args.batch_size, "iterations": n_iter,
        "federated_fit_seconds": fit, "numpy_sgd_seconds": t_sgd,
        "numpy_taylor_sgd_seconds": t_taylor, "sklearn_seconds": t_sk,
        "ratio_federated_to_numpy_sgd": fit / t_sgd,
        "ratio_to_target": fit / REFERENCE["target_seconds"],
        "ratio_to_secretflow": fit / REFERENCE["secretflow_ss_lr_seconds"],
        "psi_seconds": report["psi_seconds"], "simulate_wall_seconds": wall,
        "data_seconds": t_data,
        "fit_bytes": traffic, "fit_megabytes_total": sum(traffic.values()) / 1e6,
        "protocol_lower_bound_megabytes": bound_total / 1e6,
        "bytes_sent_by_step": sent, "per_party": per_party,
        "coordinator": {"peak_rss_mb": sampler.hwm.get(pids["coordinator"]),
                        "peak_rss_mb_self_reported": job.get("peak_rss_mb"),
                        "peak_rss_tree_mb_sampled": sampler.tree.get(pids["coordinator"])},
        "time_split": {n: stats[n].get("fit_time_split", {}) for n in ("grid", "bank")},
        "validation_auc": auc, "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def print_run(r: dict[str, Any]) -> None:
    """The classic per-run lines."""
    fit, t_sgd = r["federated_fit_seconds"], r["numpy_sgd_seconds"]
    t_taylor, t_sk = r["numpy_taylor_sgd_seconds"], r["sklearn_seconds"]
    print(f"rows {r['rows']}, {r['features'][0]}+{r['features'][1]} features, "
          f"{r['epochs']} epochs, batch {r['batch_size']}: {r['iterations']} iterations "
          f"(mode {r['mode']}, load average {r['load_average_before'][0]:.2f})")
    print(f"{'':34}{'seconds':>10}{'ratio':>10}")
    print(f"{'federated fit (3 processes, mTLS)':34}{fit:10.3f}{fit / t_sgd:10.1f}")
    print(f"{'numpy SGD, exact sigmoid':34}{t_sgd:10.3f}{1.0:10.1f}")
    print(f"{'numpy Taylor SGD (same algorithm)':34}{t_taylor:10.3f}{t_taylor / t_sgd:10.1f}")
    print(f"{'scikit-learn LogisticRegression':34}{t_sk:10.3f}{t_sk / t_sgd:10.1f}")
    best, sf = REFERENCE["secretflow_ss_lr_best_seconds"], REFERENCE["secretflow_ss_lr_seconds"]
    print(f"target {REFERENCE['target_seconds']} s -> x{fit / REFERENCE['target_seconds']:.2f}; "
          f"SecretFlow SS-LR {best}-{sf} s -> x{fit / sf:.2f}-{fit / best:.2f}")
    traffic = r["fit_bytes"]
    print(f"training traffic {r['fit_megabytes_total']:.1f} MB {traffic} "
          f"(lower bound {r['protocol_lower_bound_megabytes']:.1f} MB; target 40 MB; "
          f"SecretFlow 198 MB)")
    for node in ("grid", "bank"):
        split = {k: round(v, 3) for k, v in r["time_split"][node].items()}
        print(f"{node} time split: {split}")
    print("validation AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in r["validation_auc"].items()))
    print(f"PSI {r['psi_seconds']:.2f} s for {r['rows']} x {r['rows']}; whole simulate "
          f"{r['simulate_wall_seconds']:.1f} s")


def _run_name(r: dict[str, Any]) -> str:
    return f"{r['rows']:,} {r['mode']}"


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(runs: list[dict[str, Any]]) -> str:
    """One column per run, one line per measurement."""
    def row(label: str, get: Any, spec: str) -> str:
        return f"{label:34}" + "".join(f"{_fmt(get(r), spec):>18}" for r in runs)

    pp = "per_party"
    lines = [
        f"{'':34}" + "".join(f"{_run_name(r):>18}" for r in runs),
        row("iterations", lambda r: r["iterations"], "d"),
        row("federated fit s", lambda r: r["federated_fit_seconds"], ".3f"),
        row("numpy SGD s (exact sigmoid)", lambda r: r["numpy_sgd_seconds"], ".3f"),
        row("numpy Taylor SGD s", lambda r: r["numpy_taylor_sgd_seconds"], ".3f"),
        row("scikit-learn LR s", lambda r: r["sklearn_seconds"], ".3f"),
        row("federated / numpy SGD", lambda r: r["ratio_federated_to_numpy_sgd"], ".1f"),
        row("federated / target 0.5 s", lambda r: r["ratio_to_target"], ".2f"),
        row("PSI s (in the same run)", lambda r: r["psi_seconds"], ".2f"),
        row("grid B/iter (fit msgs)", lambda r: r[pp]["grid"]["iteration_bytes_per_iter"],
            ",.0f"),
        row("  lower bound", lambda r: r[pp]["grid"]["bound_iteration_bytes_per_iter"], ",.0f"),
        row("bank B/iter (fit msgs)", lambda r: r[pp]["bank"]["iteration_bytes_per_iter"],
            ",.0f"),
        row("  lower bound", lambda r: r[pp]["bank"]["bound_iteration_bytes_per_iter"], ",.0f"),
        row("grid B/iter incl. setup E", lambda r: r[pp]["grid"]["fit_bytes_per_iter"], ",.0f"),
        row("  lower bound", lambda r: r[pp]["grid"]["bound_fit_bytes_per_iter"], ",.0f"),
        row("bank B/iter incl. setup E", lambda r: r[pp]["bank"]["fit_bytes_per_iter"], ",.0f"),
        row("  lower bound", lambda r: r[pp]["bank"]["bound_fit_bytes_per_iter"], ",.0f"),
        row("dealer B/iter per party", lambda r: r[pp]["grid"]["dealt_bytes_per_iter"], ",.0f"),
        row("  lower bound (grid)", lambda r: r[pp]["grid"]["bound_dealt_bytes_per_iter"],
            ",.0f"),
        row("fit MB, all nodes", lambda r: r["fit_megabytes_total"], ".1f"),
        row("  lower bound", lambda r: r["protocol_lower_bound_megabytes"], ".1f"),
        row("peak RSS MB grid (VmHWM)", lambda r: r[pp]["grid"]["peak_rss_mb"], ".0f"),
        row("  self-reported ru_maxrss",
            lambda r: r[pp]["grid"]["peak_rss_mb_self_reported"], ".0f"),
        row("  grid + PSI workers (sampled)",
            lambda r: r[pp]["grid"]["peak_rss_tree_mb_sampled"], ".0f"),
        row("peak RSS MB bank (VmHWM)", lambda r: r[pp]["bank"]["peak_rss_mb"], ".0f"),
        row("  self-reported ru_maxrss",
            lambda r: r[pp]["bank"]["peak_rss_mb_self_reported"], ".0f"),
        row("  bank + PSI workers (sampled)",
            lambda r: r[pp]["bank"]["peak_rss_tree_mb_sampled"], ".0f"),
        row("peak RSS MB coordinator (VmHWM)", lambda r: r["coordinator"]["peak_rss_mb"],
            ".0f"),
        row("  self-reported ru_maxrss",
            lambda r: r["coordinator"]["peak_rss_mb_self_reported"], ".0f"),
    ]
    for role in ("grid", "bank"):
        for part in ("setup", "deal", "send", "wait", "barrier", "compute", "cpu"):
            lines.append(row(f"{role} fit split: {part} s",
                             lambda r, role=role, part=part:
                             r["time_split"][role].get(part), ".3f"))
    for name in ("federated", "numpy_sgd_exact_sigmoid", "numpy_taylor_sgd", "sklearn"):
        lines.append(row(f"validation AUC {name}"[:34], lambda r, n=name: r["validation_auc"][n],
                         ".4f"))
    lines.append(row("load average before", lambda r: r["load_average_before"][0], ".2f"))
    return "\n".join(lines)


def _modes(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    allowed = [m.value for m in Mode]
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"modes must be among {allowed}, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="train_speed",
        description="Federated training (gridcredit simulate) against centralized numpy SGD "
        "and scikit-learn: seconds, bytes per iteration against the protocol's lower bound, "
        "peak RSS per process, PSI seconds, validation AUC.")
    ap.add_argument("--rows", type=int_list, default=[80_000],
                    help="comma-separated row counts, e.g. 10000,100000,1000000 "
                    "(default: 80000)")
    ap.add_argument("--mode", type=_modes, default=["shared"],
                    help="comma-separated training modes: shared, local (default: shared)")
    ap.add_argument("--grid-features", type=int, default=15, help="(default: 15)")
    ap.add_argument("--bank-features", type=int, default=15, help="(default: 15)")
    ap.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    ap.add_argument("--batch-size", type=int, default=1024, help="(default: 1024)")
    ap.add_argument("--learning-rate", type=float, default=0.15, help="(default: 0.15)")
    ap.add_argument("--deadline", type=float, default=600.0,
                    help="per-message deadline of the nodes in seconds; large runs need a long "
                    "one (default: 600)")
    ap.add_argument("--timeout", type=float, default=7200.0,
                    help="whole simulate timeout in seconds (default: 7200)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="copy each run folder (certificates excluded) to KEEP/<rows>_<mode>")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--table", type=Path, nargs="+", metavar="JSON",
                    help="run nothing: print the table of the runs saved in these JSON files")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs: list[dict[str, Any]] = []
    if args.table:
        for path in args.table:
            runs += json.loads(path.read_text())["runs"]
        print(format_table(runs))
        return 0
    for rows in args.rows:
        for mode in args.mode:
            r = run_one(rows, mode, args, args.keep)
            print_run(r)
            print(flush=True)
            runs.append(r)
            if args.json:  # write after every run: a large run may be the last one to finish
                write_json(args.json, runs, REFERENCE)
    print(format_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
