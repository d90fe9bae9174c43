"""Which columns a training job uses: a screening's selection, a stage's indicators, or both.

What it does: :func:`read_selection` loads ``selection.json``; :func:`chosen_columns` reads
a party's CSV header and returns the feature columns to train on; :func:`demo_subset`
writes the synthetic demo's trainer-ready tables reduced to the chosen indicators (each
imputed after the choice, so each keeps its own missing flag).

What it assumes: the selection and the stage file name indicators; trainer-ready tables add
``<name>_missing`` flags, which follow their indicator. Each party applies only its own
part (the grid is never given the bank's names, nor the other way round).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from parties.evaluation.screening.selection import kept_names, selected_columns
from parties.labels.stages import LoanStage, stage_columns, stage_indicators


def read_selection(path: Path) -> dict[str, Any]:
    """The selection document, or ValueError naming the file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the selection ({exc})") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a selection.json written by gridcredit screen")
    return document


def parse_stage(value: str | None) -> LoanStage | None:
    if value is None:
        return None
    try:
        return LoanStage(value)
    except ValueError as exc:
        raise ValueError(f"--stage: expected pre, in or post, got {value!r}") from exc


def _header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return [c.strip() for c in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read the header ({exc})") from exc


def chosen_columns(path: Path, party: str, id_column: str, label_column: str,
                   select: Path | None, stage: str | None) -> list[str]:
    """The feature columns of ``path`` that ``party`` trains on."""
    header = [c for c in _header(path) if c not in (id_column, label_column)]
    columns = header
    chosen_stage = parse_stage(stage)
    if chosen_stage is not None:
        columns = stage_columns(columns, party, chosen_stage)
    if select is not None:
        kept = kept_names(read_selection(select), party, str(select))
        if chosen_stage is not None:
            kept = [k for k in kept if k in columns]
        columns = selected_columns(columns, kept, str(path))
    if not columns:
        raise ValueError(f"{path}: {_nothing_left(party, select, stage)}")
    return columns


def _nothing_left(party: str, select: Path | None, stage: str | None) -> str:
    """Why ``party`` has no column to train on, naming only the flags that were given."""
    given = [f"--stage {stage}" if stage is not None else "",
             f"--select {select}" if select is not None else ""]
    by = " with ".join(g for g in given if g)
    return f"no {party} column left to train on" + (f" after {by}" if by else "")


def demo_subset(out_dir: Path, enterprises: int, select: Path | None,
                stage: str | None) -> tuple[Path, Path]:
    """The demo's trainer-ready tables with only the chosen indicators."""
    from parties.labels.demo_full import full_tables, trainer_tables, write_tables

    grid, bank = full_tables(enterprises)
    chosen: dict[str, list[str]] = {}
    chosen_stage = parse_stage(stage)
    for party, table in (("grid", grid), ("bank", bank)):
        names = [c for c in table.columns if c not in ("id", "y")]
        if chosen_stage is not None:
            wanted = set(stage_indicators(party, chosen_stage))
            names = [n for n in names if n in wanted]
        if select is not None:
            kept = set(kept_names(read_selection(select), party, str(select)))
            absent = sorted(k for k in kept if k not in table.columns)
            if absent:
                raise ValueError(f"{select}: {party} indicator(s) {absent} are not in the "
                                 "demo data (was the screening run on other data?)")
            names = [n for n in names if n in kept]
        if not names:
            raise ValueError(f"the demo data: {_nothing_left(party, select, stage)}")
        chosen[party] = names
    g, b = trainer_tables(grid, bank, chosen["grid"], chosen["bank"])
    return write_tables(out_dir, g, b)
