"""The label commands' choices and packaged files, importable without the library.

What it does: the ``--impute`` choices and the paths of the packaged ENT_SHELL_SCORE model and
Table 7 rules, so that ``gridcredit``'s parser can name them as defaults without loading
pandas, DuckDB or the database drivers (:mod:`parties.labels.commands` does, when one of the
label commands runs).

What it assumes: the two files ship beside this module (package data).
"""

from __future__ import annotations

import enum
import pathlib

HERE = pathlib.Path(__file__).parent
DEFAULT_MODEL = HERE / "shell_model.toml"  # ENT_SHELL_SCORE (parties.labels.shell)
DEFAULT_RULES = HERE / "warning_rules.toml"  # Table 7 (parties.labels.warning)


class Impute(enum.StrEnum):
    """How ``features build`` treats missing values."""

    NONE = "none"  # keep NaN (empty cells), as the source documents define the indicators
    MEDIAN = "median"  # median fill + <name>_missing columns, constant columns dropped
