"""Shared pieces of the benchmark scripts: synthetic vertically split data, peak memory, JSON.

Not a test and not part of the product: ``bench/*.py`` import it (with the repository root
on ``sys.path``) so every benchmark writes the same data and measures memory the same way.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


Float = npt.NDArray[np.float64]


# -- data ------------------------------------------------------------------------------
# The three ASCII digits of 0..999, for formatting numbers with two table look-ups.
_DIGITS = (np.arange(1000)[:, None] // np.array([100, 10, 1]) % 10 + ord("0")).astype(np.uint8)


def _fixed(q: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """Each q (|q| < 10^6) as the 8 ASCII bytes ``+d.ddddd`` of q / 10^5, vectorized."""
    out = np.empty(q.shape + (8,), dtype=np.uint8)
    out[..., 0] = np.where(q < 0, ord("-"), ord("+"))
    hi, lo = np.divmod(np.abs(q), 1000)
    out[..., [1, 3, 4]] = _DIGITS[hi]
    out[..., 2] = ord(".")
    out[..., 5:] = _DIGITS[lo]
    return out


def _write_csv(path: Path, header: list[str], label: npt.NDArray[np.int32] | None,
               q: npt.NDArray[np.int32]) -> None:
    """IDs ``E%08d`` (the row number), an optional 0/1 label, features q / 10^5 (``_fixed``)."""
    rows, k = q.shape
    lead = 10 + (2 if label is not None else 0)
    buf = np.empty((rows, lead + 9 * k), dtype=np.uint8)
    buf[:, 0] = ord("E")
    hi, lo = np.divmod(np.arange(rows, dtype=np.int32), 10_000)
    buf[:, 1:5] = _four(hi)
    buf[:, 5:9] = _four(lo)
    buf[:, 9] = ord(",")
    if label is not None:
        buf[:, 10] = label + ord("0")
        buf[:, 11] = ord(",")
    cells = buf[:, lead:].reshape(rows, k, 9)
    cells[:, :, :8] = _fixed(q)
    cells[:, :, 8] = ord(",")
    buf[:, -1] = ord("\n")
    with path.open("wb") as handle:
        handle.write((",".join(header) + "\n").encode())
        handle.write(buf.tobytes())


def _four(v: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """The four ASCII digits of each 0 <= v < 10^4."""
    hi, lo = np.divmod(v, 100)
    return np.concatenate([_DIGITS[hi][:, 1:], _DIGITS[lo][:, 1:]], axis=1)


def _draw(rows: int, k_grid: int, k_bank: int, seed: int
          ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Features as integers q = round(z 10^5) (|z| < 10) and 0/1 labels of a logistic model."""
    if rows >= 10**8:
        raise ValueError("at most 99,999,999 rows (8-digit IDs)")
    rng = np.random.default_rng(seed)
    lim = 999_999

    def features(k: int) -> npt.NDArray[np.int32]:
        z = rng.standard_normal(size=(rows, k), dtype=np.float32)
        z *= 1e5
        return np.rint(z, out=z).astype(np.int32).clip(-lim, lim)

    qg, qb = features(k_grid), features(k_bank)
    beta_g, beta_b = rng.normal(scale=0.4, size=k_grid), rng.normal(scale=0.4, size=k_bank)
    logit = (qg @ beta_g + qb @ beta_b) / 1e5 - 1
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    return qg, qb, y


def synthetic(rows: int, k_grid: int, k_bank: int, seed: int) -> tuple[Float, Float, Float]:
    """(x_grid, x_bank, y) exactly as ``make_data`` writes them, bit for bit."""
    qg, qb, y = _draw(rows, k_grid, k_bank, seed)
    return qg / 1e5, qb / 1e5, y.astype(np.float64)


def make_data(rows: int, k_grid: int, k_bank: int, seed: int, folder: Path) -> tuple[Path, Path]:
    """Two CSVs with the same IDs ``E%08d``: grid (id, g0..) and bank (id, y, b0..)."""
    qg, qb, y = _draw(rows, k_grid, k_bank, seed)
    grid, bank = folder / "grid.csv", folder / "bank.csv"
    _write_csv(grid, ["id"] + [f"g{j}" for j in range(k_grid)], None, qg)
    del qg
    _write_csv(bank, ["id", "y"] + [f"b{j}" for j in range(k_bank)], y, qb)
    return grid, bank


