"""detector.hard_examples: the hardest validation images, by loss or by their own AP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.hard_examples import ScoredImage, hardest


def _scored(name: str, loss: float, ap: float | None) -> ScoredImage:
    z = np.zeros((0, 4), np.float32)
    losses = {"loss_classifier": loss, "loss_box_reg": 0.0, "loss_objectness": 0.0, "loss_rpn_box_reg": 0.0}
    return ScoredImage(name, Path("."), 10, 10, losses, ap, ap, z, np.zeros(0, np.int64), z, np.zeros(0), np.zeros(0))


def test_hardest_ranks_by_loss_or_by_own_ap():
    images = [_scored("a", 0.5, 0.9), _scored("b", 2.0, 0.6), _scored("c", 1.0, None), _scored("d", 0.1, 0.1)]
    assert [s.file for s in hardest(images, "loss", k=3)] == ["b", "c", "a"]
    assert [s.file for s in hardest(images, "ap", k=3)] == ["d", "b", "a"]  # no ground truth: no AP, left out
    with pytest.raises(ValueError):
        hardest(images, "nonsense")
