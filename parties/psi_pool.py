"""Run the ECDH PSI curve work of ``crypto.psi`` on threads, in chunks.

ECDH PSI costs two X25519 calls per ID and party (~45 us each, see ``crypto.psi.ecdh``).
libsodium is called through cffi, which releases the GIL for the length of each call, so
threads of this process keep every core busy: no worker processes, no pickling, no start-up
cost. The points are cut into contiguous chunks (at least four per thread, so the last one
does not leave a core idle), each chunk runs ``crypto.psi.x25519.multiply`` on a thread,
and the results are concatenated in order. Hashing (SHA-256, ~1 us per ID) stays on the
calling thread: it is too cheap to be worth a hand-off. Below ``SERIAL_BELOW`` points (or
with one worker) everything runs on the calling thread.

Start a ``PsiPool`` once per job or serving process and pass it to every call; without one,
each call starts and closes its own. Closing waits for running chunks.

Errors: a ``PsiError`` from a chunk is re-raised with the index shifted to the whole array;
chunks are read in order, so it is the first bad index overall, and chunks not yet started
are cancelled.

Assumes: keys may be shared with the threads of this process (same trust domain).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.psi import Points, PsiError
from crypto.psi.curve import check_unique
from crypto.psi.x25519 import multiply, multiply_each

SERIAL_BELOW = 1_000
MAX_CHUNK = 4_096
CHUNKS_PER_WORKER = 4


class PsiPool:
    """A pool of threads for PSI chunks, started once, closed explicitly.

    Parameters
    ----------
    workers : int or None
        Number of threads; default ``os.cpu_count()``.
    """

    def __init__(self, workers: int | None = None) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"expected workers >= 1, got {n}")
        self.workers = n
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=n, thread_name_prefix="psi"
        )

    def executor(self) -> ThreadPoolExecutor:
        """The running executor.

        Raises
        ------
        RuntimeError
            If the pool was closed.
        """
        if self._executor is None:
            raise RuntimeError("PsiPool is closed")
        return self._executor

    def close(self) -> None:
        """Cancel queued chunks, wait for running ones. Idempotent."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def chunk_bounds(n: int, workers: int, max_chunk: int = MAX_CHUNK) -> list[tuple[int, int]]:
    """Split ``range(n)`` into contiguous ``(start, stop)`` chunks of near-equal size.

    At least ``CHUNKS_PER_WORKER`` chunks per worker and none longer than ``max_chunk``.
    """
    if n <= 0:
        return []
    count = min(n, max(workers * CHUNKS_PER_WORKER, -(-n // max_chunk)))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


@contextmanager
def _pool_for_call(workers: int | None, pool: PsiPool | None) -> Iterator[PsiPool]:
    if pool is not None:
        yield pool
        return
    with PsiPool(workers) as own:
        yield own


def _gather(futures: list[tuple[int, Future[Points]]]) -> Points:
    parts: list[Points] = []
    for k, (start, fut) in enumerate(futures):
        try:
            parts.append(fut.result())
        except PsiError as e:
            for _, later in futures[k + 1 :]:
                later.cancel()
            raise e.shifted(start) from None
    if not parts:
        return np.zeros((0, psi.POINT_BYTES), dtype=np.uint8)
    return np.concatenate(parts)


def _use_workers(n: int, workers: int | None, pool: PsiPool | None) -> bool:
    if n < SERIAL_BELOW:
        return False
    if pool is not None:
        return pool.workers > 1
    return (workers if workers is not None else (os.cpu_count() or 1)) > 1


def multiply_parallel(
    points: npt.ArrayLike,
    key: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
    what: str = "invalid point",
) -> Points:
    """``crypto.psi.x25519.multiply`` over threads (no validation beyond its own).

    Parameters
    ----------
    points : array_like
        (n, 32) ``uint8`` u-coordinates.
    key : bytes
        This party's 32-byte key.
    workers : int or None
        Threads for a pool started for this call (ignored when ``pool`` is given).
    pool : PsiPool or None
        A running pool to reuse.
    what : str
        How a small-order row is named in the error.
    """
    psi.check_key(key)
    pts = psi.as_points(points)
    if not _use_workers(len(pts), workers, pool):
        return multiply(key, pts, what=what)
    with _pool_for_call(workers, pool) as p:
        ex = p.executor()
        bounds = chunk_bounds(len(pts), p.workers)
        return _gather([(a, ex.submit(multiply, key, pts[a:b], what=what)) for a, b in bounds])


def multiply_each_parallel(
    keys: npt.ArrayLike,
    points: npt.ArrayLike,
    *,
    pool: PsiPool | None = None,
    what: str = "invalid point",
) -> Points:
    """``crypto.psi.x25519.multiply_each`` (one key per point) over the pool's threads."""
    k, pts = psi.as_points(keys), psi.as_points(points)
    if len(k) != len(pts):
        raise PsiError(f"{len(k)} keys for {len(pts)} points")
    if not _use_workers(len(pts), None, pool):
        return multiply_each(k, pts, what=what)
    with _pool_for_call(None, pool) as p:
        ex = p.executor()
        bounds = chunk_bounds(len(pts), p.workers)
        return _gather([(a, ex.submit(multiply_each, k[a:b], pts[a:b], what=what))
                        for a, b in bounds])


def blind_parallel(
    ids: Sequence[str],
    key: bytes,
    domain: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
) -> Points:
    """``crypto.psi.blind``: hash on this thread, exponentiate over the pool.

    Returns
    -------
    Points
        Same as ``blind(ids, key, domain)``, in the order of ``ids``.

    Raises
    ------
    PsiError
        As ``crypto.psi.blind``, with indices into ``ids``.
    """
    psi.check_key(key)
    hashed = psi.hash_to_u(ids, domain)
    return multiply_parallel(hashed, key, workers, pool=pool, what="ID hashes to a point")


def reblind_parallel(
    points: npt.ArrayLike,
    key: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
) -> Points:
    """``crypto.psi.reblind`` (check, exponentiate) over the pool.

    Raises
    ------
    PsiError
        As ``crypto.psi.reblind``, naming the first bad row of the whole array.
    """
    psi.check_key(key)
    pts = psi.check_received(points)
    return multiply_parallel(pts, key, workers, pool=pool)


def hash_points_parallel(
    ids: Sequence[str],
    domain: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
) -> Points:
    """``crypto.psi.hash_to_points`` in chunks over the pool (libsodium releases the GIL).

    Raises
    ------
    PsiError
        As ``hash_to_points``, with indices into ``ids``.
    """
    psi.check_domain(domain)
    check_unique(ids)  # chunks cannot see duplicates across their borders
    if not _use_workers(len(ids), workers, pool):
        return psi.hash_to_points(ids, domain)
    with _pool_for_call(workers, pool) as p:
        ex = p.executor()
        bounds = chunk_bounds(len(ids), p.workers)
        return _gather([(a, ex.submit(psi.hash_to_points, list(ids[a:b]), domain))
                        for a, b in bounds])
