"""The committed generated modules equal a fresh ``protoc`` run on ``vfl.proto``.

CONTRIBUTING.md, "Generated code": the generated files are built, never edited. This regenerates
``protos/federation/proto/vfl.proto`` in a temporary copy with the pinned grpcio-tools
and diffs each output byte for byte against ``federation/proto/``.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("federation/proto/vfl.proto")
GENERATED = ("vfl_pb2.py", "vfl_pb2.pyi", "vfl_pb2_grpc.py")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("protoc")
    shutil.copytree(ROOT / "protos", work / "protos")
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", "protos", "--python_out=.",
           "--pyi_out=.", "--grpc_python_out=.", str(Path("protos") / PROTO)]
    done = subprocess.run(cmd, check=False, cwd=work, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"protoc failed:\n{done.stderr}"
    return work / "federation" / "proto"


@pytest.mark.parametrize("name", GENERATED)
def test_committed_module_matches_fresh_protoc_output(regenerated: Path, name: str) -> None:
    fresh = (regenerated / name).read_text(encoding="utf-8")
    committed = (ROOT / "federation" / "proto" / name).read_text(encoding="utf-8")
    if fresh != committed:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
            f"committed/{name}", f"regenerated/{name}"))[:60])
        pytest.fail(f"federation/proto/{name} is stale or hand-edited; regenerate with\n"
                    "  python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. "
                    f"--grpc_python_out=. protos/{PROTO}\n{diff}")


def test_protoc_writes_exactly_the_committed_set(regenerated: Path) -> None:
    assert sorted(p.name for p in regenerated.iterdir()) == sorted(GENERATED)
    committed = {p.name for p in (ROOT / "federation" / "proto").iterdir()
                 if p.suffix in (".py", ".pyi") and p.name != "__init__.py"}
    assert committed == set(GENERATED)


def test_generated_grpc_module_imports_messages_absolutely() -> None:
    text = (ROOT / "federation" / "proto" / "vfl_pb2_grpc.py").read_text(encoding="utf-8")
    assert "from federation.proto import vfl_pb2" in text
