"""One party's CSV: problems named at the line a text editor shows, in one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.protocol.errors import InputDataError
from parties.data import load_party_csv

HEADER = "id,y,x1,x2\n"


def _rows(n: int) -> list[str]:
    return [f"e{i},{i % 2},{i * 0.5},{i % 7}\n" for i in range(n)]


def _refused(path: Path) -> str:
    with pytest.raises(InputDataError) as info:
        load_party_csv(path, label_column="y")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def test_a_column_named_twice_is_refused_not_renamed(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("id,y,x1,x1\n" + "".join(_rows(30)))
    assert _refused(path).endswith("header: column 'x1' appears twice (columns 3 and 4)")


def test_an_empty_column_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("id,y,,x2\n" + "".join(_rows(30)))
    assert _refused(path).endswith("header, column 3: empty column name")


def test_rows_are_counted_as_an_editor_shows_them_across_blank_lines(tmp_path: Path) -> None:
    rows = _rows(30)
    rows[20] = "e20,0,abc,1\n"
    path = tmp_path / "bank.csv"
    path.write_text(HEADER + "".join(rows[:5]) + "\n\n" + "".join(rows[5:]))
    assert "row 24, column 'x1': non-numeric value 'abc'" in _refused(path)  # 1 + 2 + 21


def test_a_short_row_is_named_as_short_not_as_a_missing_value(tmp_path: Path) -> None:
    rows = _rows(30)
    rows[9] = "e9,1,0.5\n"
    path = tmp_path / "bank.csv"
    path.write_text(HEADER + "".join(rows))
    assert _refused(path).endswith("row 11: 3 cells, but the header has 4 columns")


def test_a_bad_byte_is_named_where_it_is_in_the_file(tmp_path: Path) -> None:
    text = (HEADER + "".join(_rows(3000))).encode()
    at = text.index(b"\n", 40_000) + 3  # a few bytes into a line far past pandas' first chunk
    path = tmp_path / "bank.csv"
    path.write_bytes(text[:at] + b"\xff" + text[at + 1:])
    line = text.count(b"\n", 0, at) + 1
    assert _refused(path).endswith(f"not UTF-8 text (invalid start byte at byte {at}, "
                                   f"line {line})")
