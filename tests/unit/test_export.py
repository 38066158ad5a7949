"""Exports of the demo model: TorchScript and ONNX files that reproduce PyTorch's detections.

The oracle is the runtime each format is made for (onnxruntime, torch.jit.load) run by the test
itself on a scene the export never saw, against the PyTorch model on the same input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detector import checkpoints
from detector.cli import main
from detector.export import (
    BOX_ATOL_PX,
    SCORE_ATOL,
    ExportError,
    Outputs,
    compare_outputs,
    export_model,
    read_onnx_metadata,
    read_torchscript_metadata,
)
from detector.images import to_tensor
from detector.scenes import make_scene

SIZE = (320, 240)


@pytest.fixture(scope="module")
def demo():
    return checkpoints.load_model(checkpoints.DEMO)


@pytest.fixture(scope="module")
def fresh_image():
    """A scene with objects, from a seed neither the demo's training nor the export check used."""
    scene = make_scene(777_002, *SIZE)
    assert scene.boxes
    return to_tensor(scene.image)


def _pytorch(demo, image):
    with torch.no_grad():
        out = demo.model([image])[0]
    return out["boxes"].numpy(), out["labels"].numpy(), out["scores"].numpy()


def _assert_same_detections(ref, got):
    """Every detection found again with the same label, box within BOX_ATOL_PX, score within SCORE_ATOL."""
    (rb, rl, rs), (gb, gl, gs) = ref, got
    assert len(rs) > 0, "the check needs detections"
    assert len(gs) == len(rs)
    free = list(range(len(gs)))
    for box, label, score in zip(rb, rl, rs):
        hits = [j for j in free if gl[j] == label and np.abs(gb[j] - box).max() <= BOX_ATOL_PX
                and abs(gs[j] - score) <= SCORE_ATOL]
        assert hits, (box, label, score)
        free.remove(hits[0])


def test_onnx_export_reproduces_pytorch_with_onnxruntime(demo, fresh_image, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "demo.onnx"
    result = export_model(demo, "onnx", out, SIZE)
    assert result.check.ok and result.check.detections > 0
    assert result.size_bytes == out.stat().st_size
    # class names and the input contract travel in the file's metadata
    meta = read_onnx_metadata(out)
    assert json.loads(meta["class_names"]) == ["circle", "rectangle", "triangle"]
    assert (meta["input_width"], meta["input_height"]) == ("320", "240")
    # onnxruntime on an image the export never saw, at the fixed size
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [3, 240, 320]
    got = session.run(["boxes", "labels", "scores"], {"image": fresh_image.numpy()})
    _assert_same_detections(_pytorch(demo, fresh_image), got)


def test_torchscript_export_reproduces_pytorch_with_jit_load(demo, fresh_image, tmp_path):
    out = tmp_path / "demo.pt"
    result = export_model(demo, "torchscript", out, SIZE)
    assert result.check.ok and result.check.max_box_diff <= BOX_ATOL_PX
    sidecar = json.loads((tmp_path / "demo.json").read_text())
    assert sidecar["class_names"] == ["circle", "rectangle", "triangle"]
    assert read_torchscript_metadata(out)["class_names"] == sidecar["class_names"]
    scripted = torch.jit.load(str(out), map_location="cpu")
    with torch.no_grad():
        _losses, dets = scripted([fresh_image])
    got = (dets[0]["boxes"].numpy(), dets[0]["labels"].numpy(), dets[0]["scores"].numpy())
    _assert_same_detections(_pytorch(demo, fresh_image), got)


def test_a_differing_export_is_refused():
    boxes = np.array([[10, 10, 50, 60], [100, 80, 160, 200]], dtype=np.float32)
    ref = Outputs(boxes, np.array([1, 2]), np.array([0.9, 0.6], dtype=np.float32))
    assert compare_outputs(ref, ref).ok
    shifted = Outputs(boxes + np.array([0, 0, 0.5, 0], dtype=np.float32), ref.labels, ref.scores)
    check = compare_outputs(ref, shifted)
    assert not check.ok and "2 of 2" in check.message
    relabelled = Outputs(boxes, np.array([1, 3]), ref.scores)
    assert not compare_outputs(ref, relabelled).ok
    # a detection at the score threshold may be on one side only
    edge = Outputs(boxes, ref.labels, np.array([0.9, 0.0502], dtype=np.float32))
    one = Outputs(boxes[:1], ref.labels[:1], ref.scores[:1])
    assert compare_outputs(edge, one, score_thresh=0.05).ok
    assert not compare_outputs(ref, one, score_thresh=0.05).ok


def test_export_refuses_bad_requests(demo, tmp_path):
    with pytest.raises(ExportError, match="format"):
        export_model(demo, "tflite", tmp_path / "x")
    with pytest.raises(ExportError, match="no such folder"):
        export_model(demo, "onnx", tmp_path / "missing" / "x.onnx")
    with pytest.raises(ExportError, match="out of range"):
        export_model(demo, "onnx", tmp_path / "x.onnx", (8, 8))


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", "--checkpoint", "demo", "--format", "torchscript", "--out", str(out),
                 "--image-size", *map(str, SIZE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["sidecar"] == str(tmp_path / "cli.json")
    assert report["check"]["detections"] == report["check"]["matched"] > 0
    assert main(["export", "--checkpoint", str(tmp_path / "nothing.pt"), "--format", "onnx",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "nothing.pt" in capsys.readouterr().err
