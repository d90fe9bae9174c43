"""Benchmark the whole two-party ECDH PSI (not a test).

Runs both roles, grid and bank, in ONE process that shares one ``PsiPool`` (default: one
worker per core), at each size in ``--sizes`` IDs per side with ``--overlap`` of them
common (default 50 %).  Every message goes through bytes as on the wire (no network).
Phases, each summed over both parties because they share this machine:

- hash:      ``hash_parallel`` of each party's IDs (SHA-512, 2 x from_uniform, add, to u)
- blind:     first exponentiation of the own hashed points, then the secret shuffle
- reblind:   validation and second exponentiation of the peer's points
- intersect: un-shuffle, sort and match (both sides), and a check of the result

``total`` is the wall time from hashing to both intersections (pool start-up excluded,
reported apart: a node starts its pool once).  ``cpu`` adds the CPU time of this process
and of the pool workers; on a machine shared with other jobs the wall time grows but the
CPU time hardly does, so ``cpu / cores`` is what an idle machine would take.  With each
party on its own machine of the same size, each would need about half of it.
``x ref`` divides the total by SecretFlow's 1.37 s for 100k x 100k, scaled linearly in n.

The reference implementation is OpenMined's ``openmined-psi`` (C++ with Python bindings,
ECDH over P-256, one thread), run at the same sizes on the same IDs in this process with
``DataStructure.RAW`` (an exact intersection, no false positives) and
``reveal_intersection=True``: server setup (its n points), client request (its n points),
server reply (re-blinds the client's n), client intersection. Only the client learns the
result there; here both parties do. Its bytes are the three protobuf messages. ``ours/omp``
divides our total by its total (wall and CPU). It is not a project dependency: install it
into the benchmark's environment with ``pip install --no-deps openmined-psi`` (its wheel pins
protobuf==6.30.2, which breaks this project's protobuf 7 gencode; with ``--no-deps`` it runs
on protobuf 7). Without it the reference is skipped with a message; ``--no-reference``
skips it on purpose (at 1M per side it takes several minutes).

Usage (from the repository root)::

    python bench/psi_speed.py                          # 10k and 100k per side
    python bench/psi_speed.py --sizes 1000000 --json /tmp/psi_1m.json
    python bench/psi_speed.py --sizes 10000 --workers 1 --strict
    python bench/psi_speed.py --sizes 10000,100000,1000000 --json bench/results/psi.json
    python bench/psi_speed.py --sizes 1000000 --no-reference
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto import psi
from parties.psi_pool import PsiPool, hash_parallel, reblind_parallel

REFERENCE_S = 1.37  # SecretFlow ECDH-PSI, 100k x 100k
REFERENCE_N = 100_000
PHASES = ("hash", "blind", "reblind", "intersect")


def _cpu_seconds() -> float:
    """CPU time of this process and all its descendants (pool workers, fork server)."""
    total = time.process_time()
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Run:
    """The measurements of one size."""

    n_per_side: int
    common: int
    workers: int
    strict: bool
    pool_start_s: float = 0.0
    wall_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    cpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    total_s: float = 0.0
    cpu_total_s: float = 0.0
    bytes_exchanged: int = 0
    ids_per_s: float = 0.0
    ratio_to_reference: float = 0.0
    load_average_1m: float = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        w0, c0 = time.perf_counter(), _cpu_seconds()
        yield
        self.wall_s[name] += time.perf_counter() - w0
        self.cpu_s[name] += _cpu_seconds() - c0


def make_ids(n: int, common: int, seed: int) -> tuple[list[str], list[str]]:
    """Two lists of n unique 18-character enterprise codes sharing ``common`` of them."""
    rng = np.random.default_rng(seed)  # synthetic data only, not key material
    codes = rng.choice(10**15, size=2 * n - common, replace=False)
    ids = [f"913{c:015d}" for c in codes.tolist()]
    grid = ids[:n]
    bank = ids[:common] + ids[n:]
    return [grid[i] for i in rng.permutation(n)], [bank[i] for i in rng.permutation(n)]


def run_once(n: int, overlap: float, pool: PsiPool, strict: bool, seed: int) -> Run:
    """The whole protocol for one size; raises if the intersection is wrong."""
    common = round(n * overlap)
    run = Run(n, common, pool.workers, strict, load_average_1m=os.getloadavg()[0])
    ids = make_ids(n, common, seed)  # (grid, bank)
    domain = f"bench-job-{seed}-{n}".encode()
    keys = (psi.new_key(), psi.new_key())
    t0 = time.perf_counter()
    with run.phase("hash"):
        hashed = [hash_parallel(ids[i], domain, pool=pool) for i in (0, 1)]
    with run.phase("blind"):
        shuffled = [psi.shuffle(reblind_parallel(hashed[i], keys[i], pool=pool)) for i in (0, 1)]
        first = [psi.points_to_bytes(shuffled[i][0]) for i in (0, 1)]
    with run.phase("reblind"):
        # Party i validates and raises the peer's points; what it sends back is its copy of
        # the doubly-blinded peer points.
        peer_double = [
            reblind_parallel(psi.points_from_bytes(first[1 - i]), keys[i], pool=pool, strict=strict)
            for i in (0, 1)
        ]
        answer = [psi.points_to_bytes(peer_double[i]) for i in (0, 1)]
    rows: list[list[str]] = []
    with run.phase("intersect"):
        for i in (0, 1):
            own_double = psi.unshuffle(psi.points_from_bytes(answer[1 - i]), shuffled[i][1])
            own_index, _ = psi.intersect(own_double, peer_double[i])
            rows.append([ids[i][j] for j in own_index])
    run.total_s = time.perf_counter() - t0
    if rows[0] != rows[1] or set(rows[0]) != set(ids[0]) & set(ids[1]) or len(rows[0]) != common:
        raise RuntimeError(f"PSI result is wrong at n={n}: {len(rows[0])} rows, expected {common}")
    run.cpu_total_s = sum(run.cpu_s.values())
    run.bytes_exchanged = sum(map(len, first)) + sum(map(len, answer))
    run.ids_per_s = 2 * n / run.total_s
    run.ratio_to_reference = run.total_s / (REFERENCE_S * n / REFERENCE_N)
    return run


@dataclass
class Reference:
    """openmined-psi at one size: phases (seconds), totals, bytes, and ours / it."""

    n_per_side: int
    common: int
    wall_s: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    cpu_total_s: float = 0.0
    bytes_exchanged: int = 0
    load_average_1m: float = 0.0
    ours_over_reference_wall: float = 0.0
    ours_over_reference_cpu: float = 0.0


def load_reference() -> Any:
    """The openmined-psi module, or None when it is not installed."""
    try:
        import private_set_intersection.python as omp  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    return omp


def run_reference(omp: Any, n: int, overlap: float, seed: int) -> Reference:
    """openmined-psi on the same IDs as ``run_once``; raises if the intersection is wrong."""
    common = round(n * overlap)
    ref = Reference(n, common, load_average_1m=os.getloadavg()[0])
    ids = make_ids(n, common, seed)  # (grid = server, bank = client)
    t0, c0 = time.perf_counter(), time.process_time()
    marks = [t0]
    server = omp.server.CreateWithNewKey(True)
    client = omp.client.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, n, ids[0], omp.DataStructure.RAW)
    marks.append(time.perf_counter())
    request = client.CreateRequest(ids[1])
    marks.append(time.perf_counter())
    response = server.ProcessRequest(request)
    marks.append(time.perf_counter())
    found = client.GetIntersection(setup, response)
    marks.append(time.perf_counter())
    ref.cpu_total_s = time.process_time() - c0
    ref.total_s = marks[-1] - t0
    names = ("setup", "request", "reply", "intersect")
    ref.wall_s = {k: marks[i + 1] - marks[i] for i, k in enumerate(names)}
    got = {ids[1][i] for i in found}
    if len(found) != common or got != set(ids[0]) & set(ids[1]):
        raise RuntimeError(f"openmined-psi result is wrong at n={n}: {len(found)} rows, "
                           f"expected {common}")
    ref.bytes_exchanged = setup.ByteSize() + request.ByteSize() + response.ByteSize()
    return ref


def format_table(runs: list[Run], refs: dict[int, Reference] | None = None) -> str:
    refs = refs or {}
    head = (
        f"{'n/side':>9} {'hash':>7} {'blind':>7} {'reblind':>7} {'isect':>6} {'total':>7} "
        f"{'cpu':>7} {'MB sent':>8} {'IDs/s':>8} {'x ref':>6}  (seconds; both parties)"
    )
    if refs:
        head += (f"\n{'':>9} {'omp s':>7} {'omp cpu':>7} {'omp MB':>7} {'ours/omp':>8} "
                 f"{'(cpu)':>6}  (openmined-psi, one thread, client learns)")
    lines = [head]
    for r in runs:
        w = r.wall_s
        lines.append(
            f"{r.n_per_side:>9,} {w['hash']:7.2f} {w['blind']:7.2f} {w['reblind']:7.2f} "
            f"{w['intersect']:6.2f} {r.total_s:7.2f} {r.cpu_total_s:7.2f} "
            f"{r.bytes_exchanged / 1e6:8.1f} {r.ids_per_s:8,.0f} {r.ratio_to_reference:6.1f}"
        )
        ref = refs.get(r.n_per_side)
        if ref is not None:
            lines.append(
                f"{'':>9} {ref.total_s:7.2f} {ref.cpu_total_s:7.2f} "
                f"{ref.bytes_exchanged / 1e6:7.1f} {ref.ours_over_reference_wall:8.2f} "
                f"{ref.ours_over_reference_cpu:6.2f}"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="psi_speed",
        description="Time the two-party ECDH PSI (both roles in one process, one shared "
        "process pool) and print seconds per phase.",
    )
    p.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated IDs per side (default: 10000,100000; add 1000000 for 1M)",
    )
    p.add_argument("--overlap", type=float, default=0.5, help="common fraction (default: 0.5)")
    p.add_argument("--workers", type=int, default=None, help="pool processes (default: cores)")
    p.add_argument("--strict", action="store_true", help="also reject twist points (slower)")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic IDs (default: 1)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip openmined-psi (run by default when it is installed)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"--sizes: expected integers separated by commas, got {args.sizes!r}")
        return 2
    if not sizes or min(sizes) < 2 or not 0.0 <= args.overlap <= 1.0:
        print("--sizes must be >= 2 and --overlap within [0, 1]")
        return 2
    omp = None if args.no_reference else load_reference()
    if omp is None and not args.no_reference:
        print("openmined-psi is not installed: skipping the reference "
              "(pip install --no-deps openmined-psi)", file=sys.stderr, flush=True)
    runs: list[Run] = []
    refs: dict[int, Reference] = {}
    t0 = time.perf_counter()
    with PsiPool(args.workers) as pool:
        pool.warm_up()
        start = time.perf_counter() - t0
        for n in sizes:
            run = run_once(n, args.overlap, pool, args.strict, args.seed)
            run.pool_start_s = start
            runs.append(run)
            print(f"n={n:,}: {run.total_s:.2f} s (load avg {run.load_average_1m:.2f})",
                  file=sys.stderr, flush=True)
            if omp is not None:
                ref = run_reference(omp, n, args.overlap, args.seed)
                ref.ours_over_reference_wall = run.total_s / ref.total_s
                ref.ours_over_reference_cpu = run.cpu_total_s / ref.cpu_total_s
                refs[n] = ref
                print(f"n={n:,}: openmined-psi {ref.total_s:.2f} s (load avg "
                      f"{ref.load_average_1m:.2f})", file=sys.stderr, flush=True)
            if args.json is not None:
                _write_json(args.json, runs, refs)
    print(
        f"two-party ECDH PSI (X25519, Ed25519 RO hash), both roles in one process, "
        f"{runs[0].workers} worker(s), {os.cpu_count()} cores, pool start {start:.2f} s, "
        f"load avg {runs[0].load_average_1m:.2f}, overlap {args.overlap:.0%}"
        + (", strict" if args.strict else "")
    )
    print(format_table(runs, refs))
    if not args.no_reference and omp is None:
        print("reference skipped: openmined-psi is not installed "
              "(pip install --no-deps openmined-psi)")
    return 0


def _git_commit() -> str:
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def _write_json(path: Path, runs: list[Run], refs: dict[int, Reference]) -> None:
    payload: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "reference": {"seconds": REFERENCE_S, "n_per_side": REFERENCE_N},
        "cores": os.cpu_count(),
        "runs": [asdict(r) for r in runs],
        "openmined_psi": [asdict(r) for r in refs.values()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
