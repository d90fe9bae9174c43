"""``gridcredit screen``: federated screening of both parties' indicators, three processes.

``run_screen`` resolves the data (two feature tables; or a raw ``synth`` folder, built at
``--as-of`` and optionally at ``--compare-as-of`` for the stability between months; or the
bundled synthetic demo with every indicator), starts coordinator, grid and bank on
127.0.0.1 like ``simulate`` (throw-away certificates, ports chosen at run time, audit logs),
and assembles the run folder: ``bank/screen.json`` (every statistic, the bank's view),
``grid/screen.json`` (the grid's view: its bin edges, its kept names, IVs if revealed),
``selection.json``, ``report.json`` (sizes, seconds, bytes, memory) and ``summary.md`` with
the sorted IV table, an IV bar chart and WOE-by-bin plots of the top indicators.
``screen(...)`` is the same as a Python call.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federation.protocol.errors import ConfigError
from federation.protocol.files import SHARED
from federation.protocol.messages import Role, Task, TrainSettings
from federation.report import bytes_sent
from federation.run_folder import RunFolder, in_run_folder
from federation.simulate import _Federation
from parties.model import atomic_write_text

if TYPE_CHECKING:
    from parties.labels.schema import BankRaw, GridRaw

OUTPUTS = ("selection.json", "report.json", "summary.md")


@dataclass(frozen=True)
class ScreenSpec:
    out: Path
    grid_data: Path | None = None
    bank_data: Path | None = None
    id_column: str = "id"
    label_column: str = "y"
    grid_compare: Path | None = None  # the same tables at another as-of month
    bank_compare: Path | None = None
    raw: Path | None = None  # a synth folder: indicators built at as_of (and compare_as_of)
    as_of: str | None = None
    compare_as_of: str | None = None
    bins: int = 10
    rules: Path | None = None
    reveal_to_grid: str = "none"
    monotone_merge: bool = False
    settings: TrainSettings = field(default_factory=TrainSettings)
    demo_enterprises: int = 3000
    quiet: bool = False
    timeout: float = 3600.0
    top_plots: int = 6
    force: bool = False


@dataclass(frozen=True)
class _Inputs:
    grid: Path
    bank: Path
    grid_compare: Path | None
    bank_compare: Path | None
    id_column: str
    label_column: str


@dataclass(frozen=True)
class _Raw:
    """Both parties' raw records and the months to build at, checked before the run starts."""

    grid: GridRaw
    bank: BankRaw
    as_of: int
    compare_as_of: int | None


def _month(text: str, flag: str) -> int:
    from parties.labels.schema import InputError, parse_month

    try:
        return parse_month(text)
    except InputError as e:
        raise ConfigError(f"{flag}: {e}") from None


def _raw(spec: ScreenSpec) -> _Raw | None:
    """The raw records (``--raw`` or the demo's) and the months, each month within the data."""
    if spec.grid_data is not None or spec.bank_data is not None:
        return None
    from federation.stages import StagesSpec, _as_of, check_month, load_raw, raw_folder
    from parties.labels.synth import synthesize

    compare = None if spec.compare_as_of is None else _month(spec.compare_as_of,
                                                             "--compare-as-of")
    if spec.raw is not None:
        raw_folder(spec.raw, "screen")
        as_of = _as_of(StagesSpec(spec.raw, spec.out, spec.as_of))
        grid_raw, bank_raw = load_raw(spec.raw)
        where = spec.raw
    else:
        given = _month(spec.as_of, "--as-of") if spec.as_of is not None else None
        synth = synthesize(spec.demo_enterprises, 36, 7)
        grid_raw, bank_raw, where = synth.grid, synth.bank, Path("the synthetic demo")
        as_of = _month(str(synth.manifest["as_of"]), "--as-of") if given is None else given
    check_month(as_of, grid_raw, bank_raw, where)
    if compare is not None:
        check_month(compare, grid_raw, bank_raw, where, "--compare-as-of")
    return _Raw(grid_raw, bank_raw, as_of, compare)


def _build(spec: ScreenSpec, raw: _Raw) -> _Inputs:
    """Feature tables from a raw folder or the demo (missing values kept)."""
    from parties.labels.demo_full import tables_at, write_tables
    from parties.labels.schema import format_month

    data_dir = spec.out.resolve() / "data"
    grid, bank = write_tables(data_dir, *tables_at(raw.grid, raw.bank, raw.as_of), "indicators")
    compare: tuple[Path | None, Path | None] = (None, None)
    if raw.compare_as_of is not None:
        compare = write_tables(data_dir, *tables_at(raw.grid, raw.bank, raw.compare_as_of),
                               f"indicators_{format_month(raw.compare_as_of)}")
    return _Inputs(grid, bank, compare[0], compare[1], "id", "y")


