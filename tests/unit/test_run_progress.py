"""detector.run_progress: steps per epoch and time left from the metrics lines."""

from __future__ import annotations

import pytest

from detector.run_progress import estimate_progress, format_duration


def _rows(n: int, per_epoch: int, dt: float = 0.5) -> list[dict]:
    return [{"kind": "train", "epoch": 1 + (i - 1) // per_epoch, "step": i, "time": i * dt, "images_per_s": 4.0,
             "lr": 0.01, "loss": 4.0 / i, "loss_classifier": 1.0 / i, "loss_box_reg": 1.0 / i,
             "loss_objectness": 1.0 / i, "loss_rpn_box_reg": 1.0 / i} for i in range(1, n + 1)]


def test_progress_counts_steps_per_epoch_and_time_left():
    p = estimate_progress(_rows(7, per_epoch=3), epochs=4)
    assert (p.epoch, p.step, p.steps_per_epoch, p.total_steps) == (3, 7, 3, 12)
    assert p.seconds_per_step == pytest.approx(0.5)
    assert p.eta_s == pytest.approx((12 - 7) * 0.5)
    assert p.fraction == pytest.approx(7 / 12)
    # before an epoch is complete only a hint can say how long an epoch is
    early = estimate_progress(_rows(2, per_epoch=3), epochs=4)
    assert early.steps_per_epoch is None and early.eta_s is None
    assert estimate_progress(_rows(2, per_epoch=3), epochs=4, steps_per_epoch_hint=3).total_steps == 12
    assert estimate_progress([], epochs=4).step == 0
    assert format_duration(3725) == "1 h 02 min" and format_duration(65) == "1 min 05 s" and format_duration(None) == "—"
