"""Loading, checking and standardizing one party's CSV.

Every problem ends in one ``InputDataError`` naming the file, the row (as the line
number a text editor shows, header = line 1) and the column. Rows are never dropped
silently. Standardization is z = (s - mu) / sigma on the aligned training rows
(the source patent's formula); mu and sigma are kept with the model for scoring.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from federation.protocol.errors import InputDataError

Float = npt.NDArray[np.float64]
# The fewest rows of either label class a training job accepts: fewer cannot be both fitted
# and validated (a 20 % validation split of 10 rows of a class holds about 2 of them).
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class PartyData:
    """One party's rows: IDs, feature names, a float matrix and (bank only) labels."""

    path: str
    ids: list[str]
    features: list[str]
    x: Float
    y: Float | None

    def select(self, features: list[str]) -> PartyData:
        """The same rows with only ``features``, in that order."""
        cols = [self.features.index(f) for f in features]
        return PartyData(self.path, self.ids, list(features), self.x[:, cols], self.y)

    def take(self, rows: npt.NDArray[np.int64]) -> PartyData:
        return PartyData(self.path, [self.ids[i] for i in rows], self.features, self.x[rows],
                         None if self.y is None else self.y[rows])


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputDataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputDataError(f"{path}: file is empty (expected a header row and data rows)")


