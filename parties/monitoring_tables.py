"""Post-loan monitoring: a party's tables parsed and checked once per version (no gRPC).

``features build`` (:func:`parties.labels.engine.grid_frame`, ``bank_frame``) parses every
raw table and checks every row at each call; a monitor asks for one month after another
from the same tables, so it would parse and check the same rows every period.
:class:`GridTables` (:class:`BankTables`) keeps one DuckDB connection per version of the
tables, with the typed tables parsed once into memory (:func:`parties.labels.engine.
load_grid`), runs the checks at the first month asked of that version (they read every
row's flags and counts whatever the month: :func:`parties.labels.engine.check_grid`), and
per month evaluates the same fact and indicator queries as ``features build``
(:mod:`parties.labels.grid_sql`, ``bank_sql``), so the indicators are those of ``gridcredit
features build --as-of`` at that month. Industry and rank figures are still computed over
every enterprise.

A version is the tables' files as they are: each file's path, size and modification time
(a PostgreSQL source is staged to a new folder whenever its tables change,
:mod:`parties.monitoring_stage`; a folder read in place is loaded again when a file
changes).

Assumes: a file is not rewritten with the same size within the file system's timestamp
resolution; the typed tables fit in DuckDB's memory limit (about 0.4 GB at 100k enterprises
and 30 months; DuckDB spills beyond it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.checks import Category
from parties.labels.duck import DuckRunner
from parties.labels.engine import (
    bank_facts,
    bank_indicators,
    check_bank,
    check_grid,
    grid_facts,
    grid_indicators,
    load_bank,
    load_grid,
)
from parties.labels.schema import BANK_TABLES, GRID_TABLES
from parties.labels.shell import ShellModel
from parties.labels.sources import RawSource

log = logging.getLogger(__name__)
Version = tuple[tuple[str, int, int], ...]


def version(source: RawSource, tables: Sequence[str]) -> Version:
    """(path, size, mtime in ns) of every file holding ``tables`` (part files included)."""
    out = []
    for table in tables:
        path = source.path(table)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat() if f.exists() else None
            out.append((str(f), st.st_size if st else -1, st.st_mtime_ns if st else -1))
    return tuple(out)


class _Loaded:
    """One party's typed tables of one version in DuckDB, checked once."""

    tables: Sequence[str] = ()

    def __init__(self) -> None:
        self.loads = 0  # versions loaded (for logs and tests)
        self.checks = 0  # versions checked
        self._runner: DuckRunner | None = None
        self._version: Version | None = None
        self._cats: dict[str, dict[str, Category]] = {}
        self._checked = False
        self._lock = threading.Lock()

    def _runner_for(self, source: RawSource) -> DuckRunner:
        """The connection holding the current version of ``source``'s tables (loaded now if
        they changed); the caller holds the lock and checks with :meth:`_check_once`."""
        mark = version(source, list(self.tables))
        if self._runner is None or mark != self._version:
            self._load(source, mark)
        if self._runner is None:
            raise RuntimeError("tables not loaded")
        return self._runner

    def _check_once(self, source: RawSource) -> None:
        if not self._checked and self._runner is not None:
            self._check(self._runner, source, self._cats)
            self._checked = True
            self.checks += 1

    def _parse(self, run: DuckRunner, source: RawSource) -> dict[str, dict[str, Category]]:
        raise NotImplementedError

    def _check(self, run: DuckRunner, source: RawSource,
               cats: dict[str, dict[str, Category]]) -> None:
        raise NotImplementedError

    def _load(self, source: RawSource, mark: Version) -> None:
        self._drop()
        started = time.perf_counter()
        run = DuckRunner()
        try:
            self._cats = self._parse(run, source)
        except BaseException:
            run.close()
            raise
        self._runner, self._version, self._checked = run, mark, False
        self.loads += 1
        log.info("monitoring: %s loaded (version %d) in %.2f s", ", ".join(self.tables),
                 self.loads, time.perf_counter() - started)

    def _drop(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner, self._version, self._checked = None, None, False

    def close(self) -> None:
        """Close the DuckDB connection (and its spill folder)."""
        with self._lock:
            self._drop()


class GridTables(_Loaded):
    """The grid's tables; :meth:`frame` is ``features build --role grid`` at a month."""

    tables = tuple(GRID_TABLES)

    def _parse(self, run: DuckRunner, source: RawSource) -> dict[str, dict[str, Category]]:
        return load_grid(run, source, in_memory=True)

    def _check(self, run: DuckRunner, source: RawSource,
               cats: dict[str, dict[str, Category]]) -> None:
        check_grid(run, source, cats)

    def frame(self, source: RawSource, as_of: int, model: ShellModel,
              names: Sequence[str]) -> pd.DataFrame:
        """The indicators ``names`` of every enterprise connected by ``as_of`` (rows and
        values as :func:`parties.labels.engine.build_grid_features`).

        Raises
        ------
        InputError
            The first bad table, row or cell, as ``features build`` names it.
        """
        with self._lock:
            run = self._runner_for(source)
            started = time.perf_counter()
            grid_facts(run, as_of)
            self._check_once(source)
            table = grid_indicators(run, as_of, model, names)
            log.info("monitoring: grid indicators of month %d, %d rows in %.2f s", as_of,
                     len(table), time.perf_counter() - started)
            return table


class BankTables(_Loaded):
    """The bank's tables; :meth:`frame` is the bank's ``features build`` at a month."""

    tables = tuple(BANK_TABLES)

    def _parse(self, run: DuckRunner, source: RawSource) -> dict[str, dict[str, Category]]:
        return load_bank(run, source, in_memory=True)

    def _check(self, run: DuckRunner, source: RawSource,
               cats: dict[str, dict[str, Category]]) -> None:
        check_bank(run, source, cats)

    def frame(self, source: RawSource, as_of: int, names: Sequence[str], horizon: int,
              overdue_days: int, query: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
        """``y`` and the indicators ``names`` of every borrower at ``as_of`` (as
        :func:`parties.labels.engine.bank_frame`), and the result of ``query`` (SQL on the
        same tables, e.g. over ``t_loans``; empty: an empty frame).

        Raises
        ------
        InputError
            The first bad table, row or cell, as ``features build`` names it.
        """
        with self._lock:
            run = self._runner_for(source)
            started = time.perf_counter()
            bank_facts(run, as_of, horizon)
            self._check_once(source)
            table = bank_indicators(run, as_of, names, overdue_days)
            extra = run.frame(query) if query else pd.DataFrame()
            log.info("monitoring: bank indicators of month %d, %d rows in %.2f s", as_of,
                     len(table), time.perf_counter() - started)
            return table, extra
