"""What the ``synth``, ``features build`` / ``features fit-shell`` and ``warn`` subcommands do.

What it does: one function per subcommand, called with the parsed flags of
:mod:`parties.labels.cli` (which imports this module only when one of them runs, so that the
project's other commands start without loading pandas, DuckDB and the database drivers); each
returns the exit code.

What it assumes: bad input raises :class:`~parties.labels.schema.InputError` with a one-line
message; outputs are written atomically; names and legal-person IDs are masked in every
output and enterprise IDs are HMAC-SHA256 hashed when ``--hash-ids-key`` is given.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.engine import build_bank_features, build_grid_features
from parties.labels.features import grid_registry
from parties.labels.mask import mask_names, output_ids, read_key
from parties.labels.months import month_spans
from parties.labels.options import Impute
from parties.labels.output import write_csv
from parties.labels.panel import build_grid_panel
from parties.labels.reference import load_grid_raw
from parties.labels.registry import build_table, data_dictionary, impute_for_training
from parties.labels.schema import InputError, format_month, parse_month
from parties.labels.shell import (
    fit_shell_model,
    load_shell_model,
    save_shell_model,
    score_matrix,
)
from parties.labels.sources import Format, RawSource, is_dsn, open_source
from parties.labels.sqlkit import Engine
from parties.labels.synth import load_synth_postgres, synthesize, write_synth
from parties.labels.warning import load_rules, rate
from parties.labels.writers import write_csv_fast


def _as_of(args: argparse.Namespace) -> int:
    """``--as-of``, or the ``as_of`` of ``manifest.json`` in the raw folder or its parent."""
    text = args.as_of
    if text is None and is_dsn(args.raw):
        raise InputError("--as-of: required when --raw is a database")
    raw = pathlib.Path(args.raw)
    if text is None:
        for manifest in (raw / "manifest.json", raw.parent / "manifest.json"):
            if manifest.is_file():
                text = str(json.loads(manifest.read_text(encoding="utf-8")).get("as_of"))
                break
        else:
            raise InputError(f"--as-of: not given and no manifest.json in {raw}")
    try:
        return parse_month(text)
    except InputError as e:
        raise InputError(f"--as-of: {e}") from e


def _raw_exists(raw: str | pathlib.Path) -> None:
    if not is_dsn(raw) and not pathlib.Path(raw).is_dir():
        raise InputError(f"--raw {raw}: no such folder")


def _within_data(as_of: int, source: RawSource, tables: tuple[str, ...]) -> None:
    """Refuse an as-of month before the first or after the last month of the raw records:
    nothing to build (a month without records would give counts of 0, not missing values).

    One aggregate per table (``parties.labels.months``); a table that cannot be read is
    left to the build, whose checks name the table, row and column.
    """
    database = source.format is Format.POSTGRES and source.root is None
    if source.url is not None or not (database or source.root is not None):
        return
    try:
        spans = [(parse_month(s[0][:7]), parse_month(s[1][:7]))
                 for s in month_spans(source, tables) if s is not None]
    except InputError:
        return
    if not spans:
        return
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    if not first <= as_of <= last:
        side = "before the first" if as_of < first else "after the last"
        where = f"schema {source.schema}" if database else str(source.root)
        raise InputError(f"--as-of {format_month(as_of)}: {side} month of the data in "
                         f"{where} ({format_month(first)} to {format_month(last)})")


def _key(args: argparse.Namespace) -> bytes | None:
    return read_key(args.hash_ids_key) if args.hash_ids_key else None


def synth(args: argparse.Namespace) -> int:
    """Write both parties' synthetic raw tables and the manifest."""
    if args.out is None and args.to is None:
        raise InputError("synth: give --out FOLDER, --to postgresql://... or both")
    if args.to is not None and not is_dsn(args.to):
        raise InputError("--to: expected a postgresql:// connection string")
    data = synthesize(args.enterprises, args.months, args.seed, args.shell_share)
    if args.to is not None:
        schemas = {"grid": args.grid_schema, "bank": args.bank_schema}
        load_synth_postgres(data, args.to, schemas)
        print(f"loaded schemas {args.grid_schema} and {args.bank_schema} "
              f"(as_of {data.manifest['as_of']})")
    if args.out is not None:
        manifest = write_synth(data, args.out, args.format)
        print(f"wrote {args.out}/grid, {args.out}/bank, {args.out}/truth and {manifest} "
              f"(as_of {data.manifest['as_of']})")
    return 0


