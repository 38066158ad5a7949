"""TrainConfig: every field explains itself (the training form shows it), and the schedule gives
short runs steps at the full learning rate."""

from __future__ import annotations

import json
import os
from dataclasses import fields

import pytest

from detector.engine import lr_factor
from detector.train_config import MAX_AUTO_WORKERS, TrainConfig, auto_workers


def test_every_field_has_a_one_line_help():
    for f in fields(TrainConfig):
        text = f.metadata.get("help", "")
        assert text and "\n" not in text, f"TrainConfig.{f.name} needs a one-line help in its metadata"


@pytest.mark.parametrize("epochs, per_epoch", [(1, 6), (2, 6), (2, 50), (3, 8), (5, 12), (12, 100)])
@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_short_runs_train_at_full_lr_after_a_scaled_warm_up(epochs, per_epoch, schedule):
    config = TrainConfig(epochs=epochs, schedule=schedule)
    factor = lr_factor(config, per_epoch)
    values = [factor(it) for it in range(epochs * per_epoch)]
    warmup = config.warmup_steps(per_epoch)
    first_drop = min(config.milestones()) * per_epoch if schedule == "step" else epochs * per_epoch
    assert warmup <= first_drop // 4
    assert all(v < 1.0 for v in values[:warmup])  # the ramp
    if schedule == "step":
        full = [v for v in values[:first_drop] if v == pytest.approx(1.0)]
        assert len(full) >= first_drop - warmup >= 0.75 * first_drop  # most of the run before the drop
        assert all(v == pytest.approx(0.1) for v in values[first_drop: config.milestones()[-1] * per_epoch])
    else:
        import math

        total = epochs * per_epoch  # after the ramp, the plain cosine from full lr
        assert values[warmup] == pytest.approx(0.5 * (1 + math.cos(math.pi * warmup / total)))


def test_two_epochs_no_longer_warm_up_into_the_first_drop():
    """The case seen in the browser: 2 epochs, the warm-up used to last the whole first epoch,
    which is also where the step schedule drops lr 10x."""
    config = TrainConfig(epochs=2)
    assert config.milestones() == (1, 2)
    assert config.warmup_steps(20) == 5  # was 19: min(1000, one epoch - 1)
    factor = lr_factor(config, 20)
    assert [factor(it) for it in range(5, 20)] == [1.0] * 15


def test_long_runs_keep_the_reference_warm_up():
    config = TrainConfig(epochs=26)
    assert config.warmup_steps(2000) == 1000 and config.warmup_steps(400) == 399


# ---------------------------------------------------------------- speed switches and "auto"


def test_auto_values_round_trip_through_config_json():
    config = TrainConfig(batch_size="auto", workers="auto", amp_dtype="bfloat16", channels_last=True,
                         cudnn_benchmark=True, fused_optimizer=False, compile_backbone=True, prefetch_factor=4,
                         pin_memory=False, persistent_workers=False)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig().workers == "auto" and TrainConfig().batch_size == 4


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("batch_size", "largest"), ("batch_size", 2.5),
                                          ("workers", -1), ("workers", "many"), ("amp_dtype", "fp8"),
                                          ("prefetch_factor", 0), ("batch_size", True)])
def test_bad_speed_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field.replace("_", " ") if field == "batch_size" else field):
        TrainConfig.from_dict({field: value})


def test_auto_workers_share_this_process_cores_and_leave_one_for_the_loop():
    cores = len(os.sched_getaffinity(0))
    assert auto_workers() == max(0, min(cores - 1, MAX_AUTO_WORKERS))
    assert auto_workers(processes=cores) == 0  # one core per training process: load in the process itself
    assert TrainConfig(workers="auto").resolved_workers() == auto_workers()
    assert TrainConfig(workers=3).resolved_workers(processes=8) == 3


def test_the_learning_rate_waits_for_an_auto_batch_to_be_resolved():
    with pytest.raises(ValueError, match="resolved"):
        TrainConfig(batch_size="auto").base_lr()
    assert TrainConfig(batch_size="auto").replace(batch_size=32).base_lr() == pytest.approx(0.04)
    assert TrainConfig(batch_size="auto", lr=0.01).base_lr() == 0.01


def test_config_round_trips_through_json_and_checks_fields():
    config = TrainConfig(data="d", epochs=3, lr_steps=(2,), model_kwargs={"min_size": 128})
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.from_dict({"data": "d", "learning_rate": 1})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs").checked()
