"""A wrongly typed config value ends the node before it writes anything: one error line.

The trial's ``[node] job_id = 7`` used to append an audit entry with an integer job to the
node's audit.jsonl before failing, so that log failed ``audit verify`` from then on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.cli import main
from federation.transport.certs import write_federation


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    write_federation(folder)
    return folder


NODE = {
    "grid": '[node]\nrole = "grid"\njob_id = "j"\nlisten = "127.0.0.1:0"\n'
            'coordinator = "127.0.0.1:9"\nout = "out"\n[data]\npath = "grid.csv"\n',
    "coordinator": '[node]\nrole = "coordinator"\njob_id = "j"\nlisten = "127.0.0.1:0"\n'
                   'out = "out"\n',
}


@pytest.mark.parametrize(("role", "old", "new", "expected"), [
    ("grid", 'listen = "127.0.0.1:0"', "listen = 50052",
     '[node] listen: expected a string "host:port", got 50052'),
    ("coordinator", 'listen = "127.0.0.1:0"', "listen = 50052",
     '[node] listen: expected a string "host:port", got 50052'),
    ("grid", 'path = "grid.csv"', "path = 5", "[data] path: expected a path"),
    ("grid", 'job_id = "j"', "job_id = 7", "[node] job_id: expected a non-empty string, got 7"),
    ("coordinator", 'job_id = "j"', "job_id = 7", "[node] job_id: expected"),
    ("grid", 'out = "out"', 'out = "out"\n[job]\ndeadline = "thirty"',
     "[job] deadline: expected a number of seconds > 0, got 'thirty'"),
    ("coordinator", 'out = "out"', 'out = "out"\n[job]\nbarrier_timeout = "x"',
     "[job] barrier_timeout: expected a number of seconds > 0"),
    ("coordinator", 'out = "out"', 'out = "out"\n[training]\nepocs = 3',
     "[training]: unknown key 'epocs'"),
])
def test_wrong_type_is_one_error_line_naming_file_and_key_and_nothing_is_written(
        tmp_path: Path, certs: Path, capsys: pytest.CaptureFixture[str], role: str, old: str,
        new: str, expected: str) -> None:
    config = tmp_path / f"{role}.toml"
    config.write_text(NODE[role].replace(old, new) + f'[tls]\ndir = "{certs}"\n')
    argv = ["party", "--role", role] if role != "coordinator" else ["coordinator"]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0] == f"error: {config}: {expected}" or err[0].startswith(
        f"error: {config}: {expected}"), err
    assert not (tmp_path / "out").exists()  # no audit.jsonl, no folder
