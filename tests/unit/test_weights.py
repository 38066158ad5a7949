"""Offline COCO weights: a file copied over by hand, checked and put in torchvision's cache.

The weight file is made the way torchvision's are: a detection builder's state_dict with its
backbone in FrozenBatchNorm2d (what the builders use with pretrained weights), saved with
torch.save and named `<stem>-<first 8 hex digits of its sha256>.pth` (torch.hub's check_hash rule).
TORCH_HOME is a temporary folder (tests/conftest.py and monkeypatch here)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from detector import checkpoints, models, weights
from detector.cli import main
from detector.backbone_stages import freeze_batchnorm
from detector.models import build_model
from detector.weights import WeightsFileRefused, add_weights, cached_weights_path, expected_weight_files, weights_cache_dir, weights_status


ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


STEM = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    assert str(weights_cache_dir()).startswith(str(tmp_path))
    return tmp_path / "torch-home"


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    """A COCO-shaped weight file for ARCH, named with its real sha256 prefix."""
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    freeze_batchnorm(model.backbone.body)  # as the builder has it with pretrained weights
    folder = tmp_path_factory.mktemp("copied")
    raw = folder / "weights.pth"
    torch.save(model.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    named = folder / f"{STEM}-{digest[:8]}.pth"
    raw.rename(named)
    return named, model.state_dict()


def test_a_placed_weight_file_is_reported_cached_and_used(torch_home, weight_file):
    path, state = weight_file
    assert not weights_status(ARCH).cached
    added = add_weights(path)
    assert added.arch == ARCH and added.status.cached and "found" in added.status.message
    status = weights_status(ARCH)
    assert status.cached and status.path == str(torch_home / "hub" / "checkpoints" / os.path.basename(status.path))
    assert cached_weights_path(ARCH).read_bytes() == path.read_bytes()
    assert "different release" in added.note  # our file's hash is not torchvision's own 907ea3f9
    # torchvision's builder now loads it from the cache, without a network
    model = build_model(ARCH, weights="coco")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_cli_weights_add_and_status(torch_home, weight_file, capsys):
    path, _ = weight_file
    assert main(["weights", "add", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == ARCH and out["cached"] is True
    assert main(["weights", "status", "--json"]) == 0
    rows = {r["arch"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[ARCH]["cached"] and not rows["fasterrcnn_resnet50_fpn"]["cached"]


def test_a_wrong_name_a_wrong_hash_or_a_wrong_model_is_refused(torch_home, weight_file, tmp_path, capsys):
    path, state = weight_file
    renamed = tmp_path / "my_weights.pth"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(WeightsFileRefused, match="not a weight file torchvision looks for"):
        add_weights(renamed)
    tampered = tmp_path / f"{STEM}-00000000.pth"
    tampered.write_bytes(path.read_bytes())
    with pytest.raises(WeightsFileRefused, match="sha256 starts"):
        add_weights(tampered)
    # right name and hash, but the weights of another architecture
    other = tmp_path / "other.pth"
    torch.save(build_model("mobilenet_v3_fpn_lite", ("a",)).state_dict(), other)
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    wrong = tmp_path / f"{STEM}-{digest[:10]}.pth"
    other.rename(wrong)
    with pytest.raises(WeightsFileRefused, match="does not load into"):
        add_weights(wrong)
    # not weights at all, under a good name
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip file")
    named_junk = tmp_path / f"{STEM}-{hashlib.sha256(b'not a zip file').hexdigest()[:8]}.pth"
    junk.rename(named_junk)
    with pytest.raises(WeightsFileRefused, match="not a loadable weight file"):
        add_weights(named_junk)
    assert not weights_status(ARCH).cached  # nothing refused reached the cache
    assert main(["weights", "add", str(tampered)]) == 1
    assert "sha256" in capsys.readouterr().err


def test_the_expected_names_are_torchvisions_urls():
    from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights

    url = FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1.url
    assert expected_weight_files()[os.path.basename(url)] == ARCH


def test_no_weights_cached_in_tests_and_pretrained_request_fails_fast():
    status = weights.weights_status("fasterrcnn_resnet50_fpn")
    assert not status.cached and "random weights" in status.message
    with pytest.raises(weights.WeightsUnavailable, match="no COCO weights"):
        models.build_model("fasterrcnn_resnet50_fpn", weights="coco")
