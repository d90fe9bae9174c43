"""The ``synth``, ``features build`` / ``features fit-shell`` and ``warn`` subcommands.

What it does: :func:`add_commands` adds them to the project's single ``gridcredit`` parser;
each handler runs its command (:mod:`parties.labels.commands`, imported only then) and returns
the exit code. :func:`main` builds a parser with only these commands
(for tests and ``python -m parties.labels.cli``) and maps input errors to ``error: ...`` on
stderr and exit code 2, as the project's main CLI does.

What it assumes: bad input raises :class:`~parties.labels.schema.InputError` with a one-line
message; outputs are written atomically; names and legal-person IDs are masked in every
output and enterprise IDs are HMAC-SHA256 hashed when ``--hash-ids-key`` is given.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable

from parties.labels.options import DEFAULT_MODEL, DEFAULT_RULES, Impute
from parties.labels.sqlkit import Engine

D = "(default: %(default)s)"
Handler = Callable[[argparse.Namespace], int]
# Runs a command that writes the folder --out: (out, command, force, job) -> job's result.
# The project's CLI passes its run-folder guard (a marker file listing what the run wrote);
# this package cannot import it (CONTRIBUTING.md, "Layers").
OutGuard = Callable[[pathlib.Path, str, bool, Callable[[], int]], int]


def refuse_non_empty(out: pathlib.Path, command: str, force: bool, job: Callable[[], int]) -> int:
    """The guard when this package's parser runs alone: --out must be new, empty or an earlier
    ``synth`` output (its manifest names the generator), else it needs --force."""
    import json

    from parties.labels.schema import InputError

    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        earlier = isinstance(manifest, dict) and manifest.get("generator") == "parties.labels.synth"
    except (OSError, ValueError):
        earlier = False
    if out.is_dir() and any(out.iterdir()) and not (force or earlier):
        raise InputError(f"--out {out}: the folder exists and is not empty; choose a new or "
                         "empty folder, or pass --force to write into it (nothing in it is "
                         "deleted)")
    return job()


# The handlers import the library (pandas, DuckDB, psycopg) only when a label command runs:
# every other ``gridcredit`` command, each node process included, builds this parser too.
def cmd_synth(args: argparse.Namespace) -> int:
    """Write both parties' synthetic raw tables and the manifest."""
    from parties.labels.commands import synth

    if args.out is None:
        return synth(args)
    guard: OutGuard = args.out_guard
    return guard(args.out, "synth", args.force, lambda: synth(args))


def cmd_features_build(args: argparse.Namespace) -> int:
    """Build one party's feature table and data dictionary at the as-of month."""
    from parties.labels.commands import features_build

    return features_build(args)


def cmd_features_fit_shell(args: argparse.Namespace) -> int:
    """Fit ENT_SHELL_SCORE's logistic regression on labelled enterprises and save it."""
    from parties.labels.commands import features_fit_shell

    return features_fit_shell(args)


def cmd_warn(args: argparse.Namespace) -> int:
    """Rate enterprises by the Table 7 rules (all of them, or those of ``--ids``)."""
    from parties.labels.commands import warn

    return warn(args)


def _features_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    feats = sub.add_parser("features", help="build indicator feature tables from raw records")
    fsub = feats.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    build = fsub.add_parser("build", help="one party's feature table at an as-of month",
                            description="Build one row per enterprise (ID column 'id'; the "
                            "bank's file also has the label 'y') and a data dictionary.")
    build.add_argument("--role", required=True, choices=["grid", "bank"], help="whose raw data")
    _raw_flags(build)
    build.add_argument("--out", type=pathlib.Path, required=True, help="feature CSV to write")
    build.add_argument("--dictionary", type=pathlib.Path, default=None,
                       help="data dictionary CSV (default: <out>.dictionary.csv beside --out)")
    build.add_argument("--impute", type=Impute, choices=list(Impute), default=Impute.NONE,
                       help="none: keep missing values empty; median: fill with the median "
                       "and add <name>_missing columns, as the trainer needs " + D)
    build.add_argument("--horizon", type=int, default=6,
                       help="bank label: months after --as-of in which an overdue counts " + D)
    build.add_argument("--overdue-days", type=int, default=30,
                       help="bank label: days past due that count as overdue " + D)
    build.add_argument("--shell-model", type=pathlib.Path, default=DEFAULT_MODEL,
                       help="ENT_SHELL_SCORE model TOML (default: the packaged model)")
    build.add_argument("--engine", type=Engine, choices=list(Engine), default=Engine.DUCKDB,
                       help="duckdb: embedded; spark: a Spark cluster (--spark-master); "
                       "pandas: the numpy reference " + D)
    build.add_argument("--spark-master", default="local[2]", metavar="URL",
                       help="Spark master (local[N], spark://HOST:PORT, yarn, k8s://...) or "
                       "Spark Connect URL sc://HOST:PORT, for --engine spark " + D)
    build.set_defaults(handler=cmd_features_build)
    fit = fsub.add_parser("fit-shell", help="fit the ENT_SHELL_SCORE model on labelled data")
    _raw_flags(fit)
    fit.add_argument("--truth", type=pathlib.Path, default=None, help="CSV with ent_id, "
                     "is_shell (default: <raw>/truth/enterprises.csv from 'synth')")
    fit.add_argument("--out", type=pathlib.Path, required=True, help="model TOML to write")
    fit.set_defaults(handler=cmd_features_fit_shell)


