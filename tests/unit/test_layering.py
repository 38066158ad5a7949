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


def test_importing_detector_never_imports_streamlit():
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_training_engine_imports_neither_streamlit_nor_plotly():
    engine_modules = [m for m in _modules() if not m.startswith("detector.viz")]
    code = (
        "import importlib, sys\n"
        f"for name in {engine_modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('streamlit', 'plotly') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
