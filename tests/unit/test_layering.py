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
