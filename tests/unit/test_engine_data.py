"""Which images train and which validate."""

from __future__ import annotations

import dataclasses

from detector.data.synthetic import write_synthetic
from detector.engine import load_training_data
from detector.train_config import TrainConfig


def test_a_separate_validation_set_lets_every_dataset_image_train(tmp_path):
    write_synthetic(tmp_path / "train", images=10, seed=5, format="coco", width=96, height=72)
    write_synthetic(tmp_path / "val", images=4, seed=6, format="coco", width=96, height=72)
    base = TrainConfig(data=str(tmp_path / "train"), decode_check=False)
    own_split = load_training_data(base)
    assert len(own_split.train) + len(own_split.val) == 10 and len(own_split.val) > 0
    separate = load_training_data(dataclasses.replace(base, val_data=str(tmp_path / "val")))
    assert len(separate.train) == 10 and len(separate.val) == 4
