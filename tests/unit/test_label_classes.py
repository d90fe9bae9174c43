"""The bank refuses labels of one class, or too few rows of a class, before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federation.protocol.errors import InputDataError
from federation.protocol.schedule import Schedule
from parties.data import MIN_CLASS_ROWS, check_classes, check_split_classes, load_party_csv


def _bank_csv(path: Path, labels: list[int]) -> Path:
    lines = ["id,y,x1"] + [f"e{i},{y},{i * 0.5}" for i, y in enumerate(labels)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _refusal(y: np.ndarray, where: str) -> str:
    with pytest.raises(InputDataError) as info:
        check_classes(y, where)
    message = str(info.value)
    assert "\n" not in message and message.startswith(where)
    return message


def test_all_zero_labels_are_refused_naming_file_column_and_missing_class(
        tmp_path: Path) -> None:
    data = load_party_csv(_bank_csv(tmp_path / "bank.csv", [0] * 200), "id", "y")
    assert data.y is not None
    message = _refusal(data.y, f"{data.path}, column 'y'")
    assert "no row labelled 1 among 200" in message
    assert f"at least {MIN_CLASS_ROWS} rows of each class" in message


def test_all_one_labels_are_refused() -> None:
    assert "no row labelled 0 among 50" in _refusal(np.ones(50), "bank.csv, column 'y'")


def test_too_few_rows_of_a_class_are_refused_with_the_count() -> None:
    y = np.zeros(500)
    y[:3] = 1.0
    assert "only 3 rows labelled 1 among 500" in _refusal(y, "bank.csv, column 'y'")
    y[:MIN_CLASS_ROWS] = 1.0
    check_classes(y, "bank.csv")  # exactly the minimum passes


def test_split_classes_name_the_split_that_lacks_a_class() -> None:
    schedule = Schedule(100, 0.2, 32, seed=3)
    y = np.zeros(100)
    y[schedule.train_rows[:MIN_CLASS_ROWS]] = 1.0  # every positive lands in training
    with pytest.raises(InputDataError, match="20 validation rows aligned with the grid: no row "
                                             "labelled 1"):
        check_split_classes(y, schedule.train_rows, schedule.validation_rows, "bank.csv")
    y[schedule.validation_rows[0]] = 1.0
    check_split_classes(y, schedule.train_rows, schedule.validation_rows, "bank.csv")
    y[schedule.train_rows[:MIN_CLASS_ROWS]] = 0.0
    with pytest.raises(InputDataError, match="80 training rows aligned with the grid: no row"):
        check_split_classes(y, schedule.train_rows, schedule.validation_rows, "bank.csv")
