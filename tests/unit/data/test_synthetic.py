"""detector.data.synthetic: the synthetic writer is deterministic by seed."""

from __future__ import annotations

from detector.data import load_dataset
from detector.data.synthetic import write_synthetic


def test_synthetic_writer_is_deterministic_by_seed(tmp_path):
    a = load_dataset(write_synthetic(tmp_path / "a", images=4, seed=9, width=64, height=48))
    b = load_dataset(write_synthetic(tmp_path / "b", images=4, seed=9, width=64, height=48))
    c = load_dataset(write_synthetic(tmp_path / "c", images=4, seed=10, width=64, height=48))
    assert a.records == b.records and a.records != c.records
