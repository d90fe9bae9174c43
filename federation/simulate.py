"""The researchers' entry point: a whole federation as three local OS processes.

``run_simulation`` makes throw-away certificates, writes the three nodes' TOML configs
(the same files a three-host deployment uses), starts coordinator, grid and bank on
127.0.0.1 with ports chosen at run time, shows progress, and assembles the run folder:
report.json, summary.md, plots, each node's model, statistics and audit log.
``simulate(...)`` is the same as a Python call returning the report as a dict.

The run folder is a ``federation.run_folder.RunFolder``: an existing folder that is not an
earlier run folder is refused unless ``force``; a failed or interrupted run keeps logs and
writes ``FAILED``, never a model, prediction or report.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from federation.processes import NodeProcess, past_fit, supervise
from federation.progress import Progress
from federation.protocol.errors import ConfigError
from federation.protocol.messages import Model, Role, Task, TrainSettings
from federation.run_folder import RunFolder, in_run_folder
from federation.transport.certs import write_federation
from parties.model import atomic_write_text

START_TIMEOUT = 60.0
NODE_LOG_LEVEL = "INFO"


@dataclass(frozen=True)
class SimulationSpec:
    out: Path
    grid_data: Path | None = None
    bank_data: Path | None = None
    id_column: str = "id"
    label_column: str = "y"
    settings: TrainSettings = field(default_factory=TrainSettings)
    demo_enterprises: int = 3000
    quiet: bool = False
    timeout: float = 3600.0
    threshold: float = 0.5
    resume: bool = False
    # Train on a screening's kept indicators (its selection.json), on one of the paper's
    # stage sets ("pre", "in", "post"), and/or on each party's own principal components.
    select: Path | None = None
    stage: str | None = None
    pca: str | None = None
    force: bool = False
    log_level: str = NODE_LOG_LEVEL
    compare_lr: bool = True  # --model gbdt: also train the federated LR (in DIR/lr)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _write_toml(path: Path, tables: dict[str, dict[str, object]]) -> Path:
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    atomic_write_text(path, "\n".join(lines))
    return path


def check_data_flags(grid_data: Path | None, bank_data: Path | None) -> None:
    """Both data files or neither (the bundled demo); one alone is a mistake, not the demo."""
    if (grid_data is None) != (bank_data is None):
        raise ConfigError("give both --grid-data and --bank-data, or neither for the bundled demo")
    for flag, path in (("--grid-data", grid_data), ("--bank-data", bank_data)):
        if path is not None and not path.is_file():  # before any process starts
            raise ConfigError(f"{flag} {path}: " + ("is a folder, not a CSV file"
                                                    if path.is_dir() else "file not found"))


def _load_report() -> None:
    from federation import report  # noqa: F401  (pandas, matplotlib)


def _load_reference() -> None:
    from federation.report import load_reference

    load_reference()


@dataclass
class _Federation:
    out: Path
    job_id: str
    settings: TrainSettings
    data: dict[Role, dict[str, object]]
    quiet: bool
    timeout: float
    log_level: str = NODE_LOG_LEVEL
    # More TOML tables per party (e.g. [screen] for a screening job).
    tables: dict[Role, dict[str, dict[str, object]]] = field(default_factory=dict)
    # This process's work for after the job (the report's imports), done while it waits:
    while_starting: Callable[[], None] | None = None  # for the coordinator's LISTENING line
    while_running: Callable[[], None] | None = None  # for the job's end

    def run(self) -> dict[Role, NodeProcess]:
        out, certs = self.out.resolve(), self.out.resolve() / "certs"
        write_federation(certs, force=True)  # the run folder is ours: a fresh CA per run
        configs = out / "configs"
        nodes: dict[Role, NodeProcess] = {}
        coord_tables: dict[str, dict[str, object]] = {
            "node": {"role": "coordinator", "job_id": self.job_id, "listen": "127.0.0.1:0",
                     "out": str(out / "coordinator")},
            "tls": {"dir": str(certs)},
            "training": self.settings.as_dict(),
            "job": {"barrier_timeout": max(120.0, 4 * self.settings.deadline_seconds)},
        }
        coord_cfg = _write_toml(configs / "coordinator.toml", coord_tables)
        nodes[Role.COORDINATOR] = NodeProcess(
            "coordinator", ["coordinator", "--config", str(coord_cfg)], out / "coordinator",
            log_level=self.log_level)
        epochs = self.settings.epochs if self.settings.task is Task.TRAIN else 0
        if self.settings.model is Model.GBDT and self.settings.task is Task.TRAIN:
            epochs = self.settings.trees
        progress = Progress(epochs, enabled=not self.quiet)
        try:
            nodes[Role.COORDINATOR].start()
            if self.while_starting is not None:
                self.while_starting()
            address = nodes[Role.COORDINATOR].wait_listening(START_TIMEOUT)
            coord_tables["node"]["listen"] = address  # the three configs agree: reusable
            _write_toml(coord_cfg, coord_tables)
            for role in (Role.GRID, Role.BANK):
                cfg = _write_toml(
                    configs / f"{role.value}.toml",
                    {
                        "node": {"role": role.value, "job_id": self.job_id,
                                 "listen": "127.0.0.1:0", "coordinator": address,
                                 "out": str(out / role.value)},
                        "tls": {"dir": str(certs)},
                        "data": self.data[role],
                        "job": {"deadline": self.settings.deadline_seconds},
                        **self.tables.get(role, {}),
                    },
                )
                nodes[role] = NodeProcess(role.value, ["party", "--role", role.value, "--config",
                                                       str(cfg)], out / role.value,
                                          log_level=self.log_level)
                nodes[role].start()
            for role in (Role.GRID, Role.BANK):
                nodes[role].wait_listening(START_TIMEOUT)
            with progress:
                supervise(
                    list(nodes.values()), self.timeout, progress.on_event, nodes[Role.COORDINATOR],
                    linger=2 * self.settings.deadline_seconds + 5,  # a party's last flush
                    meanwhile=self.while_running, meanwhile_from=past_fit)
        finally:
            for node in nodes.values():
                node.stop()
        return nodes


def _resolve_data(spec: SimulationSpec) -> tuple[Path, Path, str, str]:
    if spec.grid_data is not None and spec.bank_data is not None:
        return spec.grid_data.resolve(), spec.bank_data.resolve(), spec.id_column, spec.label_column
    if spec.select is not None or spec.stage is not None:
        from parties.choose import demo_subset

        grid, bank = demo_subset(spec.out.resolve() / "data", spec.demo_enterprises,
                                 spec.select, spec.stage)
        return grid, bank, "id", "y"
    from parties.labels.demo import build_demo_features

    grid, bank = build_demo_features(spec.out.resolve() / "data", spec.demo_enterprises)
    return grid, bank, "id", "y"


def _chosen_columns(spec: SimulationSpec, grid: Path, bank: Path, id_col: str,
                    label_col: str) -> dict[str, list[str]] | None:
    """The columns each party trains on when --select or --stage applies to given files
    (the demo is written already reduced to them)."""
    if spec.grid_data is None or (spec.select is None and spec.stage is None):
        return None
    from parties.choose import chosen_columns

    return {role.value: chosen_columns(path, role.value, id_col, label_col, spec.select,
                                       spec.stage)
            for role, path in ((Role.GRID, grid), (Role.BANK, bank))}


def _party_data(spec: SimulationSpec, grid: Path, bank: Path, id_col: str, label_col: str,
                columns: dict[str, list[str]] | None) -> dict[Role, dict[str, object]]:
    """Each party's [data] table: its file, and the columns and PCA it trains on."""
    data: dict[Role, dict[str, object]] = {
        Role.GRID: {"path": str(grid), "id_column": id_col},
        Role.BANK: {"path": str(bank), "id_column": id_col, "label_column": label_col},
    }
    for role, table in data.items():
        if columns is not None:
            table["features"] = columns[role.value]
        if spec.pca is not None:
            table["pca"] = spec.pca
    return data


