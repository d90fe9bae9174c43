"""The researchers' entry point: a whole federation as three local OS processes.

``run_simulation`` makes throw-away certificates, writes the three nodes' TOML configs
(the same files a three-host deployment uses), starts coordinator, grid and bank on
127.0.0.1 with ports chosen at run time, shows progress, and assembles the run folder:
report.json, summary.md, plots, each node's model, statistics and audit log.
``simulate(...)`` is the same as a Python call returning the report as a dict.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from federation.processes import NodeProcess, supervise
from federation.progress import Progress
from federation.protocol.errors import ConfigError
from federation.protocol.messages import Model, Role, Task, TrainSettings
from federation.transport.certs import write_federation
from parties.model import atomic_write_text

NODE_DIRS = ("coordinator", "grid", "bank", "certs", "configs", "plots", "lr")
START_TIMEOUT = 60.0


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
    compare_lr: bool = True  # --model gbdt: also train the federated LR (in DIR/lr)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _write_toml(path: Path, tables: dict[str, dict[str, object]]) -> Path:
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    atomic_write_text(path, "\n".join(lines))
    return path


def _clean(out: Path) -> None:
    """Remove a previous run's node folders and report (only the names we write)."""
    for name in NODE_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("report.json", "summary.md"):
        (out / name).unlink(missing_ok=True)


@dataclass
class _Federation:
    out: Path
    job_id: str
    settings: TrainSettings
    data: dict[Role, dict[str, object]]
    quiet: bool
    timeout: float

    def run(self) -> dict[Role, NodeProcess]:
        out, certs = self.out.resolve(), self.out.resolve() / "certs"
        write_federation(certs)
        configs = out / "configs"
        nodes: dict[Role, NodeProcess] = {}
        coord_cfg = _write_toml(
            configs / "coordinator.toml",
            {
                "node": {
                    "role": "coordinator",
                    "job_id": self.job_id,
                    "listen": "127.0.0.1:0",
                    "out": str(out / "coordinator"),
                },
                "tls": {"dir": str(certs)},
                "training": self.settings.as_dict(),
                "job": {"barrier_timeout": max(120.0, 4 * self.settings.deadline_seconds)},
            },
        )
        nodes[Role.COORDINATOR] = NodeProcess(
            "coordinator", ["coordinator", "--config", str(coord_cfg)], out / "coordinator"
        )
        rounds = self.settings.trees if self.settings.model is Model.GBDT else \
            self.settings.epochs
        progress = Progress(rounds, enabled=not self.quiet)
        try:
            nodes[Role.COORDINATOR].start()
            address = nodes[Role.COORDINATOR].wait_listening(START_TIMEOUT)
            for role in (Role.GRID, Role.BANK):
                cfg = _write_toml(
                    configs / f"{role.value}.toml",
                    {
                        "node": {
                            "role": role.value,
                            "job_id": self.job_id,
                            "listen": "127.0.0.1:0",
                            "coordinator": address,
                            "out": str(out / role.value),
                        },
                        "tls": {"dir": str(certs)},
                        "data": self.data[role],
                        "job": {"deadline": self.settings.deadline_seconds},
                    },
                )
                nodes[role] = NodeProcess(
                    role.value,
                    ["party", "--role", role.value, "--config", str(cfg)],
                    out / role.value,
                )
                nodes[role].start()
            for role in (Role.GRID, Role.BANK):
                nodes[role].wait_listening(START_TIMEOUT)
            with progress:
                supervise(
                    list(nodes.values()), self.timeout, progress.on_event, nodes[Role.COORDINATOR]
                )
        finally:
            for node in nodes.values():
                node.stop()
        return nodes


def _resolve_data(spec: SimulationSpec) -> tuple[Path, Path, str, str]:
    if spec.grid_data is not None and spec.bank_data is not None:
        return spec.grid_data.resolve(), spec.bank_data.resolve(), spec.id_column, spec.label_column
    from parties.labels.demo import build_demo_features

    grid, bank = build_demo_features(spec.out.resolve() / "data", spec.demo_enterprises)
    return grid, bank, "id", "y"


def run_simulation(spec: SimulationSpec) -> dict[str, Any]:
    """Run one training job as three processes and write the run folder; returns the report."""
    from federation.report import build_report

    spec.out.mkdir(parents=True, exist_ok=True)
    if not spec.resume:
        _clean(spec.out)
    grid, bank, id_col, label_col = _resolve_data(spec)
    settings = replace(spec.settings, task=Task.TRAIN)
    fed = _Federation(
        spec.out,
        f"sim-{secrets.token_hex(4)}",
        settings,
        {
            Role.GRID: {"path": str(grid), "id_column": id_col},
            Role.BANK: {"path": str(bank), "id_column": id_col, "label_column": label_col},
        },
        spec.quiet,
        spec.timeout,
    )
    nodes = fed.run()
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
        federated_lr=federated_lr,
    )


def _federated_lr(spec: SimulationSpec, data: dict[Role, dict[str, object]],
                  trees: TrainSettings) -> dict[str, Any]:
    """The federated LR of the same data, rows and split, for the tree job's report:
    a second federation in DIR/lr with the LR defaults (same seed, validation share)."""
    settings = replace(TrainSettings(), seed=trees.seed,
                       validation_fraction=trees.validation_fraction,
                       deadline_seconds=trees.deadline_seconds, task=Task.TRAIN)
    out = spec.out / "lr"
    fed = _Federation(out, f"sim-{secrets.token_hex(4)}", settings, data, spec.quiet,
                      spec.timeout)
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
    compare_lr: bool = True,
    **training: Any,
) -> dict[str, Any]:
    """Python API: run a simulation and return ``report.json`` as a dict.

    ``training`` takes the ``TrainSettings`` fields (epochs=5, batch_size=256, ...; for
    trees model="gbdt", trees=50, depth=5, bins=32, ...). ``compare_lr``: a tree job also
    trains the federated LR of the same data for the report.
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


def run_scoring(spec: ScoringSpec) -> dict[str, Any]:
    """Score the bank's enterprises with a simulated run's two models (three processes)."""
    report_path = spec.run / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{report_path}: not a finished simulate run ({exc})") from exc
    grid = spec.grid_data or Path(report["data"]["grid"])
    spec.out.mkdir(parents=True, exist_ok=True)
    _clean(spec.out)
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
    )
    fed.run()
    stats = json.loads((spec.out / "bank" / "stats.json").read_text(encoding="utf-8"))
    return {
        "scored": stats["scored"],
        "no_grid_record": stats["no_grid_record"],
        "scores": str(spec.out / "bank" / "scores.csv"),
    }
