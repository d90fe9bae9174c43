"""Node configuration: TOML files, overridden by flags, frozen into dataclasses.

A TOML file has the sections ``[node]`` (role, job_id, listen, advertise, data_port,
coordinator, out), ``[tls]`` (dir, or ca/cert/key), ``[data]`` (path, id_column, label_column,
model) and, for the coordinator, ``[training]`` (the ``TrainSettings`` fields) and
``[job]`` (barrier_timeout, job_timeout). Paths in a file are relative to the file.
Unknown keys are errors, so a typo never silently falls back to a default; every value's type
is checked when the file is loaded, before anything is written (``TYPES``), and each error
names the file, the [section] and the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
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


def _text(v: object) -> bool:
    return isinstance(v, str) and v != ""


def _address(v: object) -> bool:
    host, colon, port = v.rpartition(":") if isinstance(v, str) else ("", "", "")
    return bool(colon) and port.isdigit() and int(port) < 65536


def _integer(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: type(v) is int and low <= v <= high


def _seconds(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf


def _one_of(*choices: str) -> Callable[[object], bool]:
    return lambda v: v in choices


def _names(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _components(v: object) -> bool:
    return (type(v) is int and v >= 1) or v == "auto" or (isinstance(v, str) and v.isdigit())


_PATH = (_text, "a path (a non-empty string)")
_ADDRESS = (_address, 'a string "host:port"')
_SECONDS = (_seconds, "a number of seconds > 0")
# What each key of each table must hold, checked when the file is loaded (before anything
# is written): a test of the TOML value and what the error says was expected. [training] is
# checked against TrainSettings by _convert.
TYPES: dict[str, dict[str, tuple[Callable[[object], bool], str]]] = {
    "node": {"role": (_one_of("coordinator", "grid", "bank"), "'coordinator', 'grid' or 'bank'"),
             "job_id": (_text, "a non-empty string"), "listen": _ADDRESS,
             "advertise": _ADDRESS, "coordinator": _ADDRESS,
             "data_port": (_integer(0, 65535), "a port 0-65535 (0 picks a free one)"),
             "out": _PATH},
    "tls": {"dir": _PATH, "ca": _PATH, "cert": _PATH, "key": _PATH},
    "data": {"path": _PATH, "id_column": (_text, "a column name (a non-empty string)"),
             "label_column": (lambda v: isinstance(v, str), "a column name (a string; empty "
                              "for none)"), "model": _PATH,
             "psi_workers": (_integer(1, 4096), "a number of threads >= 1"),
             "psi": (_one_of("server-aided", "ecdh"), "'server-aided' or 'ecdh'"),
             "features": (_names, "a list of column names"),
             "pca": (_components, "a positive number of components or 'auto'")},
    "job": {"barrier_timeout": _SECONDS, "job_timeout": _SECONDS, "deadline": _SECONDS},
    "screen": {"bins": (_integer(2, 256), "an integer in [2, 256]"), "rules": _PATH,
               "reveal_to_grid": (_one_of("none", "summary"), "'none' or 'summary'"),
               "monotone_merge": (lambda v: isinstance(v, bool), "true or false"),
               "compare": _PATH},
}
# Keys each table may hold ([training] is checked against TrainSettings).
KEYS: dict[str, frozenset[str]] = {section: frozenset(keys) for section, keys in TYPES.items()}


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
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: values nested too deeply") from exc
    check_tables(raw, str(path))
    base = path.parent
    for section in ("tls", "data", "node", "screen"):
        for key in ("dir", "ca", "cert", "key", "path", "model", "out", "rules", "compare"):
            value = raw.get(section, {}).get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                raw[section][key] = str(base / value)
    return raw


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_tables(raw: dict[str, Any], where: str) -> None:
    """Every section, key and value type of a loaded config; errors name ``where``."""
    unknown = set(raw) - SECTIONS
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; expected "
                          f"{sorted(SECTIONS)}")
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{section}] must be a table, got {_shown(table)}")
        if section == "training":
            check_training(table, where)
            continue
        unknown_keys = set(table) - KEYS[section]
        if unknown_keys:
            raise ConfigError(f"{where}: [{section}]: unknown key(s) {sorted(unknown_keys)}; "
                              f"expected {sorted(KEYS[section])}")
        for key, value in table.items():
            valid, expected = TYPES[section][key]
            if not valid(value):
                raise ConfigError(f"{where}: [{section}] {key}: expected {expected}, got "
                                  f"{_shown(value)}")
    tls = raw.get("tls", {})
    if tls and "dir" not in tls and not {"ca", "cert", "key"} <= set(tls):
        missing = sorted({"ca", "cert", "key"} - set(tls))
        raise ConfigError(f"{where}: [tls] needs dir, or ca, cert and key (missing {missing})")


def check_training(table: dict[str, Any], where: str) -> None:
    """The keys, value types and ranges of a [training] table on its own (a flag may still
    change a value; the combination is checked again then)."""
    known = {f.name for f in fields(TrainSettings)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: [training]: unknown key {key!r}; known: "
                              f"{sorted(known)}")
        try:
            _convert(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    try:
        settings_from(table)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [training]: {exc}") from exc


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
