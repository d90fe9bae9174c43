"""Grid feature tables at scale: each engine's time and peak memory per size, in one run.

Not a test. For each size in ``--sizes`` (enterprises; 36 months each) it generates the
synthetic raw tables once per format in ``--formats`` (``gridcredit synth``, timed too, kept
in ``--data`` for later runs), then builds the grid's feature table at the manifest's as-of
month with each engine in ``--engines`` as a separate process, and reports:

- ``build_s``: reading, checking and computing every indicator (the engine's own time; for
  Spark the session is started first and its start-up is reported apart as ``start_s``),
- ``write_s``: writing the feature CSV,
- ``build_cpu_s`` / ``write_cpu_s``: the process's CPU seconds (all threads) of each,
- ``load``: the 1-minute load average as the build ended (the machine may be shared),
- ``peak_rss_mb``: the process's peak RSS (``VmHWM`` sampled from /proc); for Spark the
  largest sum over the process and its JVM (``tree_mb``),
- ``vs_pandas``: the pandas reference's build time over this engine's, where both ran,
- ``same_as_duckdb``: whether the feature CSV is byte-identical to DuckDB's on the same data
  (else the share of cells that differ by more than 1e-9).
The pandas reference is the baseline this replaces ("the non-SQL limit"); it is run up to
``--pandas-max`` enterprises only (1M would take several minutes and most of the memory).

Usage (from the repository root)::

    python bench/features_speed.py                                   # 10k, 100k, 1M
    python bench/features_speed.py --sizes 10000 --engines duckdb,pandas
    python bench/features_speed.py --json bench/results/features.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import RssSampler, int_list  # noqa: E402


def _child(args: argparse.Namespace) -> int:
    """One build in this process; prints a JSON line with its timings."""
    from parties.labels.engine import build_grid_features
    from parties.labels.schema import parse_month
    from parties.labels.sqlkit import Engine
    from parties.labels.writers import write_csv_fast

    manifest = json.loads((Path(args.raw) / "manifest.json").read_text(encoding="utf-8"))
    engine = Engine(args.engine)
    t0 = time.perf_counter()
    if engine is Engine.SPARK:
        from parties.labels.spark import SparkRunner

        SparkRunner(args.spark_master)  # the session the build reuses
    t1, c1 = time.perf_counter(), time.process_time()
    build = build_grid_features(args.raw, parse_month(manifest["as_of"]), engine,
                                spark_master=args.spark_master)
    t2, c2 = time.perf_counter(), time.process_time()
    write_csv_fast(Path(args.out), build.table)
    t3, c3 = time.perf_counter(), time.process_time()
    print(json.dumps({"start_s": t1 - t0, "build_s": t2 - t1, "write_s": t3 - t2,
                      "build_cpu_s": c2 - c1, "write_cpu_s": c3 - c2,
                      "load": os.getloadavg()[0], "rows": len(build.table)}))
    return 0


def _synth(size: int, fmt: str, data: Path) -> tuple[Path, dict[str, Any]]:
    root = data / f"synth_{size}_{fmt}"
    stats_path = root / "synth_stats.json"
    if stats_path.is_file():
        return root, dict(json.loads(stats_path.read_text(encoding="utf-8")), cached=True)
    argv = [sys.executable, "-m", "parties.labels.cli", "synth", "--enterprises", str(size),
            "--months", "36", "--format", fmt, "--out", str(root)]
    stats = _timed(argv)
    stats_path.write_text(json.dumps(stats), encoding="utf-8")
    return root, dict(stats, cached=False)


def _timed(argv: list[str]) -> dict[str, Any]:
    with RssSampler() as rss:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... failed: {proc.stderr[-2000:]}")
    out: dict[str, Any] = {"wall_s": seconds, "peak_rss_mb": max(rss.hwm.values(), default=0.0),
                           "tree_mb": max(rss.tree.values(), default=0.0),
                           "stdout": proc.stdout.strip().splitlines()[-1:]}
    return out


def _compare(a: Path, b: Path) -> str:
    if a.read_bytes() == b.read_bytes():
        return "yes"
    import numpy as np
    import pandas as pd

    x, y = pd.read_csv(a, dtype={"id": str}), pd.read_csv(b, dtype={"id": str})
    if list(x.columns) != list(y.columns) or not x["id"].equals(y["id"]):
        return "no: other rows or columns"
    u, v = x.iloc[:, 1:].to_numpy(float), y.iloc[:, 1:].to_numpy(float)
    close = np.isclose(u, v, rtol=1e-9, atol=1e-9, equal_nan=True)
    return f"within 1e-9: {close.mean() * 100:.4f} % of cells"


def _run(size: int, fmt: str, engine: str, root: Path, out: Path,
         master: str) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--engine", engine,
            "--raw", str(root), "--out", str(out), "--spark-master", master]
    stats = _timed(argv)
    stats.update(json.loads(stats.pop("stdout")[0]))
    stats.update({"size": size, "format": fmt, "engine": engine})
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000, 1_000_000],
                        help="enterprises per synthetic data set, comma-separated "
                             "(36 months each)")
    parser.add_argument("--engines", default="duckdb,spark,pandas",
                        help="engines to time on each data set, comma-separated")
    parser.add_argument("--formats", default="parquet,csv",
                        help="input formats the synthetic raw tables are written in")
    parser.add_argument("--pandas-max", type=int, default=100_000,
                        help="largest size the pandas reference runs on (it is slow "
                             "and memory-hungry beyond)")
    parser.add_argument("--spark-master", default="local[2]",
                        help="Spark master URL for the spark engine")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "TMPDIR", "/tmp")) / "gridcredit-bench-features",
                        help="folder for the synthetic data and outputs (reused if present)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="duckdb", help=argparse.SUPPRESS)
    parser.add_argument("--raw", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    runs: list[dict[str, Any]] = []
    synths: list[dict[str, Any]] = []
    for size in args.sizes:
        for fmt in args.formats.split(","):
            root, stats = _synth(size, fmt, args.data)
            synths.append(dict(stats, size=size, format=fmt))
            print(f"synth {size:>9,} {fmt:8} {stats['wall_s']:8.1f} s "
                  f"{stats['peak_rss_mb']:8.0f} MB{' (cached)' if stats['cached'] else ''}",
                  flush=True)
            outputs: dict[str, Path] = {}
            for engine in args.engines.split(","):
                if engine == "pandas" and size > args.pandas_max:
                    continue
                out = args.data / f"features_{size}_{fmt}_{engine}.csv"
                run = _run(size, fmt, engine, root, out, args.spark_master)
                outputs[engine] = out
                if "duckdb" in outputs and engine != "duckdb":
                    run["same_as_duckdb"] = _compare(outputs["duckdb"], out)
                runs.append(run)
                print(f"  {engine:7} build {run['build_s']:7.2f} s (CPU {run['build_cpu_s']:.2f})"
                      f"  write {run['write_s']:5.2f} s (CPU {run['write_cpu_s']:.2f})  start "
                      f"{run['start_s']:5.1f} s  load {run['load']:.1f}  peak "
                      f"{run['peak_rss_mb']:6.0f} MB  "
                      f"tree {run['tree_mb']:6.0f} MB  {run.get('same_as_duckdb', '')}",
                      flush=True)
    _table(runs)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "synth": synths}, indent=2),
                             encoding="utf-8")
    return 0


def _table(runs: list[dict[str, Any]]) -> None:
    pandas = {(r["size"], r["format"]): r["build_s"] for r in runs if r["engine"] == "pandas"}
    print("\n| enterprises | input | engine | build s | build CPU s | write s | start s "
          "| peak RSS MB | load | vs pandas | same as DuckDB |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        base = pandas.get((r["size"], r["format"]))
        ratio = f"{base / r['build_s']:.1f}x" if base and r["engine"] != "pandas" else ""
        peak = r["tree_mb"] if r["engine"] == "spark" else r["peak_rss_mb"]
        print(f"| {r['size']:,} | {r['format']} | {r['engine']} | {r['build_s']:.2f} | "
              f"{r['build_cpu_s']:.2f} | {r['write_s']:.2f} | {r['start_s']:.1f} | {peak:.0f} | "
              f"{r['load']:.1f} | {ratio} | "
              f"{r.get('same_as_duckdb', '')} |")


if __name__ == "__main__":
    sys.exit(main())
