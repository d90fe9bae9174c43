"""federation.config: TOML files, path resolution, and refusal of unknown or invalid input.

The module promises "Unknown keys are errors, so a typo never silently falls back to a
default" and that every bad value is a ``ConfigError`` (one readable line, exit code 2),
never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from federation.config import load_toml, settings_from, tls_from
from federation.protocol.errors import ConfigError
from federation.protocol.messages import Mode, Optimizer, PsiProtocol, Role, Task, TrainSettings
from federation.transport.certs import NodeCerts


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    sub = tmp_path / "conf"
    sub.mkdir(exist_ok=True)
    path = sub / name
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_paths_resolve_against_the_file_not_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, """
[node]
role = "bank"
job_id = "j1"
out = "runs/bank"
[tls]
dir = "../certs"
[data]
path = "data/bank.csv"
model = "/abs/model.json"
id_column = "data/not-a-path"
""")
    monkeypatch.chdir(tmp_path)  # a different working directory must not matter
    raw = load_toml(path)
    base = path.parent
    assert Path(raw["node"]["out"]) == base / "runs/bank"
    assert Path(raw["tls"]["dir"]) == base / "../certs"
    assert Path(raw["data"]["path"]) == base / "data/bank.csv"
    assert raw["data"]["model"] == "/abs/model.json"
    assert raw["data"]["id_column"] == "data/not-a-path"  # not a path key: untouched
    assert raw["node"]["job_id"] == "j1"


def test_tls_file_paths_resolve_against_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[tls]\nca = "ca.pem"\ncert = "pki/bank.pem"\nkey = "pki/bank.key"\n')
    certs = tls_from(load_toml(path)["tls"], Role.BANK)
    assert certs == NodeCerts(path.parent / "ca.pem", path.parent / "pki/bank.pem",
                              path.parent / "pki/bank.key")


def test_tls_dir_names_role_files() -> None:
    certs = tls_from({"dir": "/pki"}, Role.GRID)
    assert certs == NodeCerts(Path("/pki/ca.pem"), Path("/pki/grid.pem"), Path("/pki/grid.key"))


def test_tls_without_dir_needs_all_three_files() -> None:
    with pytest.raises(ConfigError, match=r"missing \['cert', 'key'\]"):
        tls_from({"ca": "/ca.pem"}, Role.BANK)


def test_missing_file_is_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml"):
        load_toml(tmp_path / "nope.toml")


def test_invalid_toml_is_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[node\nrole = grid\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(path)


def test_unknown_section_is_config_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\njob_id = "j"\n[trainig]\nepochs = 3\n')
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['trainig'\]"):
        load_toml(path)


def test_unknown_training_key_is_config_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[training]\nepochs = 3\nlearning_rte = 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rte'"):
        settings_from(load_toml(path)["training"])


@pytest.mark.parametrize(("section", "key"), [("node", "jobid"), ("data", "id_colum"),
                                              ("job", "barier_timeout"), ("tls", "certs")])
def test_unknown_key_in_any_section_is_config_error(tmp_path: Path, section: str,
                                                    key: str) -> None:
    path = write(tmp_path, f'[{section}]\n{key} = "x"\n')
    with pytest.raises(ConfigError, match=key):
        load_toml(path)


def test_section_that_is_not_a_table_is_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'node = "grid"\n')
    with pytest.raises(ConfigError, match="node"):
        load_toml(path)


def test_training_table_sets_every_field_with_conversion(tmp_path: Path) -> None:
    path = write(tmp_path, """
