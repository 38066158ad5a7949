"""detector.training_data: batches grouped by aspect ratio, equal per rank, resumable."""

from __future__ import annotations

from detector import training_data


def test_grouped_batches_are_equal_per_rank_homogeneous_and_resumable():
    groups = [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0]
    samplers = [training_data.GroupedBatchSampler(groups, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    batches = [s.batches() for s in samplers]
    assert len(batches[0]) == len(batches[1]) == len(samplers[0]) == 3
    seen = [i for b in batches for batch in b for i in batch]
    assert set(seen) == set(range(len(groups)))  # every image, one padded repeat at most
    full = [b for b in batches[0] if len(b) == 2]
    assert all(len({groups[i] for i in b}) == 1 for b in full[:-1])
    samplers[0].set_epoch(1, skip=2)
    assert list(samplers[0]) == batches[0][2:]
    samplers[0].set_epoch(2)
    assert samplers[0].batches() != batches[0]  # reshuffled per epoch
