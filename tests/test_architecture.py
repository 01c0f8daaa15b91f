"""The package's architecture, checked on its source (no imports executed).

* the import graph of ``src/ddpmdp`` (every ``import`` / ``from … import`` statement, also inside
  functions; ``if TYPE_CHECKING:`` blocks excluded) has no cycle;
* the paper's core (the modules directly in ``ddpmdp/``) never imports ``ddpmdp.book``,
  ``ddpmdp.cli``, ``ddpmdp.training`` or ``ddpmdp.fid``;
* no module imports a private (``_name``) of another module;
* no module is over 400 lines, except the network definitions in ``ddpmdp/models/nets``;
* ``ddpmdp.book`` is layered by role: ``reporting`` imports neither ``runtime`` nor ``experiments``,
  ``runtime`` does not import ``experiments``, and the package ``ddpmdp.book`` itself imports nothing
  (notebooks import named modules).

The checkers are plain functions, tested on small planted graphs so that each test can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ddpmdp"
UPPER = ("ddpmdp.book", "ddpmdp.cli", "ddpmdp.training", "ddpmdp.fid")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(path: Path, modules: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import statement of ddpmdp modules in ``path``."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
            for n in ast.walk(node) if n is not node.test}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "ddpmdp"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ddpmdp":
            assert node.level == 0, f"{path}: relative import (use absolute ddpmdp.… imports)"
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
            out += [(s, []) for s in subs]
            rest = [n for n in names if f"{node.module}.{n}" not in modules]
            if rest:
                out.append((node.module, rest))
    return out


def source_files() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    mods = set(files)
    return {m: {dep for dep, _ in imports_of(p, mods) if dep in mods and dep != m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def is_core(module: str) -> bool:
    """A module directly in ``ddpmdp/`` (not a subpackage; ``__main__`` is the CLI's entry point)."""
    return module.count(".") == 1 and module != "ddpmdp.__main__" and (PKG / f"{module.split('.')[1]}.py").is_file()


def core_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} imports {d}" for m, deps in sorted(graph.items()) if is_core(m)
            for d in sorted(deps) if d.startswith(UPPER)]


BOOK_LAYERS = ("reporting", "runtime", "experiments")
"""``ddpmdp.book``'s roles, lowest first: a module may import its own layer and those below it."""


def book_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a ``ddpmdp.book`` role into a higher one (see :data:`BOOK_LAYERS`), and any
    ``ddpmdp`` import of the ``ddpmdp.book`` package itself."""
    def layer(m: str) -> int | None:
        parts = m.split(".")
        return BOOK_LAYERS.index(parts[2]) if len(parts) > 2 and parts[:2] == ["ddpmdp", "book"] \
            and parts[2] in BOOK_LAYERS else None

    out = [f"ddpmdp.book imports {d}" for d in sorted(graph.get("ddpmdp.book", ()))]
    for m, deps in sorted(graph.items()):
        lm = layer(m)
        out += [f"{m} imports {d}" for d in sorted(deps) if lm is not None and (ld := layer(d)) is not None and ld > lm]
    return out


def test_cycle_finder_and_core_rule_can_fail():
    planted = {"ddpmdp.a": {"ddpmdp.b"}, "ddpmdp.b": {"ddpmdp.c"}, "ddpmdp.c": {"ddpmdp.a"}}
    assert find_cycle(planted) == ["ddpmdp.a", "ddpmdp.b", "ddpmdp.c", "ddpmdp.a"]
    assert find_cycle({"ddpmdp.a": {"ddpmdp.b"}, "ddpmdp.b": set()}) is None
    assert core_violations({"ddpmdp.table": {"ddpmdp.book.reporting.plotting"}}) == [
        "ddpmdp.table imports ddpmdp.book.reporting.plotting"]
    assert core_violations({"ddpmdp.book.experiments.nll": {"ddpmdp.table"}}) == []
    assert book_violations({"ddpmdp.book.reporting.tables": {"ddpmdp.book.runtime.inputs"},
                            "ddpmdp.book.runtime.inputs": {"ddpmdp.book.experiments.paths", "ddpmdp.table"},
                            "ddpmdp.book.experiments.nll": {"ddpmdp.book.runtime.inputs",
                                                            "ddpmdp.book.reporting.files"},
                            "ddpmdp.book": {"ddpmdp.book.runtime.inputs"}}) == [
        "ddpmdp.book imports ddpmdp.book.runtime.inputs",
        "ddpmdp.book.reporting.tables imports ddpmdp.book.runtime.inputs",
        "ddpmdp.book.runtime.inputs imports ddpmdp.book.experiments.paths"]


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_core_never_imports_book_cli_training_or_fid():
    graph = import_graph()
    assert {m for m in graph if is_core(m)} >= {"ddpmdp.table", "ddpmdp.dp", "ddpmdp.evaluate", "ddpmdp.sampling"}
    assert core_violations(graph) == []


def test_book_roles_are_layered():
    graph = import_graph()
    assert {m.split(".")[2] for m in graph if m.startswith("ddpmdp.book.")} == set(BOOK_LAYERS)
    assert book_violations(graph) == []


def test_no_private_name_is_imported_from_another_module():
    files = source_files()
    bad = [f"{m} imports {dep}.{n}" for m, p in files.items() for dep, names in imports_of(p, set(files))
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert bad == []


@pytest.mark.parametrize("module", sorted(source_files()))
def test_module_size(module):
    path = source_files()[module]
    if module.startswith("ddpmdp.models.nets."):
        pytest.skip("network definitions are exempt")
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (> {MAX_LINES}): split it along its seams"
