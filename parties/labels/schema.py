"""Raw-table loading and validation for both parties' source records.

What it does: reads the grid's four CSV tables (``enterprises``, ``monthly_usage``, ``bills``,
``events``) and the bank's three (``loans``, ``repayments``, ``taxes``), checks every cell
against a declared column kind, and returns typed pandas frames.

What it assumes:
- UTF-8 CSV with a header row; extra columns are ignored, missing ones are an error.
- Months are ``YYYY-MM`` and become integer ordinals ``year * 12 + month - 1`` so that
  month arithmetic is integer arithmetic; dates are ``YYYY-MM-DD``.
- Bad input is never dropped or repaired: the first bad cell raises :class:`InputError`
  naming file, row (the header is row 1) and column. Values of the sensitive columns
  (``name``, ``legal_person_id``) are never echoed in a message.
"""

from __future__ import annotations

import enum
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

SENSITIVE_COLUMNS = frozenset({"name", "legal_person_id"})
EVENT_TYPES = ("outage", "theft", "breach", "inspection")


class InputError(ValueError):
    """Malformed or missing input; the message is one line naming file, row and column."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (or its type name), for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Kind(enum.Enum):
    """What a raw column must hold."""

    TEXT = enum.auto()  # non-empty string
    OPT_TEXT = enum.auto()  # any string, may be empty
    MONTH = enum.auto()  # YYYY-MM
    DATE = enum.auto()  # YYYY-MM-DD
    OPT_DATE = enum.auto()  # YYYY-MM-DD or empty
    AMOUNT = enum.auto()  # number >= 0
    OPT_AMOUNT = enum.auto()  # number >= 0 or empty (read as 0)
    COUNT = enum.auto()  # integer >= 0
    POSITIVE = enum.auto()  # integer >= 1
    EVENT = enum.auto()  # one of EVENT_TYPES


TableSpec = dict[str, Kind]

GRID_TABLES: dict[str, TableSpec] = {
    "enterprises": {
        "ent_id": Kind.TEXT, "name": Kind.TEXT, "legal_person_id": Kind.TEXT,
        "industry_code": Kind.TEXT, "province": Kind.TEXT, "account_open_date": Kind.DATE,
        "capacity_kva": Kind.AMOUNT,
    },
    "monthly_usage": {"ent_id": Kind.TEXT, "month": Kind.MONTH, "kwh": Kind.AMOUNT},
    "bills": {
        "ent_id": Kind.TEXT, "month": Kind.MONTH, "amount_due": Kind.AMOUNT,
        "amount_paid": Kind.AMOUNT, "due_date": Kind.DATE, "paid_date": Kind.OPT_DATE,
        "late_days": Kind.COUNT, "late_fee": Kind.AMOUNT, "arrears_after": Kind.AMOUNT,
    },
    "events": {
        "ent_id": Kind.TEXT, "date": Kind.DATE, "type": Kind.EVENT,
        "amount": Kind.OPT_AMOUNT, "note": Kind.OPT_TEXT,
    },
}
BANK_TABLES: dict[str, TableSpec] = {
    "loans": {
        "ent_id": Kind.TEXT, "loan_id": Kind.TEXT, "start_month": Kind.MONTH,
        "amount": Kind.AMOUNT, "term_months": Kind.POSITIVE,
    },
    "repayments": {
        "ent_id": Kind.TEXT, "loan_id": Kind.TEXT, "month": Kind.MONTH,
        "amount_due": Kind.AMOUNT, "amount_paid": Kind.AMOUNT, "days_overdue": Kind.COUNT,
    },
    "taxes": {"ent_id": Kind.TEXT, "month": Kind.MONTH, "tax_amount": Kind.AMOUNT},
}
# Keys that must be unique per table (a duplicate is an error, not a silent overwrite).
UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "enterprises": ("ent_id",), "monthly_usage": ("ent_id", "month"),
    "bills": ("ent_id", "month"), "loans": ("loan_id",),
    "repayments": ("loan_id", "month"), "taxes": ("ent_id", "month"),
}

_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_EXPECTED: dict[Kind, str] = {
    Kind.TEXT: "a non-empty value", Kind.OPT_TEXT: "text", Kind.MONTH: "a month YYYY-MM",
    Kind.DATE: "a date YYYY-MM-DD", Kind.OPT_DATE: "a date YYYY-MM-DD or empty",
    Kind.AMOUNT: "a number >= 0", Kind.OPT_AMOUNT: "a number >= 0 or empty",
    Kind.COUNT: "an integer >= 0", Kind.POSITIVE: "an integer >= 1",
    Kind.EVENT: "one of " + "|".join(EVENT_TYPES),
}


def parse_month(text: str) -> int:
    """Parse ``YYYY-MM`` into the month ordinal ``year * 12 + month - 1``.

    Raises
    ------
    InputError
        If ``text`` is not a valid month.
    """
    if not _MONTH_RE.match(text):
        raise InputError(f"expected a month YYYY-MM, got {text!r}")
    return int(text[:4]) * 12 + int(text[5:7]) - 1


def format_month(ordinal: int) -> str:
    """Inverse of :func:`parse_month`."""
    return f"{ordinal // 12:04d}-{ordinal % 12 + 1:02d}"


def month_end(ordinals: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """Last calendar day (``datetime64[D]``) of each month ordinal."""
    first_of_next = (np.asarray(ordinals, dtype=np.int64) + 1 - 1970 * 12).astype("datetime64[M]")
    last_day: npt.NDArray[np.datetime64] = first_of_next.astype("datetime64[D]") - 1
    return last_day


Converter = Callable[[pd.Series], tuple[pd.Series, pd.Series]]


def _text(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    return s, s.str.strip() == ""


def _opt_text(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    return s, pd.Series(False, index=s.index)


def _month(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    parsed = pd.to_datetime(s, format="%Y-%m", errors="coerce")
    bad = parsed.isna() | (s.str.len() != 7)
    ordinal = (parsed.dt.year * 12 + parsed.dt.month - 1).fillna(-1).astype(np.int64)
    return ordinal, bad


def _date(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    parsed = pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
    return parsed, parsed.isna() | (s.str.len() != 10)


def _opt_date(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    parsed, bad = _date(s)
    return parsed, bad & (s.str.strip() != "")


def _amount(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = pd.to_numeric(s, errors="coerce").astype(np.float64)
    return num, ~np.isfinite(num) | (num < 0)


def _opt_amount(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num, bad = _amount(s)
    empty = s.str.strip() == ""
    return num.where(~empty, 0.0), bad & ~empty


def _count(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num, bad = _amount(s)
    bad = bad | (num != np.floor(num.fillna(0.0)))
    return num.fillna(0.0).astype(np.int64), bad


def _positive(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num, bad = _count(s)
    return num, bad | (num < 1)


def _event(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    return s, ~s.isin(EVENT_TYPES)


CONVERTERS: dict[Kind, Converter] = {
    Kind.TEXT: _text, Kind.OPT_TEXT: _opt_text, Kind.MONTH: _month, Kind.DATE: _date,
    Kind.OPT_DATE: _opt_date, Kind.AMOUNT: _amount, Kind.OPT_AMOUNT: _opt_amount,
    Kind.COUNT: _count, Kind.POSITIVE: _positive, Kind.EVENT: _event,
}


def cell_error(path: pathlib.Path | str, index: int, column: str, why: str) -> InputError:
    """An :class:`InputError` for data row ``index`` (0-based; the header is row 1)."""
    return InputError(f"{path}: row {index + 2}, column '{column}': {why}")


def _read_strings(path: pathlib.Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError as e:
        raise InputError(f"{path}: empty file, expected a header row") from e
    except pd.errors.ParserError as e:
        line = re.search(r"line (\d+)", str(e))
        row = line.group(1) if line else "?"
        detail = " ".join(str(e).split())  # pandas' message may span lines
        raise InputError(f"{path}: row {row}: malformed CSV row ({detail})") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text") from e


def read_table(path: pathlib.Path, spec: TableSpec) -> pd.DataFrame:
    """Read one CSV and convert each declared column to its kind.

    Parameters
    ----------
    path
        The CSV file.
    spec
        Column name to :class:`Kind`; other columns in the file are dropped.

    Returns
    -------
    pandas.DataFrame
        Only the declared columns, typed (months as int64 ordinals, dates as datetime64).

    Raises
    ------
    InputError
        Missing file or column, or the first cell that does not hold its kind.
    """
    raw = _read_strings(path)
    out = {}
    for column, kind in spec.items():
        if column not in raw.columns:
            raise InputError(f"{path}: row 1, column '{column}': missing from the header")
        value, bad = CONVERTERS[kind](raw[column])
        if bool(bad.any()):
            index = int(np.flatnonzero(bad.to_numpy())[0])
            got = "<masked>" if column in SENSITIVE_COLUMNS else repr(raw[column].iloc[index])
            raise cell_error(path, index, column, f"expected {_EXPECTED[kind]}, got {got}")
        out[column] = value
    return pd.DataFrame(out)


def check_unique(frame: pd.DataFrame, keys: tuple[str, ...], path: pathlib.Path) -> None:
    """Raise :class:`InputError` at the first row repeating an earlier row's ``keys``."""
    dup = frame.duplicated(list(keys), keep="first").to_numpy()
    if dup.any():
        index = int(np.flatnonzero(dup)[0])
        raise cell_error(path, index, ",".join(keys), "duplicate of an earlier row")