def aligned_order(predictions: Path) -> npt.NDArray[np.int64]:
    """Row numbers (the digits of ``E%08d``) in the order the bank wrote its predictions."""
    import pandas as pd

    ids = pd.read_csv(predictions, usecols=["id"], dtype=str)["id"]
    return np.asarray(ids.str.slice(1).astype(np.int64).to_numpy(), dtype=np.int64)


# -- memory ----------------------------------------------------------------------------
def _vm_hwm_mb(pid: int) -> float | None:
    """The kernel's peak RSS of the process's current address space (Linux ``VmHWM``)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class RssSampler:
    """Peak memory of each child process of this one, sampled every ``interval`` seconds.

    ``hwm``: the child's own ``VmHWM`` (monotone, so the last sample before it exits is its
    peak up to then). Unlike ``ru_maxrss`` it is not inherited: after fork + exec a child's
    ``ru_maxrss`` starts at the RSS its parent had at the fork (Linux keeps the old address
    space's high-water mark across execve), which inflates the nodes' self-reported
    ``peak_rss_mb`` by this benchmark's own RSS. ``tree``: the largest sum of the current
    RSS of the child and its descendants (a node and its PSI worker processes).
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.hwm: dict[int, float] = {}
        self.tree: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]

            self._psutil: Any = psutil
        except ImportError:
            self._psutil = None

    def __enter__(self) -> Self:
        if self._psutil is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        ps = self._psutil
        me = ps.Process()
        while not self._stop.wait(self.interval):
            for child in me.children():
                hwm = _vm_hwm_mb(child.pid)
                if hwm is not None:
                    self.hwm[child.pid] = max(self.hwm.get(child.pid, 0.0), hwm)
                try:
                    total = child.memory_info().rss / 2**20
                    for sub in child.children(recursive=True):
                        try:
                            total += sub.memory_info().rss / 2**20
                        except ps.Error:
                            pass
                except ps.Error:
                    continue
                self.tree[child.pid] = max(self.tree.get(child.pid, 0.0), total)


def git_commit() -> str:
    """The repository's HEAD, with ``+dirty`` when tracked files differ from it."""
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_json(path: Path, runs: list[dict[str, Any]], reference: dict[str, Any]) -> None:
    """The runs with the date, commit, machine and the peers' reference figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "processor": platform.processor()},
        "reference": reference, "runs": runs,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def audit_bytes(run: Path, nodes: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Bytes sent per node and step (payload bytes as the audit log records them)."""
    out: dict[str, dict[str, int]] = {}
    for node in nodes:
        steps: dict[str, int] = {}
        with (run / node / "audit.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                e = json.loads(line)
                if e["direction"] == "sent":
                    steps[e["step"]] = steps.get(e["step"], 0) + int(e["bytes"])
        out[node] = steps
    return out


def int_list(text: str) -> list[int]:
    """Sizes from ``"10000,100_000"`` (an ``argparse`` type; each at least 100)."""
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas: {text!r}") \
            from exc
    if not values or min(values) < 100:
        raise argparse.ArgumentTypeError(f"each size must be >= 100: {text!r}")
    return values


def x25519_per_call(n: int = 4000, repeats: int = 3) -> dict[str, float]:
    """Microseconds per X25519 of the backend ``multiply`` uses and of libsodium, best of
    ``repeats`` alternating runs on one thread (ECDH is two such calls per ID and party)."""
    from crypto.psi import x25519  # after REPO is on sys.path (above)

    pts = np.random.default_rng(0).integers(0, 256, (n, 32), dtype=np.uint8)
    key = secrets.token_bytes(32)
    best = {"used": float("inf"), "libsodium": float("inf")}
    for _ in range(repeats):
        for name in best:
            t = time.perf_counter()
            x25519.multiply(key, pts, libsodium=name == "libsodium")
            best[name] = min(best[name], (time.perf_counter() - t) / n * 1e6)
    return best
