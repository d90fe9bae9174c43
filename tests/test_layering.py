"""Who may import whom, checked on the source with ``ast`` (docs/design.md, "Layout").

The folders are the layers, bottom to top; a module imports only its own layer or below:

1. ``crypto`` -- pure maths: nothing from ``federation`` or ``parties``, no gRPC / protobuf, no
   sockets or subprocesses, no ``random`` / ``numpy.random`` (masks come from the AES-CTR PRG).
2. ``federation.protocol`` -- messages, settings, schedule, errors, codec: ``crypto`` and itself.
3. ``federation.transport`` -- channel, gRPC, certificates, audit log: adds ``federation.proto``
   and gRPC; never ``parties`` nor the top of ``federation``.
4. ``parties`` -- the party node: ``crypto``, ``federation.protocol``, ``federation.transport``;
   never gRPC itself. ``parties.labels`` and ``parties.evaluation`` import nothing from
   ``federation`` and nothing of the party protocol (only each other's room and ``crypto``).
5. ``federation`` top level -- coordinator, dealers and the composition roots; nothing below
   imports it.

gRPC, ``google.protobuf`` and the generated ``federation.proto`` are used only in
``federation.transport`` and the top-level modules that register services (``GRPC_ROOTS``).
Besides, no two modules import each other in a cycle, and no hand-written module (generated
``federation.proto`` and ``tests/`` aside) is longer than ``MAX_LINES``.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``, relative,
and ``importlib.import_module("literal")`` / ``__import__("literal")``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crypto", "parties", "federation")
SIZE_CHECKED = (*PACKAGES, "bench", "examples")
MAX_LINES = 400

GRPC_PREFIXES = ("grpc", "grpc_health", "grpc_reflection", "grpc_status", "grpc_tools",
                 "google.protobuf", "federation.proto")
GRPC_ROOTS = {f"federation.{m}" for m in ("nodes", "serve", "serve_services")}
CRYPTO_FORBIDDEN = ("federation", "parties", "socket", "subprocess", "http", "urllib",
                    "requests", "random", "numpy.random") + GRPC_PREFIXES
PURE_ROOMS = ("parties.labels", "parties.evaluation")
# Documents that lie beside the repository, never in it (spelled so this file is no hit).
OUTSIDE = ("DESIGN" + ".md", "STYLE" + ".md", "../" + "shared")
BELOW_TOP = ("federation.protocol", "federation.transport", "federation.proto")


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer(module: str) -> str:
    """The room a project module lives in (its layer's name)."""
    for room in ("crypto", "federation.protocol", "federation.transport", "federation.proto",
                 *PURE_ROOMS, "parties"):
        if under(module, room):
            return room
    return "federation" if under(module, "federation") else "outside"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
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
            # ``from federation.transport import wire`` imports the submodule
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
    room = layer(module)

    def bad(name: str, rule: str) -> None:
        out.append(f"{module} imports {name}: {rule}")

    grpc_ok = room in ("federation.transport", "federation.proto") or module in GRPC_ROOTS
    for name in sorted(imported):
        if room == "crypto":
            hit = next((p for p in CRYPTO_FORBIDDEN if under(name, p)), None)
            if hit:
                bad(name, f"crypto is pure maths and may not use {hit}")
        if any(under(name, p) for p in GRPC_PREFIXES) and not grpc_ok:
            bad(name, "gRPC/protobuf only in federation.transport and the service roots "
                f"{sorted(GRPC_ROOTS)}")
        target = layer(name)
        if name in ("federation", "parties") or target == "outside":
            continue
        if room == "federation.protocol" and target not in ("crypto", "federation.protocol"):
            bad(name, "federation.protocol may use only crypto and itself")
        if room == "federation.transport" and target in ("parties", *PURE_ROOMS, "federation"):
            bad(name, "federation.transport may use only crypto, protocol and federation.proto")
        if room in PURE_ROOMS and target != room and target != "crypto" \
                and target not in PURE_ROOMS:
            bad(name, f"{room} imports nothing from federation or the party protocol")
        if room == "parties" and target == "federation":
            bad(name, "parties may use only federation.protocol and federation.transport")
        if room in ("crypto", *BELOW_TOP) and target in ("parties", *PURE_ROOMS):
            bad(name, f"{room} is below parties")
    return out


def project_modules(root: Path = ROOT,
                    packages: tuple[str, ...] = PACKAGES) -> list[tuple[str, Path]]:
    mods = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            mods.append((module_name(path, root), path))
    return mods


def imports_of_file(path: Path, root: Path = ROOT) -> set[str]:
    return imports_of(path.read_text(encoding="utf-8"), module_name(path, root),
                      is_package=path.name == "__init__.py")


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def module_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's own ``__init__`` excluded)."""
    mods = dict(project_modules(root, packages))
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        graph[mod] = {name for name in imports_of_file(path, root)
                      if name in mods and name != mod and not mod.startswith(name + ".")}
    return graph


def oversized(root: Path = ROOT, folders: tuple[str, ...] = SIZE_CHECKED) -> list[str]:
    out = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            if rel.parts[:2] == ("federation", "proto"):
                continue  # generated by protoc
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                out.append(f"{rel}: {n} lines")
    return out


# -- the rules on the real tree --------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_layering(package: str) -> None:
    problems = [v for mod, path in project_modules() if under(mod, package)
                for v in violations(mod, imports_of_file(path))]
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    cycles = import_cycles(module_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_hand_written_module_over_the_size_limit() -> None:
    too_big = oversized()
    assert not too_big, f"modules over {MAX_LINES} lines (split by concern):\n" + \
        "\n".join(too_big)


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    missing = []
    for pkg in PACKAGES:
        for init in sorted((ROOT / pkg).rglob("__init__.py")):
            if init.parent.name == "proto":
                continue
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
            if not doc or "import" not in doc.lower():
                missing.append(str(init.relative_to(ROOT)))
    assert not missing, "package docstrings missing or silent on imports: " + ", ".join(missing)


def test_no_reference_to_files_outside_the_repository() -> None:
    hits = []
    for folder in (*SIZE_CHECKED, "tests", "protos", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md", ".proto", ".toml") or ".venv" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            for needle in OUTSIDE:
                if needle in text:
                    hits.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)


def test_walker_sees_every_package_and_known_edges() -> None:
    """Guards against a vacuous pass (wrong root, nothing parsed)."""
    mods = dict(project_modules())
    for pkg in PACKAGES:
        assert sum(under(m, pkg) for m in mods) >= 5, pkg
    assert "federation.proto" in imports_of_file(mods["federation.transport.wire"])
    assert "grpc" in imports_of_file(mods["federation.transport.grpc_server"])
    assert "federation.transport.wire" in imports_of_file(mods["federation.transport.grpc_client"])
    assert "federation.protocol.products" in imports_of_file(mods["parties.local_fit"])
    assert "crypto.ring" in imports_of_file(mods["crypto.beaver"])
    assert module_graph()["federation.cli"], "the graph of federation.cli is empty"


# -- the checker itself catches what it should -----------------------------------------


@pytest.mark.parametrize(("module", "source", "needle"), [
    ("crypto.beaver", "from federation.protocol.messages import Role", "crypto is pure"),
    ("crypto.ring", "def f():\n    import grpc", "crypto is pure"),
    ("crypto.prg", "import numpy as np\nx = np.random.default_rng()", "numpy.random"),
    ("crypto.psi", "import importlib\nimportlib.import_module('parties.node')", "parties"),
    ("crypto.sharing", "from ..federation import wire", "crypto is pure"),
    ("federation.coordinator", "import grpc", "only in federation.transport"),
    ("federation.protocol.messages", "from federation.proto import vfl_pb2", "gRPC"),
    ("federation.protocol.messages", "from federation.transport.channel import Inbox",
     "federation.protocol may use only"),
    ("federation.protocol.schedule", "from parties.state import Stage", "may use only"),
    ("federation.transport.grpc_server", "from federation.coordinator import Coordinator",
     "federation.transport may use only"),
    ("federation.transport.channel", "from ..simulate import run_simulation",
     "federation.transport may use only"),
    ("federation.transport.audit", "from parties.node import PartyNode", "below parties"),
    ("federation.dealer", "from google.protobuf import message", "only in federation.transport"),
    ("parties.node", "from federation import simulate", "parties may use only"),
    ("parties.local_fit", "from federation.coordinator import Coordinator", "parties may use"),
    ("parties.local_fit", "from federation.dealer import GRAD", "parties may use"),
    ("parties.labels.cli", "from ...federation.nodes import run_party", "imports nothing"),
    ("parties.labels.features", "from federation.protocol.errors import VflError",
     "imports nothing"),
    ("parties.evaluation.plots", "from parties.node import PartyNode", "imports nothing"),
    ("parties.evaluation.metrics", "from federation.transport import wire", "imports nothing"),
    ("parties.alignment", "import grpc_health.v1", "only in federation.transport"),
])
def test_checker_flags_forbidden_import(module: str, source: str, needle: str) -> None:
    found = violations(module, imports_of(source, module))
    assert any(needle in v for v in found), found


@pytest.mark.parametrize(("module", "source"), [
    ("crypto.beaver", "from crypto.ring import Ring\nimport logging\nimport secrets"),
    ("federation.transport.wire", "import grpc\nfrom federation.proto import vfl_pb2"),
    ("federation.transport.grpc_client", "from federation.protocol import messages"),
    ("federation.proto.vfl_pb2_grpc", "import grpc"),
    ("parties.local_fit", "from federation.protocol.products import GRAD\n"
                          "from crypto import correlated"),
    ("parties.node", "from federation.transport import channel\nfrom .evaluation import metrics"),
    ("parties.evaluation.scorecard", "from .metrics import EPS\nfrom crypto.ring import Ring"),
    ("parties.labels.cli", "from parties.evaluation import metrics"),
    ("federation.nodes", "from parties.node import PartyNode\nimport grpc"),
    ("federation.simulate", "from federation.transport.certs import write_federation"),
])
def test_checker_allows_permitted_import(module: str, source: str) -> None:
    assert violations(module, imports_of(source, module)) == []


def _plant(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp


def test_a_planted_cycle_and_a_planted_oversized_module_are_found(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "federation/__init__.py": "",
        "federation/a.py": "from federation import b\n",
        "federation/b.py": "def f():\n    from federation.c import g\n",
        "federation/c.py": "import federation.a\n",
        "federation/d.py": "from federation import a\n",
        "bench/big.py": "x = 1\n" * (MAX_LINES + 1),
    })
    cycles = import_cycles(module_graph(root, ("federation",)))
    assert cycles == [["federation.a", "federation.b", "federation.c"]]
    assert oversized(root, ("bench",)) == [f"bench/big.py: {MAX_LINES + 1} lines"]


def test_a_planted_violation_in_a_tree_fails_the_walk(tmp_path: Path) -> None:
    files = {
        "parties/__init__.py": "",
        "parties/evaluation/__init__.py": "",
        "parties/evaluation/plots.py": "from parties.evaluation import metrics\n",
        "parties/evaluation/metrics.py": "import numpy as np\n",
    }

    def walk(root: Path) -> list[str]:
        return [v for mod, path in project_modules(root, ("parties",))
                for v in violations(mod, imports_of_file(path, root))]

    assert walk(_plant(tmp_path / "clean", files)) == []
    files["parties/evaluation/plots.py"] += "from federation.simulate import run_simulation\n"
    problems = walk(_plant(tmp_path / "planted", files))
    assert problems
    assert all(p.startswith("parties.evaluation.plots imports federation.simulate")
               and "imports nothing from federation" in p for p in problems), problems