[training]
epochs = 7
batch_size = 64
learning_rate = 0.05
optimizer = "adam"
l2 = 0.0
l1 = 0.01
momentum = 0.5
tolerance = 1e-6
seed = 99
validation_fraction = 0.1
frac_bits = 20
task = "score"
deadline_seconds = 5.0
mode = "local"
psi = "ecdh"
""")
    s = settings_from(load_toml(path)["training"])
    assert s == TrainSettings(mode=Mode.LOCAL, epochs=7, batch_size=64, learning_rate=0.05,
                              optimizer=Optimizer.ADAM, l2=0.0, l1=0.01, momentum=0.5,
                              tolerance=1e-6, seed=99, validation_fraction=0.1, frac_bits=20,
                              task=Task.SCORE, deadline_seconds=5.0, psi=PsiProtocol.ECDH)
    assert TrainSettings().psi is PsiProtocol.SERVER_AIDED


def test_overrides_apply_on_a_base_and_none_keeps_the_base() -> None:
    base = TrainSettings(epochs=3, seed=5)
    s = settings_from({"epochs": None, "learning_rate": 0.2}, base)
    assert (s.epochs, s.seed, s.learning_rate) == (3, 5, 0.2)


@pytest.mark.parametrize(("values", "message"), [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch size"),
    ({"learning_rate": 0.0}, "learning rate"),
    ({"learning_rate": -0.1}, "learning rate"),
    ({"l2": -1.0}, "l1 and l2"),
    ({"l1": -0.5}, "l1 and l2"),
    ({"validation_fraction": 1.0}, "validation fraction"),
    ({"validation_fraction": -0.2}, "validation fraction"),
    ({"frac_bits": 7}, "frac bits"),
    ({"frac_bits": 25}, "frac bits"),
    ({"deadline_seconds": 0.0}, "deadline"),
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"reveal_weights": "none", "mode": "local"}, "needs mode .shared."),
    ({"reveal_weights": "all"}, "must be .own. or .none."),
    ({"mode": "shared", "optimizer": "adam"}, "not adam"),
    ({"mode": "turbo"}, "mode"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"task": "predict"}, "task"),
    ({"psi": "rsa"}, "psi = 'rsa'"),
    ({"seed": "abc"}, "seed"),
    ({"epochs": "three"}, "epochs"),
])
def test_invalid_training_values_are_config_errors(values: dict[str, Any],
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(values)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}])
def test_non_scalar_training_value_is_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="epochs"):
        settings_from({"epochs": value})


@pytest.mark.parametrize(("key", "value"), [("epochs", 2.7), ("batch_size", True)])
def test_wrongly_typed_integer_is_config_error(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        settings_from({key: value})


def test_party_psi_requirement_is_read_from_the_data_table_and_checked(tmp_path: Path) -> None:
    from federation.config import NetworkConfig
    from federation.nodes import party_config

    net = NetworkConfig(role=Role.BANK, job_id="j", listen="127.0.0.1:0", out=tmp_path,
                        certs=tls_from({"dir": str(tmp_path)}, Role.BANK))
    assert party_config(net, {"path": "b.csv"}, 5.0).psi is None
    assert party_config(net, {"path": "b.csv", "psi": "ecdh"}, 5.0).psi is PsiProtocol.ECDH
    with pytest.raises(ConfigError, match=r"bank: \[data\] psi = 'fast'"):
        party_config(net, {"path": "b.csv", "psi": "fast"}, 5.0)


@pytest.mark.parametrize(("section", "line", "expected"), [
    ("node", "listen = 50052", 'expected a string "host:port", got 50052'),
    ("node", 'listen = "no-port"', 'expected a string "host:port"'),
    ("node", "coordinator = 50051", 'expected a string "host:port"'),
    ("node", "job_id = 7", "expected a non-empty string, got 7"),
    ("node", "out = 3", "expected a path"),
    ("node", 'role = "lender"', "expected 'coordinator', 'grid' or 'bank'"),
    ("node", "data_port = 70000", "expected a port"),
    ("node", 'data_port = "50062"', "expected a port"),
    ("data", "path = 5", "expected a path (a non-empty string), got 5"),
    ("data", "id_column = 1", "expected a column name"),
    ("data", 'psi_workers = "4"', "expected a number of threads"),
    ("data", 'psi = "fast"', "expected 'server-aided' or 'ecdh'"),
    ("data", "features = [1, 2]", "expected a list of column names"),
    ("data", "pca = 0", "expected a positive number of components or 'auto'"),
    ("job", 'deadline = "thirty"', "expected a number of seconds > 0, got 'thirty'"),
    ("job", "barrier_timeout = true", "expected a number of seconds > 0, got True"),
    ("job", "job_timeout = -1", "expected a number of seconds > 0"),
    ("job", "deadline = nan", "expected a number of seconds > 0"),
    ("tls", "dir = 1", "expected a path"),
    ("screen", "bins = 1", "expected an integer in [2, 256]"),
    ("screen", 'monotone_merge = "yes"', "expected true or false"),
    ("screen", 'reveal_to_grid = "all"', "expected 'none' or 'summary'"),
])
def test_wrongly_typed_value_in_any_section_names_file_section_and_key(
        tmp_path: Path, section: str, line: str, expected: str) -> None:
    path = write(tmp_path, f"[{section}]\n{line}\n", name="grid.toml")
    key = line.split(" = ")[0]
    with pytest.raises(ConfigError) as caught:
        load_toml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: [{section}] {key}: "), message
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize(("text", "expected"), [
    ("[training]\nepocs = 3\n", "[training]: unknown key 'epocs'"),
    ("[training]\nepochs = 'three'\n", "[training] epochs = 'three': expected an integer"),
    ("[training]\nepochs = 0\n", "[training]: epochs must be >= 1, got 0"),
    ("[training]\nmode = 'shared'\noptimizer = 'adam'\n", "[training]: mode 'shared' supports"),
    ("[node]\nlistn = '127.0.0.1:0'\n", "[node]: unknown key(s) ['listn']"),
    ("[tls]\nca = 'ca.pem'\n", "[tls] needs dir, or ca, cert and key"),
    ("[node\n", "invalid TOML"),
])
def test_every_config_error_names_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text, name="coordinator.toml")
    with pytest.raises(ConfigError) as caught:
        load_toml(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert expected in str(caught.value)


def test_the_example_configs_pass_the_type_checks() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    for name in ("coordinator.toml", "coordinator_gbdt.toml", "grid.toml", "bank.toml"):
        load_toml(examples / name)


def test_an_empty_label_column_is_accepted_for_a_scoring_bank(tmp_path: Path) -> None:
    path = write(tmp_path, '[data]\npath = "b.csv"\nid_column = "id"\nlabel_column = ""\n')
    assert load_toml(path)["data"]["label_column"] == ""  # score writes it: no label
