"""detector.frames: one geometry, boxes mapped both ways as torchvision's resize does."""

from __future__ import annotations

import numpy as np
import pytest

from detector import anchor_grids


def test_frames_round_trip(mobilenet):
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(mobilenet), (300, 200))
    boxes = np.array([[10.0, 20.0, 110.0, 90.0], [0.0, 0.0, 300.0, 200.0]])
    inp = grid.frame.to_input(boxes).numpy()
    assert inp[1].tolist() == pytest.approx([0, 0, grid.resized_size[0], grid.resized_size[1]], abs=1e-3)
    assert grid.frame.to_original(inp).numpy() == pytest.approx(boxes, abs=1e-3)