def run_simulation(spec: SimulationSpec) -> dict[str, Any]:
    """Run one training job as three processes and write the run folder; returns the report."""
    check_data_flags(spec.grid_data, spec.bank_data)
    if not 0.0 <= spec.threshold <= 1.0:
        raise ConfigError(f"--threshold {spec.threshold:g}: a probability threshold is in [0, 1]")
    if spec.pca is not None:
        from parties.pca import parse_components

        parse_components(spec.pca)  # a bad --pca stops here, before any process starts
    folder = RunFolder.open(spec.out, "simulate", force=spec.force, resume=spec.resume,
                            reads=tuple(filter(None, (spec.grid_data, spec.bank_data,
                                                      spec.select))))
    return in_run_folder(folder, lambda: _train(spec))


def _train(spec: SimulationSpec) -> dict[str, Any]:
    grid, bank, id_col, label_col = _resolve_data(spec)
    columns = _chosen_columns(spec, grid, bank, id_col, label_col)
    settings = replace(spec.settings, task=Task.TRAIN)
    fed = _Federation(
        spec.out,
        f"sim-{secrets.token_hex(4)}",
        settings,
        _party_data(spec, grid, bank, id_col, label_col, columns),
        spec.quiet,
        spec.timeout,
        spec.log_level,
        while_starting=_load_report,
        while_running=_load_reference,
    )
    nodes = fed.run()
    from federation.report import build_report
    federated_lr = None
    if settings.model is Model.GBDT and spec.compare_lr:
        federated_lr = _federated_lr(spec, fed.data, settings)
    return build_report(
        spec.out,
        fed.job_id,
        settings,
        {r.value: n.pid for r, n in nodes.items()},
        grid,
        bank,
        id_col,
        label_col,
        spec.threshold,
        columns=columns,
        inputs={"select": None if spec.select is None else str(spec.select),
                "stage": spec.stage, "pca": spec.pca},
        federated_lr=federated_lr,
    )


