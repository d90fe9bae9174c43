"""File and folder modes do not depend on the user's umask: under ``umask 000`` plots are
0644, folders 0755 and confidential files 0600, as the README's run-folder section says
(``federation/protocol/files.py`` states the split). The trial found plots 0666 and run
subfolders 0777."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from federation.protocol.files import mask_shared_writes
from tests.conftest import REPO, write_predictions


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run_under_umask_000(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "federation.cli", *args], capture_output=True,
                          text=True, timeout=180, cwd=REPO, preexec_fn=lambda: os.umask(0))


def test_evaluate_under_umask_000_writes_0644_plots_in_0755_folders(tmp_path: Path) -> None:
    src = write_predictions(tmp_path / "predictions.csv")
    out = tmp_path / "eval"
    result = _run_under_umask_000("evaluate", "--predictions", str(src), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    plots = sorted((out / "plots").glob("*.png"))
    assert plots
    assert {p.name: _mode(p) for p in plots} == {p.name: 0o644 for p in plots}
    for folder in (out, out / "plots"):
        assert _mode(folder) == 0o755, (folder, oct(_mode(folder)))
    assert _mode(out / "metrics.json") == 0o644


def test_certs_under_umask_000_keys_0600_certificates_0644_folder_0755(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    result = _run_under_umask_000("certs", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert _mode(out) == 0o755
    assert _mode(out / "ca.key") == 0o600 and _mode(out / "grid.key") == 0o600
    assert _mode(out / "ca.pem") == 0o644


def test_masking_only_narrows_the_umask() -> None:
    before = os.umask(0o077)
    try:
        assert mask_shared_writes() == 0o077
        assert os.umask(0o000) == 0o077  # 077 already masks group and other write
        assert mask_shared_writes() == 0o000
        assert os.umask(0o077) == 0o022
    finally:
        os.umask(before)
