"""Builders, the weights policy offline, and the checkpoint contract."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from detector import checkpoints, models, weights


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    model = models.build_model("fasterrcnn_mobilenet_v3_large_320_fpn", ("cat", "dog"), min_size=128, max_size=128)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    checkpoints.save_checkpoint(path, model, "fasterrcnn_mobilenet_v3_large_320_fpn", ("cat", "dog"),
                           {"min_size": 128, "max_size": 128}, epoch=3, step=np2int())
    return path, model


def np2int():
    import numpy as np

    return np.int64(42)  # a numpy scalar must be stored as a plain int


def test_every_builder_builds_offline_with_the_asked_classes():
    for name in models.MODEL_NAMES:
        m = models.build_model(name, ("a", "b", "c"), min_size=96, max_size=96)
        assert m.roi_heads.box_predictor.cls_score.out_features == 4, name


def test_no_weights_cached_in_tests_and_pretrained_request_fails_fast():
    status = weights.weights_status("fasterrcnn_resnet50_fpn")
    assert not status.cached and "random weights" in status.message
    with pytest.raises(weights.WeightsUnavailable, match="no COCO weights"):
        models.build_model("fasterrcnn_resnet50_fpn", weights="coco")


def test_checkpoint_loads_weights_only_and_into_plain_torchvision(tiny_ckpt):
    path, model = tiny_ckpt
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format_version"] == 1 and ckpt["model"] == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert ckpt["class_names"] == ["cat", "dog"] and ckpt["epoch"] == 3 and ckpt["step"] == 42
    assert type(ckpt["step"]) is int
    plain = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3)
    plain.load_state_dict(ckpt["state_dict"])  # strict: same keys and shapes
    for k, v in model.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k


def test_load_model_rebuilds_the_same_network(tiny_ckpt):
    path, model = tiny_ckpt
    loaded = checkpoints.load_model(path)
    assert loaded.class_names == ("cat", "dog") and loaded.weights == "checkpoint"
    assert loaded.model.transform.min_size == (128,)
    x = [torch.rand(3, 100, 120)]
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.backbone(x[0][None]).popitem()[1], loaded.model.backbone(x[0][None]).popitem()[1])


def test_frozen_batchnorm_and_frozen_parameters_survive_a_checkpoint(tmp_path):
    model = models.build_model(models.DEMO_ARCH, ("a",))
    models.freeze_batchnorm(model.backbone)
    first = next(iter(model.backbone.parameters()))
    first.requires_grad_(False)
    path = checkpoints.save_checkpoint(tmp_path / "f.pt", model, models.DEMO_ARCH, ("a",), half=True)
    back = checkpoints.model_from_checkpoint(checkpoints.read_checkpoint(path))
    assert any(isinstance(m, torchvision.ops.misc.FrozenBatchNorm2d) for m in back.backbone.modules())
    assert not next(iter(back.backbone.parameters())).requires_grad


class NotAllowed:
    pass


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a loadable checkpoint"),
        (b"garbage that is not a zip or pickle", "not a loadable checkpoint"),
        (pickle.dumps(NotAllowed()), "not a loadable checkpoint"),
    ],
    ids=["empty", "garbage", "arbitrary-pickle"],
)
def test_files_that_are_not_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "weird.pt"
    path.write_bytes(content)
    with pytest.raises(checkpoints.CheckpointError, match=f"weird.pt: {message}"):
        checkpoints.load_model(path)


def test_a_bare_state_dict_without_its_architecture_or_a_foreign_dict_is_refused(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3).state_dict(), bare)
    with pytest.raises(checkpoints.CheckpointError, match="bare state_dict records no architecture"):
        checkpoints.load_model(bare)  # with arch= it loads: tests/unit/test_checkpoints.py
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": {"x": torch.zeros(1)}, "step": 3}, foreign)
    with pytest.raises(checkpoints.CheckpointError, match="not a checkpoint this tool reads"):
        checkpoints.load_model(foreign)
    wrong = tmp_path / "wrong.pt"
    torch.save({"format_version": 1, "model": "yolo_v8", "class_names": ["a"], "state_dict": {}}, wrong)
    with pytest.raises(checkpoints.CheckpointError, match="unknown architecture"):
        checkpoints.load_model(wrong)
    mismatch = tmp_path / "mismatch.pt"
    torch.save({"format_version": 1, "model": models.DEMO_ARCH, "class_names": ["a"],
                "state_dict": {"x": torch.zeros(1)}}, mismatch)
    with pytest.raises(checkpoints.CheckpointError, match="weights do not fit"):
        checkpoints.load_model(mismatch)


def test_custom_anchors_replace_the_rpn_head_only_when_the_count_changes():
    m = models.build_model("fasterrcnn_resnet50_fpn", ("a",))
    head = m.rpn.head
    assert models.set_anchors(m, [[32], [64], [128], [256], [512]], [[0.5, 1.0, 2.0]]) is False
    assert m.rpn.head is head
    assert models.set_anchors(m, [[32, 40], [64, 80], [128, 160], [256, 320], [512, 640]], [[0.5, 1.0, 2.0]]) is True
    assert m.rpn.head.cls_logits.out_channels == 6


def test_default_model_without_weights_or_demo_file(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "DEMO_CHECKPOINT", tmp_path / "absent.pt")
    source, why = checkpoints.default_model("cpu")
    assert source == "fasterrcnn_mobilenet_v3_large_320_fpn" and "random weights" in why