def _raw_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", required=True, metavar="FOLDER|DSN",
                   help="folder of the party's raw CSV or Parquet tables, a 'synth' output "
                   "folder, or a PostgreSQL database postgresql://USER@HOST:PORT/DB")
    p.add_argument("--schema", default=None,
                   help="PostgreSQL schema of the party's tables (default: the role, grid or "
                   "bank)")
    p.add_argument("--as-of", default=None, metavar="YYYY-MM",
                   help="month to build at; nothing later is read (default: as_of of "
                   "manifest.json in --raw)")
    p.add_argument("--hash-ids-key", default=None, metavar="KEY",
                   help="replace IDs in outputs by HMAC-SHA256 under KEY (@FILE reads the key "
                   "from a file; at least 16 bytes) (default: IDs as they are)")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                 out_guard: OutGuard = refuse_non_empty) -> None:
    """Add ``synth``, ``features`` (``build``, ``fit-shell``) and ``warn`` to ``subparsers``.

    ``out_guard`` opens ``synth --out`` (default: :func:`refuse_non_empty`).
    """
    synth = subparsers.add_parser("synth", help="write synthetic raw records of both parties",
                                  description="Write DIR/grid/, DIR/bank/, DIR/truth/ and "
                                  "DIR/manifest.json (with the as_of month to build at).")
    synth.add_argument("--enterprises", type=int, default=3000, help="universe size " + D)
    synth.add_argument("--months", type=int, default=36, help="months from 2021-01 " + D)
    synth.add_argument("--seed", type=int, default=7, help="generator seed " + D)
    synth.add_argument("--shell-share", type=float, default=0.05,
                       help="share of shell companies " + D)
    synth.add_argument("--out", type=pathlib.Path, default=None, help="folder to write")
    synth.add_argument("--force", action="store_true",
                       help="write into an existing folder that is not an earlier output folder "
                       "(nothing in it is deleted; files of the same names are replaced)")
    synth.add_argument("--format", choices=["csv", "parquet"], default="csv",
                       help="file format of the tables under --out " + D)
    synth.add_argument("--to", default=None, metavar="DSN",
                       help="also load the tables into PostgreSQL postgresql://USER@HOST:PORT/DB"
                       ", one schema per party (tables must not exist yet)")
    synth.add_argument("--grid-schema", default="grid", help="schema of the grid's tables " + D)
    synth.add_argument("--bank-schema", default="bank", help="schema of the bank's tables " + D)
    synth.set_defaults(handler=cmd_synth, out_guard=out_guard)
    _features_commands(subparsers)
    warn = subparsers.add_parser("warn", help="post-loan early-warning ratings (Table 7)",
                                 description="Rate enterprises expansion/stable/shrink/alert "
                                 "by the Table 7 rules; names are masked in the output.")
    _raw_flags(warn)
    warn.add_argument("--ids", type=pathlib.Path, default=None,
                      help="CSV of the enterprises to rate (default: all the grid's)")
    warn.add_argument("--id-column", default="id", help="ID column of --ids " + D)
    warn.add_argument("--rules", type=pathlib.Path, default=DEFAULT_RULES,
                      help="rule TOML (default: the packaged Table 7)")
    warn.add_argument("--out", type=pathlib.Path, required=True, help="ratings CSV to write")
    warn.set_defaults(handler=cmd_warn)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only this package's subcommands."""
    parser = argparse.ArgumentParser(prog="gridcredit", description="power-data label library")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the handler; input errors print ``error: ...`` and return 2."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ValueError as e:  # InputError and other bad-value errors
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
