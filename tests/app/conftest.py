"""AppTest helpers: scripts are addressed from the repository root."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def app_test(script: str = "app.py", timeout: float = 120) -> AppTest:
    """AppTest for `script` (a path relative to the repository root, e.g. "pages/rpn.py")."""
    return AppTest.from_file(str(ROOT / script), default_timeout=timeout)