def check_known(frame: pd.DataFrame, column: str, known: pd.Index, path: pathlib.Path) -> None:
    """Raise :class:`InputError` at the first row whose ``column`` is not in ``known``."""
    unknown = ~frame[column].isin(known).to_numpy()
    if unknown.any():
        index = int(np.flatnonzero(unknown)[0])
        raise cell_error(path, index, column, f"{frame[column].iloc[index]!r} is not listed in "
                         "the enterprises/loans table")


@dataclass(frozen=True, slots=True)
class GridRaw:
    """The grid's raw tables, typed as :func:`read_table` returns them."""

    enterprises: pd.DataFrame
    usage: pd.DataFrame
    bills: pd.DataFrame
    events: pd.DataFrame


@dataclass(frozen=True, slots=True)
class BankRaw:
    """The bank's raw tables, typed as :func:`read_table` returns them."""

    loans: pd.DataFrame
    repayments: pd.DataFrame
    taxes: pd.DataFrame


def _load(directory: pathlib.Path, specs: dict[str, TableSpec]) -> dict[str, pd.DataFrame]:
    tables = {}
    for name, spec in specs.items():
        path = directory / f"{name}.csv"
        frame = read_table(path, spec)
        if name in UNIQUE_KEYS:
            check_unique(frame, UNIQUE_KEYS[name], path)
        tables[name] = frame
    return tables


def load_grid(directory: pathlib.Path) -> GridRaw:
    """Load and validate ``enterprises``, ``monthly_usage``, ``bills``, ``events`` CSVs."""
    t = _load(directory, GRID_TABLES)
    known = pd.Index(t["enterprises"]["ent_id"])
    for name in ("monthly_usage", "bills", "events"):
        check_known(t[name], "ent_id", known, directory / f"{name}.csv")
    return GridRaw(t["enterprises"], t["monthly_usage"], t["bills"], t["events"])


def load_bank(directory: pathlib.Path) -> BankRaw:
    """Load and validate ``loans``, ``repayments``, ``taxes`` CSVs."""
    t = _load(directory, BANK_TABLES)
    check_known(t["repayments"], "loan_id", pd.Index(t["loans"]["loan_id"]),
                directory / "repayments.csv")
    return BankRaw(t["loans"], t["repayments"], t["taxes"])


def resolve_raw_dir(raw: pathlib.Path, role: str, marker: str) -> pathlib.Path:
    """Accept either a role's own folder or a ``synth`` output root holding ``<role>/``."""
    if not (raw / marker).is_file() and (raw / role / marker).is_file():
        return raw / role
    return raw
