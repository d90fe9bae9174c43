"""Post-loan monitoring: a PostgreSQL source's tables staged once, restaged when they change.

Each period reads a party's whole history point-in-time, so staging the tables out of
PostgreSQL (:func:`parties.labels.sources.stage_postgres`, a ``COPY`` of every row into
CSV) every month repeats the same copy: at 100k enterprises it is half of the grid's period.
:class:`StagedTables` keeps the copy of the last period and copies again only when a table's
fingerprint changed: its row count and the largest ``xmin`` (the id of the transaction that
wrote a row), so an insert, update or delete committed since is seen. The fingerprint is
taken before the copy, so a change made during a copy makes the next period copy again.
Folders (CSV, Parquet) are read in place, as before.

Assumes: transaction ids do not wrap around between two periods (2^31 transactions); the
node owns the temporary folder (removed by :meth:`StagedTables.close`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence

import psycopg
from psycopg import sql

from federation.protocol.errors import InputDataError
from parties.labels.schema import first_line
from parties.labels.sources import Format, RawSource, stage_postgres

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[int, int], ...]


def fingerprint(source: RawSource, tables: Sequence[str]) -> Fingerprint:
    """(row count, largest xmin) of each table of a PostgreSQL source.

    Raises
    ------
    InputDataError
        The server cannot be reached, or a schema or table is missing.
    """
    out = []
    try:
        with psycopg.connect(str(source.dsn), connect_timeout=10) as conn:
            for table in tables:
                query = sql.SQL("SELECT count(*), coalesce(max(xmin::text::bigint), 0) "
                                "FROM {}.{}").format(sql.Identifier(source.schema),
                                                     sql.Identifier(table))
                row = conn.execute(query).fetchone()
                out.append((int(row[0]), int(row[1])) if row else (0, 0))
    except psycopg.errors.UndefinedTable as e:
        raise InputDataError(f"postgresql schema {source.schema}: a table of "
                             f"{', '.join(tables)} not found") from e
    except psycopg.Error as e:
        first = first_line(e)
        raise InputDataError(f"postgresql schema {source.schema}: cannot read ({first})") from e
    return tuple(out)


class StagedTables:
    """``tables`` of ``source``, staged at most once per version of their contents."""

    def __init__(self, source: RawSource, tables: Sequence[str]) -> None:
        self.source = source
        self.tables = list(tables)
        self.copies = 0  # how many times the tables were copied (for logs and tests)
        self._mark: Fingerprint | None = None
        self._copy: RawSource | None = None
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()

    def current(self) -> RawSource:
        """The source to read now: the folder itself, or an up-to-date staged copy."""
        if self.source.format is not Format.POSTGRES:
            return self.source
        with self._lock:
            mark = fingerprint(self.source, self.tables)
            if self._copy is None or mark != self._mark:
                self._stack.close()
                self._stack = contextlib.ExitStack()
                self._copy = None
                self._copy = self._stack.enter_context(stage_postgres(self.source,
                                                                      self.tables))
                self._mark = mark
                self.copies += 1
                log.info("monitoring: staged %d tables of %s (copy %d)", len(self.tables),
                         self.source.schema, self.copies)
            return self._copy

    def close(self) -> None:
        """Remove the staged copy."""
        with self._lock:
            self._stack.close()
            self._copy = None
            self._mark = None