def features_build(args: argparse.Namespace) -> int:
    """Build one party's feature table and data dictionary at the as-of month."""
    _raw_exists(args.raw)
    source = open_source(args.raw, args.role, args.schema)
    as_of = _as_of(args)
    _within_data(as_of, source, (("monthly_usage", "bills") if args.role == "grid"
                                 else ("repayments", "taxes")))
    if args.role == "grid":
        model = load_shell_model(args.shell_model)
        build = build_grid_features(source, as_of, args.engine, model=model,
                                    spark_master=args.spark_master)
    else:
        build = build_bank_features(source, as_of, args.engine, args.horizon,
                                    args.overdue_days, spark_master=args.spark_master)
    table = build.table
    if table.empty:
        raise InputError(f"--as-of {format_month(as_of)}: no enterprise of {args.raw} has data "
                         "to build features from" + (" and a repayment due in the label "
                                                     "window" if args.role == "bank" else ""))
    missing_rates = {str(c): float(r) for c, r in table.isna().mean().items()}
    dropped: list[str] = []
    if args.impute is Impute.MEDIAN:
        imputed = impute_for_training(table)
        dropped = [str(c) for c in table.columns if c not in imputed.columns]
        table = imputed
    table["id"] = output_ids(table["id"], _key(args))
    dictionary = data_dictionary(table, build.indicators, missing_rates)
    dictionary_path = args.dictionary or args.out.with_name(args.out.stem + ".dictionary.csv")
    write_csv_fast(args.out, table)
    write_csv(dictionary_path, dictionary)
    left_out = f"; {build.excluded} borrowers without a repayment due in the label window " \
        "left out" if args.role == "bank" else ""
    print(f"wrote {args.out} ({len(table)} rows, {table.shape[1] - 1} columns) and "
          f"{dictionary_path}{left_out}")
    if dropped:
        print(f"--impute median dropped {len(dropped)} columns with no value or a single "
              f"value at {format_month(as_of)}: {', '.join(dropped)}")
    return 0


def features_fit_shell(args: argparse.Namespace) -> int:
    """Fit ENT_SHELL_SCORE's logistic regression on labelled enterprises and save it."""
    _raw_exists(args.raw)
    as_of = _as_of(args)
    source = open_source(args.raw, "grid", args.schema)
    table = build_grid_features(source, as_of, Engine.PANDAS, model=load_shell_model()).table
    truth_path = args.truth or pathlib.Path(args.raw) / "truth" / "enterprises.csv"
    if not truth_path.is_file():
        raise InputError(f"{truth_path}: file not found")
    truth = pd.read_csv(truth_path, dtype={"ent_id": str})
    if "is_shell" not in truth.columns or "ent_id" not in truth.columns:
        raise InputError(f"{truth_path}: row 1, column 'ent_id,is_shell': missing")
    labels = truth.set_index("ent_id")["is_shell"].reindex(table["id"])
    if bool(labels.isna().any()):
        raise InputError(f"{truth_path}: column 'ent_id': some enterprises have no label")
    note = (f"ENT_SHELL_SCORE model fitted by `gridcredit features fit-shell` on {len(table)} "
            f"grid customers ({int(labels.sum())} shells) at as-of {format_month(as_of)}."
            "\nENT_SHELL_SCORE = 100 / (1 + exp(intercept + "
            "coef . z)), z = (fill(clip(score, lower, upper), median) - mean) / std.")
    model = fit_shell_model(score_matrix(table), labels.to_numpy().astype("int64"), note)
    save_shell_model(model, args.out)
    print(f"wrote {args.out}")
    return 0


def _requested_ids(path: pathlib.Path, column: str) -> pd.Series:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"--ids {path}: empty file, expected a header with '{column}' and "
                         "one ID per row") from None
    if column not in frame.columns:
        raise InputError(f"{path}: row 1, column '{column}': missing from the header")
    if frame.empty:
        raise InputError(f"--ids {path}: no IDs below the header (column '{column}')")
    return frame[column]


def warn(args: argparse.Namespace) -> int:
    """Rate enterprises by the Table 7 rules (all of them, or those of ``--ids``)."""
    _raw_exists(args.raw)
    as_of = _as_of(args)
    source = open_source(args.raw, "grid", args.schema)
    _within_data(as_of, source, ("monthly_usage", "bills"))
    grid = load_grid_raw(source)
    by_name = {ind.name: ind for ind in grid_registry()}
    rules = load_rules(by_name, args.rules)
    panel = build_grid_panel(grid, as_of)
    table = build_table([by_name[r.indicator] for r in rules], panel, panel.ids,
                        model_only=False)
    ratings = pd.concat([table[["id"]], rate(table, rules, unrated=True)], axis=1)
    names = grid.enterprises.set_index("ent_id")["name"]
    ratings.insert(1, "name", mask_names(names.reindex(ratings["id"]).fillna("")).to_numpy())
    key = _key(args)
    ratings["id"] = output_ids(ratings["id"], key)
    ratings.insert(2, "found", 1)
    if args.ids is not None:
        wanted = _requested_ids(args.ids, args.id_column)
        out_ids = wanted if key is None or wanted.str.len().eq(64).all() \
            else output_ids(wanted, key)
        ratings = ratings.set_index("id").reindex(pd.Index(out_ids, name="id")).reset_index()
        ratings["found"] = ratings["rating"].notna().astype("int64")
        ratings = ratings.fillna({"name": "", "rating": "", "triggered": "",
                                  "missing": "no grid record"})
    write_csv(args.out, ratings)
    counts = ratings["rating"].replace("", "not found").value_counts().to_dict()
    print(f"wrote {args.out} ({len(ratings)} enterprises: {counts})")
    return 0
