"""Who may import whom (STYLE.md section 1), checked on the source with ``ast``.

- ``crypto`` is pure maths: nothing from ``federation`` or ``parties``, no gRPC / protobuf,
  no sockets or subprocesses, and no ``random`` / ``numpy.random`` (masks come from the
  AES-CTR PRG, DESIGN.md "Arithmetic"). ``logging`` is allowed.
- gRPC (``grpc``, ``grpc_health``, ``grpc_reflection``, ...), ``google.protobuf`` and the
  generated ``federation.proto`` are imported only at the edge:
  ``federation/{grpc_server,grpc_client,wire,cli,nodes,serve}.py`` and ``federation/proto/*``.
- ``parties`` imports ``crypto``, ``federation.{messages,channel,errors,schedule,dealer}``
  and itself; never gRPC nor another federation module (``coordinator``, ``wire``, ``nodes``,
  ``cli``, ``simulate``, ...).
- ``federation`` imports ``parties`` only from its composition roots
  (``cli``, ``nodes``, ``simulate``, ``report``); the core stays below ``parties``, so the
  two packages never import each other in a cycle.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``, relative,
and ``importlib.import_module("literal")`` / ``__import__("literal")``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crypto", "parties", "federation")

GRPC_PREFIXES = ("grpc", "grpc_health", "grpc_reflection", "grpc_status", "grpc_tools",
                 "google.protobuf", "federation.proto")
GRPC_EDGE = {f"federation.{m}" for m in ("grpc_server", "grpc_client", "wire", "cli", "nodes",
                                          "serve")}
CRYPTO_FORBIDDEN = ("federation", "parties", "socket", "subprocess", "http", "urllib",
                    "requests", "random", "numpy.random") + GRPC_PREFIXES
PARTIES_MAY_USE = {f"federation.{m}" for m in ("messages", "channel", "errors", "schedule",
                                               "dealer")}
FEDERATION_ROOTS = {f"federation.{m}" for m in ("cli", "nodes", "simulate", "report", "serve",
                                                 "serve_cli")}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of everything ``source`` (module ``module``) imports."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            found.add(base)
            # ``from federation import wire`` imports the submodule federation.wire
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, str):
                found.add(arg.value)
        elif isinstance(node, ast.Attribute) and node.attr == "random" \
                and isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy"):
            found.add("numpy.random")
    return found


def violations(module: str, imported: set[str]) -> list[str]:
    """Each broken rule as '<module> imports <name>: <rule>'."""
    out: list[str] = []

    def bad(name: str, rule: str) -> None:
        out.append(f"{module} imports {name}: {rule}")

    is_edge = module in GRPC_EDGE or under(module, "federation.proto")
    for name in sorted(imported):
        if under(module, "crypto"):
            hit = next((p for p in CRYPTO_FORBIDDEN if under(name, p)), None)
            if hit:
                bad(name, f"crypto is pure maths and may not use {hit}")
        if any(under(name, p) for p in GRPC_PREFIXES) and not is_edge:
            bad(name, "gRPC/protobuf only at the edge (federation/{grpc_*,wire,cli,nodes})")
        if under(module, "parties") and under(name, "federation") \
                and name != "federation" and not any(under(name, m) for m in PARTIES_MAY_USE):
            bad(name, f"parties may use only {sorted(PARTIES_MAY_USE)} of federation")
        if under(module, "federation") and module not in FEDERATION_ROOTS \
                and under(name, "parties"):
            bad(name, f"only {sorted(FEDERATION_ROOTS)} may import parties")
    return out


def project_modules() -> list[tuple[str, Path]]:
    mods = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mods.append((module_name(path), path))
    return mods


def imports_of_file(path: Path) -> set[str]:
    return imports_of(path.read_text(encoding="utf-8"), module_name(path),
                      is_package=path.name == "__init__.py")


# -- the rules on the real tree --------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_layering(package: str) -> None:
    problems = [v for mod, path in project_modules() if under(mod, package)
                for v in violations(mod, imports_of_file(path))]
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_walker_sees_every_package_and_known_edges() -> None:
    """Guards against a vacuous pass (wrong root, nothing parsed)."""
    mods = dict(project_modules())
    for pkg in PACKAGES:
        assert sum(under(m, pkg) for m in mods) >= 5, pkg
    assert "federation.proto" in imports_of_file(mods["federation.wire"])
    assert "grpc" in imports_of_file(mods["federation.grpc_server"])
    assert "federation.wire" in imports_of_file(mods["federation.grpc_client"])
    assert "federation.dealer" in imports_of_file(mods["parties.local_fit"])
    assert "crypto.ring" in imports_of_file(mods["crypto.beaver"])


# -- the checker itself catches what it should -----------------------------------------


@pytest.mark.parametrize(("module", "source", "needle"), [
    ("crypto.beaver", "from federation.messages import Role", "crypto is pure"),
    ("crypto.ring", "def f():\n    import grpc", "crypto is pure"),
    ("crypto.prg", "import numpy as np\nx = np.random.default_rng()", "numpy.random"),
    ("crypto.psi", "import importlib\nimportlib.import_module('parties.node')", "parties"),
    ("crypto.sharing", "from ..federation import wire", "crypto is pure"),
    ("federation.coordinator", "import grpc", "only at the edge"),
    ("federation.channel", "from federation.proto import vfl_pb2", "only at the edge"),
    ("federation.dealer", "from google.protobuf import message", "only at the edge"),
    ("parties.node", "from federation import wire", "parties may use only"),
    ("parties.local_fit", "from federation.coordinator import Coordinator", "parties may use"),
    ("parties.labels.cli", "from ...federation.nodes import run_party", "parties may use"),
    ("parties.alignment", "import grpc_health.v1", "only at the edge"),
    ("federation.schedule", "from parties.state import Stage", "may import parties"),
])
def test_checker_flags_forbidden_import(module: str, source: str, needle: str) -> None:
    found = violations(module, imports_of(source, module))
    assert any(needle in v for v in found), found


@pytest.mark.parametrize(("module", "source"), [
    ("crypto.beaver", "from crypto.ring import Ring\nimport logging\nimport secrets"),
    ("federation.wire", "import grpc\nfrom federation.proto import vfl_pb2"),
    ("federation.proto.vfl_pb2_grpc", "import grpc"),
    ("parties.local_fit", "from federation.dealer import GRAD\nfrom crypto import correlated"),
    ("parties.node", "from federation import errors, messages\nfrom . import metrics"),
    ("federation.nodes", "from parties.node import PartyNode"),
])
def test_checker_allows_permitted_import(module: str, source: str) -> None:
    assert violations(module, imports_of(source, module)) == []
