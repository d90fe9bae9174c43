"""The paper's three stage models as data: which indicators enter the pre-, in- and
post-loan models (``stages.toml`` beside this module, from the paper's Tables 5-7).

What it does: :func:`load_stages` reads the file into ``{party: {indicator: stages}}``;
:func:`stage_columns` picks, from a party's feature table columns, those of one stage and
their ``<name>_missing`` flags (what ``impute_for_training`` adds).

What it assumes: indicator names are the registry's; a name the file lists but a table
lacks is simply not selected (the caller reports an empty selection).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

STAGES_FILE = Path(__file__).with_name("stages.toml")
MISSING_SUFFIX = "_missing"


class LoanStage(StrEnum):
    PRE = "pre"
    IN = "in"
    POST = "post"


StageMap = dict[str, dict[str, frozenset[LoanStage]]]


def load_stages(path: Path | None = None) -> StageMap:
    """``{party: {indicator: stages}}`` from ``path`` (default: the packaged file).

    Raises
    ------
    ValueError
        If the file is not valid TOML or names an unknown stage or party.
    """
    source = path or STAGES_FILE
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{source}: cannot read the stage file ({exc})") from exc
    out: StageMap = {}
    for party, table in data.items():
        if party not in ("grid", "bank") or not isinstance(table, dict):
            raise ValueError(f"{source}: unknown table [{party}] (expected [grid], [bank])")
        out[party] = {}
        for name, entry in table.items():
            stages = entry.get("stages") if isinstance(entry, dict) else None
            if not isinstance(stages, list):
                raise ValueError(f"{source}: {party}.{name}: expected {{ stages = [...] }}")
            try:
                out[party][name] = frozenset(LoanStage(s) for s in stages)
            except ValueError as exc:
                raise ValueError(f"{source}: {party}.{name}: {exc} (expected pre, in, "
                                 "post)") from exc
    return out


def stage_indicators(party: str, stage: LoanStage, stages: StageMap | None = None) -> list[str]:
    """Names of ``party``'s indicators in ``stage``, in file order."""
    table = (stages if stages is not None else load_stages()).get(party, {})
    return [name for name, s in table.items() if stage in s]


def stage_columns(columns: Sequence[str], party: str, stage: LoanStage,
                  stages: StageMap | None = None) -> list[str]:
    """The columns of ``columns`` in ``stage`` with their missing flags, in table order."""
    names = set(stage_indicators(party, stage, stages))
    return [c for c in columns
            if c in names or (c.endswith(MISSING_SUFFIX) and c[:-len(MISSING_SUFFIX)] in names)]