def _check_inputs(spec: ScreenSpec) -> None:
    if (spec.grid_data is None) != (spec.bank_data is None):
        raise ConfigError("give both --grid-data and --bank-data, or neither")
    if spec.grid_data is not None and (spec.raw is not None or spec.compare_as_of is not None):
        raise ConfigError("--raw and --compare-as-of build the tables; they do not go "
                          "with --grid-data/--bank-data (use --grid-compare/--bank-compare)")


def _inputs(spec: ScreenSpec, raw: _Raw | None) -> _Inputs:
    if spec.grid_data is not None and spec.bank_data is not None:
        return _Inputs(spec.grid_data.resolve(), spec.bank_data.resolve(),
                       spec.grid_compare.resolve() if spec.grid_compare else None,
                       spec.bank_compare.resolve() if spec.bank_compare else None,
                       spec.id_column, spec.label_column)
    if raw is None:
        raise ConfigError("give both --grid-data and --bank-data, or neither")
    return _build(spec, raw)


def _screen_table(spec: ScreenSpec, compare: Path | None, bank: bool) -> dict[str, object]:
    table: dict[str, object] = {"bins": spec.bins}
    if compare is not None:
        table["compare"] = str(compare)
    if bank:
        table.update(reveal_to_grid=spec.reveal_to_grid, monotone_merge=spec.monotone_merge)
        if spec.rules is not None:
            table["rules"] = str(spec.rules.resolve())
    return table


def run_screen(spec: ScreenSpec) -> dict[str, Any]:
    """Run one screening job as three processes; returns ``report.json`` as a dict."""
    if not 2 <= spec.bins <= 256:
        raise ConfigError(f"--bins: expected an integer in [2, 256], got {spec.bins}")
    if spec.reveal_to_grid not in ("none", "summary"):
        raise ConfigError(f"--reveal-to-grid: expected none or summary, got "
                          f"{spec.reveal_to_grid!r}")
    if spec.rules is not None:
        from parties.evaluation.screening.selection import load_rules

        load_rules(spec.rules)  # a bad rules file stops here, before any process starts
    _check_inputs(spec)
    raw = _raw(spec)  # a bad folder or month stops here too, before anything is written
    folder = RunFolder.open(spec.out, "screen", force=spec.force)
    return in_run_folder(folder, lambda: _screen(spec, raw))


def _screen(spec: ScreenSpec, raw: _Raw | None) -> dict[str, Any]:
    inputs = _inputs(spec, raw)
    settings = replace(spec.settings, task=Task.SCREEN)
    fed = _Federation(
        spec.out, f"screen-{secrets.token_hex(4)}", settings,
        {Role.GRID: {"path": str(inputs.grid), "id_column": inputs.id_column},
         Role.BANK: {"path": str(inputs.bank), "id_column": inputs.id_column,
                     "label_column": inputs.label_column}},
        spec.quiet, spec.timeout,
        tables={Role.GRID: {"screen": _screen_table(spec, inputs.grid_compare, False)},
         Role.BANK: {"screen": _screen_table(spec, inputs.bank_compare, True)}})
    nodes = fed.run()
    return _assemble(spec, fed.job_id, inputs, {r.value: n.pid for r, n in nodes.items()})


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _assemble(spec: ScreenSpec, job_id: str, inputs: _Inputs,
              pids: dict[str, int]) -> dict[str, Any]:
    out = spec.out
    document = _json(out / "bank" / "screen.json")
    selection = _json(out / "bank" / "selection.json")
    atomic_write_text(out / "selection.json", json.dumps(selection, indent=2) + "\n", SHARED)
    stats = {n: _json(out / n / "stats.json") for n in ("grid", "bank")}
    job = _json(out / "coordinator" / "job.json")
    report: dict[str, Any] = {
        "job_id": job_id, "rows": document["rows"], "training_rows": document["training_rows"],
        "bins": spec.bins, "indicators": {p: sum(e["party"] == p for e in document["indicators"])
                                          for p in ("grid", "bank")},
        "kept": {p: len(v["kept"]) for p, v in selection["parties"].items()},
        "psi_seconds": max(stats[n]["psi_seconds"] for n in stats),
        "screen_seconds": max(stats[n]["screen_seconds"] for n in stats),
        "screen_cpu_seconds": {n: stats[n].get("screen_cpu_seconds") for n in stats},
        "masked_matrix_bytes": stats["grid"]["masked_bytes"],
        "bytes_sent": {n: bytes_sent(out / n / "audit.jsonl") for n in ("coordinator", "grid",
                                                                       "bank")},
        "peak_rss_mb": {n: stats[n].get("peak_rss_mb") for n in stats}
        | {"coordinator": job.get("peak_rss_mb")},
        "nodes": {n: {"pid": pids.get(n), "audit_log": str(out / n / "audit.jsonl")}
                  for n in ("coordinator", "grid", "bank")},
        "data": {"grid": str(inputs.grid), "bank": str(inputs.bank),
                 "grid_compare": None if inputs.grid_compare is None else str(inputs.grid_compare),
                 "bank_compare": None if inputs.bank_compare is None else str(inputs.bank_compare)},
        "reveal_to_grid": spec.reveal_to_grid, "rules": selection["rules"],
    }
    report["plots"] = _plots(out, document, selection, spec.top_plots)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n", SHARED)
    atomic_write_text(out / "summary.md", summary_markdown(report, document, selection), SHARED)
    return report


