"""The library stays free of the UI: importing every detector module leaves streamlit (and,
outside detector.viz, plotly) unloaded."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import detector

ROOT = Path(__file__).resolve().parents[2]


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(detector.__path__, "detector.") if m.name != "detector.__main__")


def _loaded_after_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded after importing `modules`."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {watched!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip())  # noqa: S307 - our own printed list


def test_importing_detector_never_imports_streamlit():
    assert _loaded_after_importing(_modules(), ("streamlit",)) == []


def test_training_engine_imports_neither_streamlit_nor_plotly():
    engine_modules = [m for m in _modules() if not m.startswith("detector.viz")]
    assert _loaded_after_importing(engine_modules, ("streamlit", "plotly")) == []


# ---------------------------------------------------------------- the import graph of detector/

# From the top down; a module may import its own layer or the ones below it, never one above.
# Everything in detector/ not named here is the library, the bottom layer; above detector/ stand
# ui/ and pages/ (and streamlit), which no detector module may import.
LAYERS = ("detector.__main__", "detector.cli", "detector.viz")
ABOVE_DETECTOR = ("ui", "pages", "app", "streamlit")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module `path` imports, at module level or inside a function: detector modules by their
    full name (`from detector import runs` -> detector.runs), others by their top-level name."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name if a.name.startswith("detector") else a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("detector"):
                found.add(node.module.split(".")[0])
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found.update(subs or {node.module})
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (ROOT / "detector").rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _layer(module: str) -> int:
    """0 for the top layer, len(LAYERS) for the library."""
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return len(LAYERS)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_of_detector_has_no_cycle():
    graph = _graph()
    assert len(graph) > 40 and "detector.engine" in graph and "detector.runs" in graph["detector.engine"]
    assert _cycles(graph) == []


def test_no_import_points_up_the_layers():
    up = sorted(f"{m} -> {target}" for m, targets in _graph().items() for target in targets
                if target.split(".")[0] in ABOVE_DETECTOR
                or (target.startswith("detector") and _layer(target) < _layer(m)))
    assert up == []


def test_the_cycle_finder_finds_cycles():
    """The checker itself: a two-module cycle and a longer one are found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
