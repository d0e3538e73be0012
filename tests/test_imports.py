"""The project's modules import each other without cycles, counting imports made inside functions
(a lazy import hides a cycle from Python, not from a reader). Also checks the house rules of
docs/architecture.md: workers/ never imports orchestrator/, workers/symmetry imports no other part of
the project, and the training loop has no ray import. And the tests' own layout: no test module imports another, and
fixtures are never defined in a helper module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports (the longest known prefix of each imported name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            parts = target.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in known:
                    if candidate != name:
                        found.add(candidate)
                    break
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how Python packages work, not a cycle
    return {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_project_modules():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_house_rules():
    graph = _graph()
    for name, targets in graph.items():
        if name.startswith("workers"):
            assert not any(t.startswith("orchestrator") for t in targets), (name, targets)
        if name.startswith("workers.symmetry"):
            assert all(t.startswith("workers.symmetry") for t in targets), (name, targets)
    loop = {n: p for n, p in _modules().items() if n.startswith("workers.") and not n.startswith("workers.trial")}
    for name, path in loop.items():
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(m == "ray" or m.startswith("ray.") for m in names), f"{name} imports ray"


# -- the tests' own layout -----------------------------------------------------------------------------------
def _imported_modules(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports (inside functions too), relative imports resolved, ``from a import b`` as both
    ``a`` and ``a.b``."""
    package = ".".join(path.relative_to(root).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def _test_modules_imported(root: Path) -> dict[str, list[str]]:
    """Module of tests/ -> the test modules (``tests.….test_*``) it imports."""
    found = {}
    for path in sorted((root / "tests").rglob("*.py")):
        names = sorted(name for name in _imported_modules(path, root)
                       if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"))
        if names:
            found[path.relative_to(root).as_posix()] = names
    return found


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or \
        (isinstance(target, ast.Name) and target.id == "fixture")


def _fixtures_in_helper_modules(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "tests").rglob("*.py")):
        if path.name == "conftest.py" or path.name.startswith("test_"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(map(_is_fixture, node.decorator_list)):
                found.append(f"{path.relative_to(root).as_posix()}::{node.name}")
    return found


def test_no_test_module_imports_another():
    """Shared code lives in plain helper modules (``helpers.py``, ``fakes.py``, ``sweeps.py``) and shared fixtures in
    conftest files: importing a test module would run its tests twice and activate its autouse fixtures unseen."""
    assert _test_modules_imported(ROOT) == {}


def test_helper_modules_define_no_fixtures():
    """Fixtures live in conftest files (shared) or in the test module that uses them, never in a module imported
    for its helpers (an autouse fixture there would be activated by the import)."""
    assert _fixtures_in_helper_modules(ROOT) == []


def test_the_layout_checks_find_what_they_look_for(tmp_path):
    folder = tmp_path / "tests" / "x"
    folder.mkdir(parents=True)
    (folder / "helpers.py").write_text("import pytest\n\n\n@pytest.fixture(autouse=True)\ndef f():\n    yield\n")
    (folder / "test_a.py").write_text("def g():\n    from .test_b import h\n    from tests.x import test_c\n")
    (folder / "test_d.py").write_text("from tests.x.helpers import f\n")
    assert _test_modules_imported(tmp_path) == {"tests/x/test_a.py": ["tests.x.test_b", "tests.x.test_c"]}
    assert _fixtures_in_helper_modules(tmp_path) == ["tests/x/helpers.py::f"]