def _plots(out: Path, document: dict[str, Any], selection: dict[str, Any],
           top: int) -> list[str]:
    from parties.evaluation.screening.plots import plot_iv, plot_woe

    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    kept = {(p, n) for p, v in selection["parties"].items() for n in v["kept"]}
    paths = [plot_iv(document["indicators"], folder / "iv.png", kept,
                     float(selection["rules"]["min_iv"]))]
    ranked = sorted(document["indicators"], key=lambda e: -(e["iv"] or 0.0))
    for e in ranked[:top]:
        paths.append(plot_woe(e, folder / f"woe_{e['party']}_{e['name']}.png"))
    return [str(p.relative_to(out)) for p in paths]


def summary_markdown(report: dict[str, Any], document: dict[str, Any],
                     selection: dict[str, Any]) -> str:
    verdict = {(p, d["name"]): f"dropped: {d['rule']} ({d['detail']})"
               for p, v in selection["parties"].items() for d in v["dropped"]}
    ranked = sorted(document["indicators"], key=lambda e: -(e["iv"] or 0.0))
    lines = [
        f"# Screening {report['job_id']}", "",
        f"{report['rows']} aligned enterprises ({report['training_rows']} training rows), "
        f"{report['bins']} equal-frequency bins plus a missing bin per indicator. Kept: "
        f"{report['kept']['grid']} of {report['indicators']['grid']} grid and "
        f"{report['kept']['bank']} of {report['indicators']['bank']} bank indicators "
        "(`selection.json`; `gridcredit simulate --select selection.json` trains on them).",
        "", f"Rules: {', '.join(f'{k} {v}' for k, v in report['rules'].items())}.", "",
        f"Time: PSI {report['psi_seconds']:.2f} s, screening {report['screen_seconds']:.2f} s; "
        f"grid's masked bin matrix {report['masked_matrix_bytes'] / 1e6:.1f} MB; bytes sent "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in report["bytes_sent"].items()) + ".",
        "", "![IV per indicator](plots/iv.png)", "",
        "| party | indicator | IV | KS | AUC | missing | PSI | bad-rate trend | decision |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for e in ranked:
        decision = verdict.get((e["party"], e["name"]), "kept")
        lines.append(f"| {e['party']} | {e['name']} | {e['iv']:.4f} | {e['ks']:.3f} | "
                     f"{e['auc']:.3f} | {e['missing_rate']:.1%} | {e['psi']:.3f} | "
                     f"{e['trend']} | {decision} |")
    lines += ["", "WOE and bad rate by bin of the top indicators (the grid's bins are "
              "anonymous to the bank: value order, no edges):", ""]
    lines += [f"![{p}]({p})" for p in report["plots"][1:]]
    return "\n".join(lines) + "\n"


def screen(out: str | Path = "runs/screen", grid_data: str | Path | None = None,
           bank_data: str | Path | None = None, *, quiet: bool = True,
           **options: Any) -> dict[str, Any]:
    """Python API: run a screening and return ``report.json`` with ``selection`` added.

    ``options`` take the ``ScreenSpec`` fields (bins=10, rules=Path, reveal_to_grid=...,
    raw=Path, as_of=..., compare_as_of=...), paths as str or Path.
    """
    paths = {"rules", "raw", "grid_compare", "bank_compare"}
    values: dict[str, Any] = {k: Path(v) if k in paths and v is not None else v
                              for k, v in options.items()}
    spec = ScreenSpec(Path(out), None if grid_data is None else Path(grid_data),
                      None if bank_data is None else Path(bank_data), quiet=quiet, **values)
    report = run_screen(spec)
    return {**report, "selection": _json(Path(out) / "selection.json")}
