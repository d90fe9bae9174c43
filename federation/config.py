"""Node configuration: TOML files, overridden by flags, frozen into dataclasses.

A TOML file has the sections ``[node]`` (role, job_id, listen, advertise, data_port,
coordinator, out), ``[tls]`` (dir, or ca/cert/key), ``[data]`` (path, id_column, label_column,
model) and, for the coordinator, ``[training]`` (the ``TrainSettings`` fields) and
``[job]`` (barrier_timeout, job_timeout). Paths in a file are relative to the file.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from federation.protocol.errors import ConfigError
from federation.protocol.messages import (
    Mode,
    Model,
    Optimizer,
    PsiProtocol,
    Role,
    Task,
    TrainSettings,
)
from federation.transport.certs import NodeCerts

SECTIONS = {"node", "tls", "data", "training", "job", "screen"}
# Keys each table may hold ([training] is checked against TrainSettings).
KEYS: dict[str, frozenset[str]] = {
    "node": frozenset({"role", "job_id", "listen", "advertise", "data_port", "coordinator",
                       "out"}),
    "tls": frozenset({"dir", "ca", "cert", "key"}),
    "data": frozenset({"path", "id_column", "label_column", "model", "psi_workers", "psi",
                       "features", "pca"}),
    "job": frozenset({"barrier_timeout", "job_timeout", "deadline"}),
    "screen": frozenset({"bins", "rules", "reveal_to_grid", "monotone_merge", "compare"}),
}


@dataclass(frozen=True)
class NetworkConfig:
    role: Role
    job_id: str
    listen: str
    out: Path
    certs: NodeCerts
    coordinator: str = ""
    advertise: str = ""
    data_port: int = 0  # a party's TLS data plane; 0: a free port


@dataclass(frozen=True)
class CoordinatorConfig:
    network: NetworkConfig
    settings: TrainSettings
    barrier_timeout: float = 120.0
    job_timeout: float = 3600.0


def load_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"config {path}: values nested too deeply") from exc
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(
            f"config {path}: unknown section(s) {sorted(unknown)}; expected {sorted(SECTIONS)}"
        )
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config {path}: [{section}] must be a table, got {table!r}")
        unknown_keys = set(table) - KEYS.get(section, set(table))
        if unknown_keys:
            raise ConfigError(
                f"config {path}: unknown key(s) {sorted(unknown_keys)} in "
                f"[{section}]; expected {sorted(KEYS[section])}"
            )
    for section, table in raw.items():
        for key, value in table.items():
            if (section, key) == ("data", "features") and isinstance(value, list) \
                    and all(isinstance(v, str) for v in value):
                continue
            if section != "training" and not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"config {path}: [{section}] {key} = {value!r}: expected a "
                                  "string or a number")
    base = path.parent
    for section in ("tls", "data", "node", "screen"):
        for key in ("dir", "ca", "cert", "key", "path", "model", "out", "rules", "compare"):
            value = raw.get(section, {}).get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                raw[section][key] = str(base / value)
    return raw


def tls_from(section: dict[str, Any], role: Role) -> NodeCerts:
    for key, value in section.items():
        if not isinstance(value, str):
            raise ConfigError(f"[tls] {key} = {value!r}: expected a path")
    if "dir" in section:
        return NodeCerts.in_dir(Path(section["dir"]), role)
    missing = [k for k in ("ca", "cert", "key") if k not in section]
    if missing:
        raise ConfigError(f"[tls] needs dir, or ca, cert and key (missing {missing})")
    return NodeCerts(Path(section["ca"]), Path(section["cert"]), Path(section["key"]))


_CONVERT = {"mode": Mode, "optimizer": Optimizer, "task": Task, "model": Model,
            "psi": PsiProtocol}
# --model gbdt changes the defaults of the two settings it shares with logistic regression.
GBDT_DEFAULTS = {"learning_rate": 0.1, "l2": 1.0}


def settings_from(section: dict[str, Any], base: TrainSettings | None = None) -> TrainSettings:
    """TrainSettings from a [training] table (and flag overrides), checked."""
    known = {f.name: f for f in fields(TrainSettings)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"[training]: unknown key {key!r}; known: {sorted(known)}")
        if value is None:
            continue
        values[key] = _convert(key, value)
    base = base or TrainSettings()
    if values.get("model", base.model) is Model.GBDT:
        for key, default in GBDT_DEFAULTS.items():
            if key not in values and getattr(base, key) == getattr(TrainSettings(), key):
                values[key] = default
    settings = replace(base, **values)
    check_settings(settings)
    return settings


def _convert(key: str, value: Any) -> Any:
    """One [training] value, with its type checked exactly (no silent truncation)."""
    expected = type(getattr(TrainSettings(), key))
    if key in _CONVERT:
        try:
            return _CONVERT[key](value)
        except ValueError as exc:
            raise ConfigError(f"[training] {key} = {value!r}: {exc}") from exc
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"[training] {key} = {value!r}: expected {expected.__name__}")
    if expected is int and not isinstance(value, int):
        raise ConfigError(f"[training] {key} = {value!r}: expected an integer")
    if expected is float and not isinstance(value, (int, float)):
        raise ConfigError(f"[training] {key} = {value!r}: expected a number")
    try:
        return expected(value)
    except OverflowError as exc:
        raise ConfigError(f"[training] {key}: {str(value)[:20]}... is too large") from exc


def check_settings(s: TrainSettings) -> None:
    checks = [
        (s.epochs >= 1, f"epochs must be >= 1, got {s.epochs}"),
        (s.batch_size >= 1, f"batch size must be >= 1, got {s.batch_size}"),
        (s.learning_rate > 0, f"learning rate must be > 0, got {s.learning_rate}"),
        (s.l2 >= 0 and s.l1 >= 0, "l1 and l2 must be >= 0"),
        (
            0 <= s.validation_fraction < 1,
            f"validation fraction must be in [0, 1), got {s.validation_fraction}",
        ),
        (8 <= s.frac_bits <= 24, f"frac bits must be in [8, 24], got {s.frac_bits}"),
        (
            0 < s.deadline_seconds < 86400,
            f"deadline must be in (0, 86400) s, got {s.deadline_seconds}",
        ),
        (0 <= s.momentum < 1, f"momentum must be in [0, 1), got {s.momentum}"),
        (s.tolerance >= 0, f"tolerance must be >= 0, got {s.tolerance}"),
        (
            s.reveal_weights in ("own", "none"),
            f"reveal_weights must be 'own' or 'none', got {s.reveal_weights!r}",
        ),
        (
            s.reveal_weights == "own" or s.mode is Mode.SHARED,
            "reveal_weights 'none' needs mode 'shared' (mode local has no shared weights)",
        ),
        (
            s.mode is Mode.LOCAL or s.optimizer is not Optimizer.ADAM,
            "mode 'shared' supports sgd and momentum, not adam",
        ),
        (s.mode is Mode.LOCAL or s.l1 == 0, "mode 'shared' supports L2 only, not L1"),
        (
            4 <= s.feature_frac_bits <= s.frac_bits,
            f"feature frac bits must be in [4, frac bits], got {s.feature_frac_bits}",
        ),
        (s.feature_clip >= 1, f"feature clip must be >= 1, got {s.feature_clip}"),
        (s.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {s.checkpoint_every}"),
        (1 <= s.trees <= 10_000, f"trees must be in [1, 10000], got {s.trees}"),
        (1 <= s.depth <= 12, f"depth must be in [1, 12], got {s.depth}"),
        (2 <= s.bins <= 255, f"bins must be in [2, 255], got {s.bins}"),
        (s.min_child_weight >= 0, f"min_child_weight must be >= 0, got {s.min_child_weight}"),
        (0 < s.subsample <= 1, f"subsample must be in (0, 1], got {s.subsample}"),
        (s.early_stopping_rounds >= 0,
         f"early_stopping_rounds must be >= 0, got {s.early_stopping_rounds}"),
        (s.model is Model.LR or s.checkpoint_every == 0,
         "checkpoints are for logistic regression; --model gbdt trains without them"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