def _read_numeric(path: Path, id_column: str, allow_missing: bool = False
                  ) -> pd.DataFrame | None:
    """The fast path: pandas' C parser reads every column but the ID as numbers (a
    fraction of the memory of strings on a million rows). None whenever anything is not
    cleanly numeric, so the string path can name the file, row and column."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype={id_column: str}, keep_default_na=False,
                                na_values=[""] if allow_missing else None,
                                skipinitialspace=True, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError,
            UnicodeDecodeError, ValueError, TypeError):
        return None
    if frame.empty or id_column not in frame.columns:
        return None
    for column in frame.columns:
        if column == id_column:
            continue
        values = frame[column]
        if values.dtype.kind not in "iuf":
            return None
        numbers = values.to_numpy(np.float64)
        if not (np.isfinite(numbers) | (allow_missing & np.isnan(numbers))).all():
            return None
    return frame


def _read(path: Path) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # index_col=False: a row longer than the header must not shift every column.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                index_col=False)
    except pd.errors.ParserWarning as exc:
        raise InputDataError(f"{path}: rows have more cells than the header has columns") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputDataError(f"{path}: no header row (the file holds only blank lines)") from exc
    except pd.errors.ParserError as exc:
        raise InputDataError(f"{path}: malformed CSV: {str(exc).strip().splitlines()[-1]}") from exc
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: not UTF-8 text ({_utf8_error(path, exc)})") from exc
    except csv.Error as exc:
        raise InputDataError(f"{path}: malformed CSV: {exc}") from exc
    if frame.empty:
        raise InputDataError(f"{path}: no data rows below the header")
    return frame


def _check_header(path: Path) -> None:
    """Refuse a header that names a column twice (pandas would rename one 'x.1' silently)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next((row for row in csv.reader(f) if any(c.strip() for c in row)), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # the reader names these problems
    first: dict[str, int] = {}
    for i, name in enumerate(c.strip() for c in header):
        if not name:
            raise InputDataError(f"{path}: header, column {i + 1}: empty column name")
        if first.setdefault(name, i) != i:
            raise InputDataError(f"{path}: header: column {name!r} appears twice (columns "
                                 f"{first[name] + 1} and {i + 1})")


def _locate(path: Path, index: int) -> tuple[int, list[str]]:
    """(line number a text editor shows, cells) of data row ``index``: pandas skips blank
    lines, so the row number is counted here, on the error path only."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
            seen = 0
            for number, text in enumerate(f, start=1):
                if text.strip():
                    if seen == index + 1:  # non-blank line 0 is the header
                        return number, next(csv.reader([text]), [])
                    seen += 1
    except (OSError, csv.Error):
        pass
    return index + 2, []


def _line(path: Path, index: int) -> int:
    return _locate(path, index)[0]


def _utf8_error(path: Path, exc: UnicodeDecodeError) -> str:
    """Where the first bad byte is in the file (pandas reports it within a read chunk)."""
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        line = data.count(b"\n", 0, whole.start) + 1
        return f"{whole.reason} at byte {whole.start}, line {line}"
    except OSError:
        pass
    return str(exc.reason)


def _require(frame: pd.DataFrame, path: Path, column: str, what: str) -> None:
    if column not in frame.columns:
        found = ", ".join(repr(str(c)) for c in list(frame.columns)[:8])
        raise InputDataError(f"{path}: missing {what} column {column!r} (found: {found})")


def _numeric(frame: pd.DataFrame, path: Path, column: str, allow_missing: bool = False
             ) -> Float:
    if frame[column].dtype.kind in "iuf":  # parsed as numbers and checked finite (or NaN)
        return np.asarray(frame[column].to_numpy(np.float64), dtype=np.float64)
    raw = frame[column].str.strip()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if allow_missing:  # an empty cell is a missing value; anything else must be a number
        bad &= (raw != "").to_numpy()
    bad = np.flatnonzero(bad)
    if bad.size:
        row = int(bad[0])
        cell = raw.iloc[row]
        line, cells = _locate(path, row)
        if cell == "" and cells and len(cells) < len(frame.columns):
            raise InputDataError(f"{path}: row {line}: {len(cells)} cells, but the header has "
                                 f"{len(frame.columns)} columns")
        what = "missing value" if cell == "" else f"non-numeric value {cell!r}"
        hint = ("; fill missing values first (gridcredit features build --impute median does)"
                if cell == "" else "")
        raise InputDataError(f"{path}: row {line}, column {column!r}: {what} "
                             f"({bad.size} bad cell(s) in this column){hint}")
    return np.asarray(values, dtype=np.float64)


def load_party_csv(path: str | Path, id_column: str = "id",
                   label_column: str | None = None, allow_missing: bool = False) -> PartyData:
    """Read and validate one party's table.

    Parameters
    ----------
    path
        CSV with a header row.
    id_column
        The enterprise ID column (matched by PSI); must be unique and non-empty.
    label_column
        The 0/1 label column (bank only); None for the grid.
    allow_missing
        Read an empty feature cell as a missing value (NaN) instead of refusing it
        (screening bins missing values on their own; training needs complete rows).
    """
    p = Path(path)
    _check_file(p)
    _check_header(p)
    frame = _read_numeric(p, id_column, allow_missing)
    if frame is None:
        frame = _read(p)
    _require(frame, p, id_column, "ID")
    if label_column is not None:
        _require(frame, p, label_column, "label")
    ids = frame[id_column].str.strip()
    empty = np.flatnonzero((ids == "").to_numpy())
    if empty.size:
        raise InputDataError(f"{p}: row {_line(p, int(empty[0]))}, column {id_column!r}: "
                             "empty ID")
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise InputDataError(f"{p}: row {_line(p, row)}, column {id_column!r}: duplicate ID "
                             f"(first seen on row {_line(p, first)})")
    y = None
    if label_column is not None:
        y = _numeric(frame, p, label_column)
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            row = int(bad[0])
            raise InputDataError(f"{p}: row {_line(p, row)}, column {label_column!r}: label "
                                 f"must be 0 or 1, got {str(frame[label_column].iloc[row])!r}")
    features = [c for c in frame.columns if c not in (id_column, label_column)]
    if not features:
        raise InputDataError(f"{p}: no feature columns besides {id_column!r}")
    x = np.column_stack([_numeric(frame, p, c, allow_missing) for c in features])
    return PartyData(str(p), ids.tolist(), features, x, y)


def check_classes(y: Float, where: str, minimum: int = MIN_CLASS_ROWS) -> None:
    """Refuse labels with fewer than ``minimum`` rows of either class, before any training.

    ``where`` names the rows (file and column, or a split of them) in the one-line message.
    """
    for label in (1, 0):
        count = int(np.count_nonzero(y == label))
        if count < minimum:
            what = "no row" if count == 0 else f"only {count} row{'s' * (count > 1)}"
            raise InputDataError(
                f"{where}: {what} labelled {label} among {len(y)}; a credit model needs at "
                f"least {minimum} rows of each class (0 = repaid, 1 = overdue)")


def check_split_classes(y: Float, train: npt.NDArray[np.int64],
                        validation: npt.NDArray[np.int64], path: str) -> None:
    """After alignment: the training rows need ``MIN_CLASS_ROWS`` of each class, the
    validation rows (if any) one of each, or no metric of the split is defined."""
    check_classes(y[train], f"{path}: the {len(train)} training rows aligned with the grid")
    if len(validation):
        check_classes(y[validation], f"{path}: the {len(validation)} validation rows aligned "
                      "with the grid", minimum=1)


@dataclass(frozen=True)
class Standardizer:
    mean: Float
    std: Float

    @staticmethod
    def fit(x: Float) -> Standardizer:
        """mu and sigma of the training rows; a constant column keeps sigma = 1."""
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        return Standardizer(mean, np.where(std > 0, std, 1.0))

    def apply(self, x: Float) -> Float:
        return (x - self.mean) / self.std