def _federated_lr(spec: SimulationSpec, data: dict[Role, dict[str, object]],
                  trees: TrainSettings) -> dict[str, Any]:
    """The federated LR of the same data, rows and split, for the tree job's report:
    a second federation in DIR/lr with the LR defaults (same seed, validation share)."""
    settings = replace(TrainSettings(), seed=trees.seed,
                       validation_fraction=trees.validation_fraction,
                       deadline_seconds=trees.deadline_seconds, task=Task.TRAIN,
                       psi=trees.psi)
    out = spec.out / "lr"
    fed = _Federation(out, f"sim-{secrets.token_hex(4)}", settings, data, spec.quiet,
                      spec.timeout, spec.log_level)
    fed.run()
    metrics = json.loads((out / "bank" / "metrics.json").read_text(encoding="utf-8"))
    stats = json.loads((out / "bank" / "stats.json").read_text(encoding="utf-8"))
    grid_stats = json.loads((out / "grid" / "stats.json").read_text(encoding="utf-8"))
    return {"validation": metrics["validation"], "train": metrics["train"],
            "fit_seconds": max(stats["fit_seconds"], grid_stats["fit_seconds"]),
            "config": settings.as_dict(), "run": str(out)}


def simulate(
    out: str | Path = "runs/latest",
    grid_data: str | Path | None = None,
    bank_data: str | Path | None = None,
    *,
    id_column: str = "id",
    label_column: str = "y",
    quiet: bool = True,
    threshold: float = 0.5,
    select: str | Path | None = None,
    stage: str | None = None,
    pca: str | int | None = None,
    force: bool = False,
    compare_lr: bool = True,
    **training: Any,
) -> dict[str, Any]:
    """Python API: run a simulation and return ``report.json`` as a dict.

    ``select`` is a screening's ``selection.json``, ``stage`` one of "pre", "in", "post",
    ``pca`` a component count or "auto".
    Give both ``grid_data`` and ``bank_data``, or neither for the bundled demo (one alone
    raises ``ConfigError``, as the CLI refuses it). ``force`` writes into an existing folder
    that is not an earlier run folder (nothing in it is deleted). ``training`` takes the
    ``TrainSettings`` fields (epochs=5, batch_size=256, ...; for trees model="gbdt",
    trees=50, depth=5, bins=32, ...). ``compare_lr``: a tree job also trains the federated
    LR of the same data for the report.
    """
    from federation.config import settings_from

    spec = SimulationSpec(
        Path(out),
        None if grid_data is None else Path(grid_data),
        None if bank_data is None else Path(bank_data),
        id_column,
        label_column,
        settings_from(training),
        quiet=quiet,
        threshold=threshold,
        select=None if select is None else Path(select),
        stage=stage,
        pca=None if pca is None else str(pca),
        force=force,
        compare_lr=compare_lr,
    )
    return run_simulation(spec)


@dataclass(frozen=True)
class ScoringSpec:
    run: Path
    bank_data: Path
    out: Path
    grid_data: Path | None = None
    id_column: str = "id"
    quiet: bool = False
    timeout: float = 600.0
    force: bool = False
    log_level: str = NODE_LOG_LEVEL


def run_scoring(spec: ScoringSpec) -> dict[str, Any]:
    """Score the bank's enterprises with a simulated run's two models (three processes)."""
    if spec.out.exists() and not spec.out.is_dir():
        raise ConfigError(f"--out {spec.out}: is a file, not a folder")
    report_path = spec.run / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{report_path}: not a finished simulate run ({exc})") from exc
    grid = spec.grid_data or Path(report["data"]["grid"])
    folder = RunFolder.open(spec.out, "score", force=spec.force,
                            reads=(spec.run, spec.bank_data, grid))
    return in_run_folder(folder, lambda: _score(spec, grid))


def _score(spec: ScoringSpec, grid: Path) -> dict[str, Any]:
    settings = replace(TrainSettings(), task=Task.SCORE)
    fed = _Federation(
        spec.out,
        f"score-{secrets.token_hex(4)}",
        settings,
        {
            Role.GRID: {
                "path": str(grid.resolve()),
                "id_column": spec.id_column,
                "model": str((spec.run / "grid" / "model.json").resolve()),
            },
            Role.BANK: {
                "path": str(spec.bank_data.resolve()),
                "id_column": spec.id_column,
                "label_column": "",
                "model": str((spec.run / "bank" / "model.json").resolve()),
            },
        },
        spec.quiet,
        spec.timeout,
        spec.log_level,
    )
    fed.run()
    stats = json.loads((spec.out / "bank" / "stats.json").read_text(encoding="utf-8"))
    return {
        "scored": stats["scored"],
        "no_grid_record": stats["no_grid_record"],
        "scores": str(spec.out / "bank" / "scores.csv"),
    }
