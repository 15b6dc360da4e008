"""The shape of the package, read from its source (issue 12): small modules, imports that flow
one way, no cycles.

* No module of ``metaq_fast/`` is over ``MODULE_LINES_MAX`` lines.
* The sans-IO layers (``protocol/``, ``message``, ``storage/``) import no socket, asyncio,
  selectors or kazoo, and nothing of ``broker``, ``client``, ``zk``, ``benchtool`` or ``cli``:
  they stay testable and reusable without a network or a ZooKeeper.
* The import graph between the package's modules (every import, also those inside functions)
  has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "metaq_fast"
MODULE_LINES_MAX = 700
SANS_IO = ("metaq_fast.protocol", "metaq_fast.message", "metaq_fast.storage")
FORBIDDEN_FOR_SANS_IO = ("socket", "asyncio", "selectors", "kazoo", "metaq_fast.broker",
                         "metaq_fast.client", "metaq_fast.zk", "metaq_fast.benchtool",
                         "metaq_fast.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, relative imports resolved to absolute names; ``from X
    import Y`` counts as X.Y too when X.Y is a module (the caller filters)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        graph[name] = {m for m in imports_of(name, path) if m in mods and m != name}
    return graph


def test_modules_are_at_most_700_lines():
    too_long = {name: n for name, path in modules().items()
                if (n := len(path.read_text().splitlines())) > MODULE_LINES_MAX}
    assert not too_long, f"modules over {MODULE_LINES_MAX} lines: {too_long}"


@pytest.mark.parametrize("layer", SANS_IO)
def test_sans_io_layers_import_no_io_and_no_upper_layer(layer):
    offenders = {}
    for name, path in modules().items():
        if name != layer and not name.startswith(layer + "."):
            continue
        bad = sorted(m for m in imports_of(name, path)
                     if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_FOR_SANS_IO))
        if bad:
            offenders[name] = bad
    assert modules().keys() & {layer} or any(n.startswith(layer + ".") for n in modules())
    assert not offenders, f"{layer} must stay sans-IO: {offenders}"


def test_import_graph_has_no_cycle():
    graph = package_graph()
    # A package imports its own submodules (its public face re-exports them); that edge and the
    # submodule's import of a sibling through the package are one module, not a cycle.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_the_package():
    """The walk finds the modules it is meant to judge (a moved package would pass vacuously)."""
    graph = package_graph()
    assert {"metaq_fast.protocol", "metaq_fast.storage.segment", "metaq_fast.client.consumer",
            "metaq_fast.broker.worker", "metaq_fast.zk.registry"} <= graph.keys()
    assert "metaq_fast.client.fetcher" in graph["metaq_fast.client.consumer"]
