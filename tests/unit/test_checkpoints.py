"""detector.checkpoints: this project's checkpoint contract (weights_only, self-describing, foreign
files refused), model sources, and checkpoints from elsewhere: torchvision references checkpoints
and bare state_dicts load and detect.

The foreign ones are made here from a torchvision builder (weights=None, weights_backbone=None), the
way the tools write them: references/detection/train.py saves {model: model_without_ddp.state_dict(),
optimizer, lr_scheduler, args: argparse.Namespace, epoch} with torch.save. The oracle is that
builder's own model: the loaded one must give identical detections on the same image.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import pickle

import pytest
import torch
import torchvision
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from detector import checkpoints, models, weights
from detector.checkpoints import CheckpointError, load_chosen, load_model, read_checkpoint
from detector.cli import main
from detector.detection import detect
from detector.images import to_tensor
from detector.backbone_stages import freeze_batchnorm
from detector.scenes import make_scene


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


class NotAllowed:
    pass


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
    freeze_batchnorm(model.backbone)
    first = next(iter(model.backbone.parameters()))
    first.requires_grad_(False)
    path = checkpoints.save_checkpoint(tmp_path / "f.pt", model, models.DEMO_ARCH, ("a",), half=True)
    back = checkpoints.model_from_checkpoint(checkpoints.read_checkpoint(path))
    assert any(isinstance(m, torchvision.ops.misc.FrozenBatchNorm2d) for m in back.backbone.modules())
    assert not next(iter(back.backbone.parameters())).requires_grad


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


def test_default_model_without_weights_or_demo_file(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "DEMO_CHECKPOINT", tmp_path / "absent.pt")
    source, why = checkpoints.default_model("cpu")
    assert source == "fasterrcnn_mobilenet_v3_large_320_fpn" and "random weights" in why


ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


KNOBS = {"box_score_thresh": 0.0, "box_detections_per_img": 10}  # random weights: keep every detection


def _reference_args(**changes) -> argparse.Namespace:
    """references/detection/train.py's parsed arguments (its defaults, for this model)."""
    values = dict(data_path="/datasets01/COCO/022719/", dataset="coco", model=ARCH, device="cuda", batch_size=2,
                  epochs=26, workers=4, opt="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4, norm_weight_decay=None,
                  lr_scheduler="multisteplr", lr_step_size=8, lr_steps=[16, 22], lr_gamma=0.1, print_freq=20,
                  output_dir=".", resume="", start_epoch=0, aspect_ratio_group_factor=3, rpn_score_thresh=None,
                  trainable_backbone_layers=None, data_augmentation="hflip", sync_bn=False, test_only=False,
                  use_deterministic_algorithms=False, world_size=1, dist_url="env://", weights=None,
                  weights_backbone=None, amp=False, use_copypaste=False, backend="pil", use_v2=False,
                  distributed=False)
    values.update(changes)
    return argparse.Namespace(**values)


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(3)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=4, **KNOBS)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return make_scene(4242, 320, 240).image


def _references_checkpoint(model, path, **arg_changes):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22], gamma=0.1)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "args": _reference_args(**arg_changes), "epoch": 25}, path)
    return path


def _same_detections(loaded, original, image):
    with torch.no_grad():
        expected = original([to_tensor(image)])[0]
    got = detect(loaded, [image])[0]
    assert len(expected["scores"]) > 0
    assert torch.equal(torch.from_numpy(got.boxes), expected["boxes"])
    assert torch.equal(torch.from_numpy(got.scores), expected["scores"])
    assert got.label_ids.tolist() == expected["labels"].tolist()
    return got


def test_a_references_checkpoint_loads_with_its_architecture_and_class_count(original, image, tmp_path):
    path = _references_checkpoint(original, tmp_path / "model_25.pth")
    ckpt = read_checkpoint(path)
    assert ckpt["model"] == ARCH and ckpt["class_names"] == ["class 1", "class 2", "class 3"]
    assert ckpt["epoch"] == 25 and "references" in ckpt["origin"]
    loaded = load_model(path, **KNOBS)
    assert loaded.arch == ARCH and "references" in loaded.description
    got = _same_detections(loaded, original, image)
    assert set(got.label_names) <= {"class 1", "class 2", "class 3"}


def test_a_references_checkpoint_with_a_frozen_pretrained_backbone(image, tmp_path):
    # trained with --weights-backbone: the builder used FrozenBatchNorm2d (no num_batches_tracked saved)
    torch.manual_seed(4)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3, **KNOBS)
    freeze_batchnorm(model.backbone.body)
    model.eval()
    path = _references_checkpoint(model, tmp_path / "checkpoint.pth", weights_backbone="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
                                  rpn_score_thresh=0.01)
    loaded = load_chosen(str(path), None, "cat,dog", "cpu", **KNOBS)
    assert loaded.class_names == ("cat", "dog") and loaded.model_kwargs["rpn_score_thresh"] == 0.01
    model.rpn.score_thresh = 0.01
    _same_detections(loaded, model, image)


def test_a_bare_state_dict_loads_given_the_model_name(original, image, tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save(original.state_dict(), path)
    with pytest.raises(CheckpointError, match="--model NAME"):
        read_checkpoint(path)
    loaded = load_chosen(str(path), ARCH, "circle,rectangle,triangle", "cpu", **KNOBS)
    assert loaded.class_names == ("circle", "rectangle", "triangle")
    _same_detections(loaded, original, image)
    with pytest.raises(CheckpointError, match="3 classes .* but 2 class names"):
        load_chosen(str(path), ARCH, "a,b", "cpu")
    with pytest.raises(CheckpointError, match="does not fit|weights do not fit"):
        load_chosen(str(path), "fasterrcnn_resnet50_fpn", None, "cpu")
    # the CLI: detect with --checkpoint FILE --model NAME --classes
    scene = tmp_path / "scene.png"
    image.save(scene)
    assert main(["detect", str(scene), "--checkpoint", str(path), "--model", ARCH, "--classes", "circle,rectangle,triangle",
                 "--score-threshold", "0", "--device", "cpu", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)[0]
    assert entry["error"] is None and entry["detections"]
    assert {d["label"] for d in entry["detections"]} <= {"circle", "rectangle", "triangle"}


def test_anything_beyond_the_references_namespace_is_refused(original, tmp_path):
    # weights_only stays on: a Path inside args (a class not allowed) refuses the file, with a message
    path = tmp_path / "paths.pth"
    torch.save({"model": original.state_dict(), "args": _reference_args(output_dir=pathlib.PosixPath("/out")),
                "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="paths.pth: not a loadable checkpoint .*weights_only"):
        read_checkpoint(path)
    other = tmp_path / "retina.pth"
    torch.save({"model": original.state_dict(), "args": _reference_args(model="retinanet_resnet50_fpn"), "epoch": 1},
               other)
    with pytest.raises(CheckpointError, match="retinanet_resnet50_fpn.*not a Faster R-CNN"):
        read_checkpoint(other)
    junk = tmp_path / "list.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(CheckpointError, match="not a checkpoint this tool reads"):
        read_checkpoint(junk)
