"""Test-wide set-up: an empty workspace and an empty torch cache, so no test sees the user's
files or cached weights, and nothing can reach the network by accident."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="detector-tests-"))
os.environ["DETECTOR_WORKSPACE"] = str(_SESSION_TMP / "workspace")
os.environ["TORCH_HOME"] = str(_SESSION_TMP / "torch-home")  # empty: no pretrained weights, ever
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    """A folder shared by the whole session (models, datasets built once)."""
    return _SESSION_TMP


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same RNG state, and leaves it as it found it."""
    import random

    import numpy as np
    import torch

    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


@pytest.fixture(scope="session")
def tiny_checkpoint(session_tmp) -> Path:
    """A small random-weight checkpoint that always detects something (box_score_thresh=0).

    Architecture DEMO_ARCH at min_size 128, classes circle/rectangle/triangle, at most 5
    detections per image: fast on CPU, and usable as a `model` source by pages and the CLI.
    """
    import torch

    from detector import checkpoints, models

    path = session_tmp / "tiny-checkpoint.pt"
    if not path.exists():
        torch.manual_seed(1)
        kwargs = {"min_size": 128, "max_size": 160, "box_score_thresh": 0.0, "box_detections_per_img": 5}
        model = models.build_model(models.DEMO_ARCH, ("circle", "rectangle", "triangle"), **kwargs)
        checkpoints.save_checkpoint(path, model, models.DEMO_ARCH, ("circle", "rectangle", "triangle"), kwargs)
    return path
