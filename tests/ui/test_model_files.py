"""The sidebar's "Add a model file": a checkpoint from elsewhere, a COCO weight file; export on /detect.

Driven through the whole app (router + shared sidebar) with AppTest's file uploads.
"""

from __future__ import annotations

import hashlib
import io

import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from detector import checkpoints
from detector.backbone_stages import freeze_batchnorm
from detector.models import DEMO_ARCH
from detector.weights import weights_status
from tests.app.conftest import app_test
from ui.links import models_dir
from ui.model import MODEL_KEY


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _sidebar_app():
    at = app_test("app.py")
    at.run()
    assert not at.exception
    return at


def test_a_bare_state_dict_upload_is_stored_chosen_and_named_in_the_url(tiny_checkpoint):
    state = checkpoints.read_checkpoint(tiny_checkpoint)["state_dict"]
    at = _sidebar_app()
    at.file_uploader(key="model_file_upload").set_value([("shapes-sd.pth", _bytes(state), "application/octet-stream")])
    at.run()
    at.button(key="model_file_add").click().run()
    # a bare state_dict records no architecture: refused with the reason, nothing stored
    assert any("records no architecture" in e.value for e in at.error)
    assert not (models_dir() / "shapes-sd.pt").exists()
    at.selectbox(key="model_file_arch").set_value(DEMO_ARCH)
    at.text_input(key="model_file_classes").set_value("circle,rectangle,triangle")
    at.button(key="model_file_add").click().run()
    assert not at.exception
    stored = models_dir() / "shapes-sd.pt"
    assert any("Stored as shapes-sd.pt" in s.value for s in at.success)
    assert at.session_state[MODEL_KEY] == "upload:shapes-sd.pt"  # the picker's name for it (URL contract)
    assert at.query_params["model"] in ("upload:shapes-sd.pt", ["upload:shapes-sd.pt"])
    ckpt = checkpoints.read_checkpoint(stored)  # our format now: every page and command loads it
    assert ckpt["model"] == DEMO_ARCH and ckpt["class_names"] == ["circle", "rectangle", "triangle"]
    assert checkpoints.load_model(stored).class_names == ("circle", "rectangle", "triangle")


def test_a_coco_weight_file_upload_lands_in_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # the session's stays empty
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    freeze_batchnorm(model.backbone.body)
    data = _bytes(model.state_dict())
    name = f"fasterrcnn_mobilenet_v3_large_320_fpn-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    at = _sidebar_app()
    at.radio(key="model_file_kind").set_value("COCO weight file").run()
    at.file_uploader(key="weights_file_upload").set_value([("renamed.pth", data, "application/octet-stream")])
    at.run()
    at.button(key="weights_file_add").click().run()
    assert any("not a weight file torchvision looks for" in e.value for e in at.error)
    at.file_uploader(key="weights_file_upload").set_value([(name, data, "application/octet-stream")])
    at.run()
    at.button(key="weights_file_add").click().run()
    assert not at.exception
    assert any("COCO weights found" in s.value for s in at.success)
    assert weights_status("fasterrcnn_mobilenet_v3_large_320_fpn").cached


@pytest.mark.timeout(300)
def test_detect_page_exports_the_chosen_model(tiny_checkpoint):
    import shutil

    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_checkpoint, models_dir() / "tiny.pt")
    at = app_test("pages/detect.py")
    at.query_params["model"] = "upload:tiny.pt"
    at.run()
    at.number_input(key="detect_export_width").set_value(160)
    at.number_input(key="detect_export_height").set_value(128)
    at.button(key="detect_export_go").click().run()
    assert not at.exception, at.exception
    assert any("Checked:" in s.value for s in at.success), [e.value for e in at.error]
    labels = [b.label for b in at.get("download_button")]
    assert any(label.startswith("upload_tiny.pt.torchscript.pt") or "torchscript.pt" in label for label in labels)
