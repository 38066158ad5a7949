"""detector.models: every registered builder builds offline; custom anchors; the registry."""

from __future__ import annotations

import pytest

from detector import models


def test_every_builder_builds_offline_with_the_asked_classes():
    for name in models.MODEL_NAMES:
        m = models.build_model(name, ("a", "b", "c"), min_size=96, max_size=96)
        assert m.roi_heads.box_predictor.cls_score.out_features == 4, name


def test_custom_anchors_replace_the_rpn_head_only_when_the_count_changes():
    m = models.build_model("fasterrcnn_resnet50_fpn", ("a",))
    head = m.rpn.head
    assert models.set_anchors(m, [[32], [64], [128], [256], [512]], [[0.5, 1.0, 2.0]]) is False
    assert m.rpn.head is head
    assert models.set_anchors(m, [[32, 40], [64, 80], [128, 160], [256, 320], [512, 640]], [[0.5, 1.0, 2.0]]) is True
    assert m.rpn.head.cls_logits.out_channels == 6


def test_registry_holds_each_builder_and_one_default():
    assert models.DEFAULT_ARCH in models.ARCHITECTURES and models.GPU_DEFAULT_ARCH in models.ARCHITECTURES
    for name, arch in models.ARCHITECTURES.items():
        assert arch.name == name and callable(arch.build)
    # a new entry is buildable through build_model without touching it
    calls = []

    def build(arch, class_names, pretrained, kwargs):
        calls.append((arch.name, class_names, pretrained, kwargs))
        return models.ARCHITECTURES[models.DEMO_ARCH].build(arch, class_names, pretrained, kwargs)

    entry = models.Architecture("test_only", "a test entry", None, "none", "fast", build)
    models.ARCHITECTURES["test_only"] = entry
    try:
        model = models.build_model("test_only", ("a",), min_size=96, max_size=96)
    finally:
        del models.ARCHITECTURES["test_only"]
    assert calls == [("test_only", ("a",), False, {"min_size": 96, "max_size": 96})]
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        models.build_model("nope")
