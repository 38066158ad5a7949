"""detector.batch_size: the search against a device with a known memory line, and real training
steps on the CPU through a seam that raises the real torch.OutOfMemoryError mid-forward."""

from __future__ import annotations

import pytest
import torch

from detector.batch_size import (
    BatchSizeError,
    restored,
    search_batch_size,
    trial_runner,
    worst_case_indices,
)
from detector.models import DEMO_ARCH, build_model

GIB = 2**30


def device_with(fixed: float, per_image: float, capacity: float):
    """try_batch for a device whose step at batch b allocates fixed + per_image * b bytes."""
    tried: list[int] = []

    def try_batch(b: int) -> int:
        tried.append(b)
        peak = fixed + per_image * b
        if peak > capacity:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {peak - capacity:.0f} bytes")
        return int(peak)

    return try_batch, tried


def test_doubles_then_bisects_and_leaves_headroom_by_the_memory_line():
    try_batch, tried = device_with(2 * GIB, 0.5 * GIB, 80 * GIB)  # fits up to 156 images
    choice = search_batch_size(try_batch, limit=1000, capacity_bytes=80 * GIB, headroom=0.2)
    assert tried[:8] == [2, 4, 8, 16, 32, 64, 128, 256]  # doubling until the first out of memory
    assert choice.first_oom is not None and choice.first_oom > 156 >= choice.largest_fit
    assert choice.first_oom - choice.largest_fit <= max(1, choice.largest_fit // 8)  # bisected to an eighth
    # the largest batch whose line stays under 80 % of capacity: (64 - 2) / 0.5 = 124
    assert choice.batch_size == 124
    assert choice.predicted_peak_bytes == 2 * GIB + 124 * 0.5 * GIB
    assert [t.fits for t in choice.trials] == [t.batch_size <= 156 for t in choice.trials]
    assert "124" in choice.describe() and "out of memory at" in choice.describe()


def test_stops_at_the_limit_and_never_chooses_more_than_fitted():
    try_batch, tried = device_with(1 * GIB, 0.01 * GIB, 80 * GIB)
    choice = search_batch_size(try_batch, limit=20, capacity_bytes=80 * GIB)
    assert tried == [2, 4, 8, 16, 20] and choice.first_oom is None
    assert choice.batch_size == choice.largest_fit == 20
    assert "limit 20" in choice.describe()


def test_without_memory_figures_keeps_a_share_of_the_largest_fit():
    def try_batch(b: int) -> None:
        if b > 10:
            raise torch.OutOfMemoryError("out of memory")

    choice = search_batch_size(try_batch, limit=64, headroom=0.2)
    assert (choice.largest_fit, choice.first_oom, choice.batch_size) == (10, 11, 8)
    assert choice.predicted_peak_bytes is None


def test_a_first_batch_that_does_not_fit_walks_down_and_one_image_too_many_is_an_error():
    try_batch, tried = device_with(1 * GIB, 3 * GIB, 8 * GIB)  # fits 2 images at most
    choice = search_batch_size(try_batch, limit=64, start=8, capacity_bytes=8 * GIB, headroom=0.0)
    assert tried[:3] == [8, 4, 2] and choice.largest_fit == 2 and choice.batch_size == 2
    too_big, _ = device_with(9 * GIB, 1 * GIB, 8 * GIB)
    with pytest.raises(BatchSizeError, match="batch size 1"):
        search_batch_size(too_big, limit=64, capacity_bytes=8 * GIB)


def test_other_errors_are_not_taken_for_out_of_memory():
    def broken(b: int) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        search_batch_size(broken, limit=8)


def test_worst_case_images_are_the_largest_after_the_models_resize():
    # min_size 800, max_size 1333: 640x480 -> 1066x800, 800x1200 -> 800x1200, 100x100 -> 800x800,
    # and a 4000x1000 panorama is capped by its long side: 1333x333, the smallest input of all
    sizes = [(640, 480), (4000, 1000), (100, 100), (800, 1200)]
    assert worst_case_indices(sizes, 800, 1333, 2) == [3, 0]
    assert worst_case_indices(sizes, 800, 1333, 4) == [3, 0, 2, 1]


def _samples(n: int = 3) -> list[tuple[torch.Tensor, dict]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        image = torch.rand(3, 64, 80, generator=g)
        out.append((image, {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])}))
    return out


def test_real_training_steps_on_cpu_through_an_out_of_memory_seam_leave_the_model_untouched():
    model = build_model(DEMO_ARCH, ("a", "b"), min_size=64, max_size=80, rpn_pre_nms_top_n_train=100,
                        rpn_post_nms_top_n_train=50, box_batch_size_per_image=32, rpn_batch_size_per_image=32)
    model.train()
    device = torch.device("cpu")
    # the seam: the backbone's output is computed, then the real out-of-memory error is raised for
    # batches over 5 images, as CUDA raises it mid-forward with activations alive
    seen: list[int] = []

    def out_of_memory_over_5(module, inputs, output):
        seen.append(inputs[0].shape[0])
        if inputs[0].shape[0] > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    handle = model.backbone.register_forward_hook(out_of_memory_over_5)

    def step(m, images, targets):
        optimizer = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
        losses = m(images, targets)
        sum(losses.values()).backward()
        optimizer.step()  # a real update: `restored` must undo it

    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    with restored(model, device):
        choice = search_batch_size(trial_runner(model, _samples(), step, device), limit=12, headroom=0.2)
    handle.remove()
    assert (choice.largest_fit, choice.first_oom, choice.batch_size) == (5, 6, 4)
    assert 6 in seen and max(seen) <= 8  # it reached the seam and never tried past the first failure's double
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a trial step changed the model"
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_choose_batch_size_runs_trial_steps_on_the_datasets_images_and_restores_the_model(tmp_path):
    from detector.batch_size import choose_batch_size
    from detector.data import DetectionDataset, load_dataset
    from detector.data.synthetic import write_synthetic

    data = load_dataset(write_synthetic(tmp_path / "set", images=3, seed=1, width=64, height=48))
    dataset = DetectionDataset(list(data.records), data.root)
    model = build_model(DEMO_ARCH, data.class_names, min_size=48, max_size=64, rpn_pre_nms_top_n_train=50,
                        rpn_post_nms_top_n_train=20, box_batch_size_per_image=16, rpn_batch_size_per_image=16).train()
    shapes: list[tuple[int, ...]] = []

    def step(m, images, targets):
        shapes.extend(tuple(i.shape) for i in images)
        if len(images) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory")
        sum(m(images, targets).values()).backward()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    choice = choose_batch_size(model, dataset, step, torch.device("cpu"), limit=64, headroom=0.0, samples=2)
    assert (choice.largest_fit, choice.first_oom, choice.batch_size) == (3, 4, 3)
    assert set(shapes) == {(3, 48, 64)}  # the dataset's own decoded images, cycled to each batch size
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
