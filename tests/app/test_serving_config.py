"""The shipped Streamlit config keeps the team-serving rules (README, "Serving for a team")."""

from __future__ import annotations

import pytest

from tests.app.conftest import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def test_loopback_xsrf_on_and_a_measured_upload_limit():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"  # binding beyond loopback is the user's explicit choice
    assert server["enableXsrfProtection"] is True
    # 2.4 MB of server memory per uploaded MB (BENCHMARKS.md): an upload stays near 1 GB of memory
    assert 2.4 * server["maxUploadSize"] <= 1024
    readme = (ROOT / "README.md").read_text()
    assert "## Serving for a team" in readme and "oauth2-proxy" in readme and "enableXsrfProtection" in readme
