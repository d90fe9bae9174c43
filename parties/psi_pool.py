"""Run the PSI math of ``crypto.psi`` over a process pool, in chunks.

PSI costs ~235 us of curve arithmetic per ID and party (see ``crypto.psi``), all of it in
C calls that hold the GIL, so the only way to use both cores is processes.  The IDs or
points are cut into contiguous chunks of a few thousand (at least four per worker, so
the last chunk does not leave a core idle), each chunk runs ``crypto.psi.blind`` /
``reblind`` / ``hash_to_points`` in a worker, and the results are concatenated in order.
Below ``SERIAL_BELOW`` items (or with one worker) everything runs in-process: starting
workers costs more than it saves.

Workers come from the ``forkserver`` start method, not ``fork``: a party node runs gRPC
threads, and forking a threaded process can deadlock the child.  The fork server
preloads ``crypto.psi`` so a worker starts in milliseconds.  Start a ``PsiPool`` once
per job (``with PsiPool() as pool``) and pass it to every call; without one, each call
starts and closes its own pool.  Closing waits for the workers to exit.

Errors: a ``PsiError`` from a chunk is re-raised with the index shifted to the whole
array; chunks are read in order, so it is the first bad index overall, and chunks not yet
started are cancelled.

Assumes: keys and IDs may be sent to worker processes of this party (same machine, same
trust domain); the caller runs this from an importable module (``forkserver`` re-imports
``__main__`` scripts, so they need an ``if __name__ == "__main__"`` guard).
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.psi import Points, PsiError

SERIAL_BELOW = 5_000
MAX_CHUNK = 4_096
CHUNKS_PER_WORKER = 4


def _ready() -> int:
    # Linger a little so that each worker, not the first one alone, answers a task.
    time.sleep(0.05)
    return os.getpid()


class PsiPool:
    """A pool of worker processes for PSI chunks, started once, closed explicitly.

    Parameters
    ----------
    workers : int or None
        Number of processes; default ``os.cpu_count()``.
    """

    def __init__(self, workers: int | None = None) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"expected workers >= 1, got {n}")
        self.workers = n
        ctx = multiprocessing.get_context("forkserver")
        # Takes effect only if this process has not started its fork server yet.
        ctx.set_forkserver_preload(["crypto.psi"])
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=n, mp_context=ctx
        )

    def executor(self) -> ProcessPoolExecutor:
        """The running executor.

        Raises
        ------
        RuntimeError
            If the pool was closed.
        """
        if self._executor is None:
            raise RuntimeError("PsiPool is closed")
        return self._executor

    def warm_up(self) -> list[int]:
        """Start every worker now (so timings of the first phase exclude start-up).

        Returns
        -------
        list of int
            The process ids that answered (one per task; some may repeat).
        """
        ex = self.executor()
        return [f.result() for f in [ex.submit(_ready) for _ in range(self.workers)]]

    def close(self) -> None:
        """Cancel queued chunks, wait for the workers to exit. Idempotent."""
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


def _map_ids(
    fn: Callable[[list[str]], Points],
    ids: Sequence[str],
    workers: int | None,
    pool: PsiPool | None,
) -> Points:
    with _pool_for_call(workers, pool) as p:
        ex = p.executor()
        bounds = chunk_bounds(len(ids), p.workers)
        return _gather([(a, ex.submit(fn, list(ids[a:b]))) for a, b in bounds])


def _check_ids(ids: Sequence[str]) -> None:
    # Chunks cannot see duplicates across chunk borders, so check the whole list here.
    dup = psi.first_duplicate(ids)
    if dup is not None:
        raise PsiError("duplicate ID (IDs must be unique)", dup)


def hash_parallel(
    ids: Sequence[str],
    domain: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
) -> Points:
    """``crypto.psi.hash_to_points`` over a process pool.

    Parameters
    ----------
    ids : sequence of str
        Unique IDs.
    domain : bytes
        Domain separation tag naming the job.
    workers : int or None
        Processes for a pool started for this call (ignored when ``pool`` is given).
    pool : PsiPool or None
        A running pool to reuse.

    Returns
    -------
    Points
        Same as ``hash_to_points(ids, domain)``.
    """
    psi.check_domain(domain)
    _check_ids(ids)
    if not _use_workers(len(ids), workers, pool):
        return psi.hash_to_points(ids, domain)
    fn = functools.partial(psi.hash_to_points, domain=domain)
    return _map_ids(fn, ids, workers, pool)


def blind_parallel(
    ids: Sequence[str],
    key: bytes,
    domain: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
) -> Points:
    """``crypto.psi.blind`` (hash and first exponentiation, one pass) over a process pool.

    Parameters are those of ``hash_parallel`` plus ``key``, this party's job key.

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
    psi.check_domain(domain)
    _check_ids(ids)
    if not _use_workers(len(ids), workers, pool):
        return psi.blind(ids, key, domain)
    fn = functools.partial(psi.blind, key=key, domain=domain)
    return _map_ids(fn, ids, workers, pool)


def reblind_parallel(
    points: npt.ArrayLike,
    key: bytes,
    workers: int | None = None,
    *,
    pool: PsiPool | None = None,
    strict: bool = False,
) -> Points:
    """``crypto.psi.reblind`` (validate, exponentiate) over a process pool.

    Parameters
    ----------
    points : array_like
        (n, 32) ``uint8`` points, as received.
    key : bytes
        This party's job key.
    workers, pool
        As in ``hash_parallel``.
    strict : bool, default False
        Also reject twist points (see ``crypto.psi.reblind``).

    Returns
    -------
    Points
        ``key * point`` per row, same order.

    Raises
    ------
    PsiError
        As ``crypto.psi.reblind``, naming the first bad row of the whole array.
    """
    pts = psi.as_points(points)
    if not _use_workers(len(pts), workers, pool):
        return psi.reblind(pts, key, strict=strict)
    # Cheap vectorised checks first, so garbage fails before any worker starts.
    psi.check_key(key)
    bad = psi.first_noncanonical(pts)
    if bad is not None:
        raise PsiError("invalid point (not a canonical u-coordinate)", bad)
    fn = functools.partial(psi.reblind, key=key, strict=strict)
    with _pool_for_call(workers, pool) as p:
        ex = p.executor()
        bounds = chunk_bounds(len(pts), p.workers)
        return _gather([(a, ex.submit(fn, pts[a:b])) for a, b in bounds])
