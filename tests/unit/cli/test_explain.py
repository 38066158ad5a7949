"""`python -m detector explain` end to end: the shipped demo model on synthetic scenes, JSON against
`detect`'s and against the model's own box predictor (a forward hook), human output, bad files."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from detector import checkpoints
from detector.cli import main as cli_main
from detector.images import load_image, to_tensor
from detector.scenes import make_scene

pytestmark = pytest.mark.skipif(not checkpoints.DEMO_CHECKPOINT.is_file(), reason="no demo checkpoint")

DET_KEYS = {"box", "label", "label_id", "score", "roi", "anchor", "class_probs", "box_deltas", "suppressed"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    paths = []
    for seed in (10_002, 10_003):
        path = folder / f"scene-{seed}.png"
        make_scene(seed).image.save(path)
        paths.append(str(path))
    bad = folder / "broken.jpg"
    bad.write_bytes(b"not an image")
    return paths, str(bad)


def _run(capsys, argv):
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_per_image_matches_detect_and_the_box_predictor(files, capsys):
    (a, b), bad = files
    code, out, err = _run(capsys, ["explain", a, bad, b, "--checkpoint", "demo", "--device", "cpu", "--json",
                                   "--score-threshold", "0.3"])
    assert code == 1  # one file failed, the others ran
    assert err.strip().splitlines() == [f"error: {bad}: " + json.loads(out)[1]["error"]]
    entries = json.loads(out)
    assert [e["image"] for e in entries] == [a, bad, b]
    assert set(entries[0]) == {"image", "model", "detections"} and "demo" in entries[0]["model"]
    assert entries[1]["detections"] == [] and entries[1]["error"]

    # explain runs one image per forward: detect with batch size 1 pads alike
    code, detect_out, _ = _run(capsys, ["detect", a, b, "--checkpoint", "demo", "--device", "cpu", "--json",
                                        "--score-threshold", "0.3", "--batch-size", "1"])
    detected = json.loads(detect_out)
    model = checkpoints.load_model(checkpoints.DEMO).model
    for entry, ref, path in zip((entries[0], entries[2]), detected, (a, b)):
        assert entry["detections"], path
        # the same detections as `detect` (box, label, label_id, score), in the same order
        assert [{k: d[k] for k in ("box", "label", "label_id", "score")} for d in entry["detections"]] == \
            ref["detections"]
        seen = {}
        handle = model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: seen.update(out=o))
        with torch.no_grad():
            model([to_tensor(load_image(path))])
        handle.remove()
        logits, regression = seen["out"]
        for d in entry["detections"]:
            assert set(d) == DET_KEYS
            probs = F.softmax(logits[d["roi"]["index"]], -1).tolist()
            assert list(d["class_probs"]) == ["__background__", "circle", "rectangle", "triangle"]
            assert max(abs(p - q) for p, q in zip(probs, d["class_probs"].values())) < 1e-6
            assert d["class_probs"][d["label"]] == d["score"]
            assert d["box_deltas"] == regression[d["roi"]["index"]].view(-1, 4)[d["label_id"]].tolist()
            assert set(d["anchor"]) == {"level", "row", "column", "shape", "box", "rpn_deltas"}
            assert len(d["anchor"]["rpn_deltas"]) == 4 and len(d["roi"]["box"]) == 4
            for s in d["suppressed"]:
                assert set(s) == {"box", "score", "iou"} and s["iou"] > model.roi_heads.nms_thresh


def test_human_output_names_each_stage(files, capsys):
    (a, _), _ = files
    code, out, err = _run(capsys, ["explain", a, "--checkpoint", "demo", "--device", "cpu"])
    assert code == 0 and err == ""
    assert out.startswith("model: ") and f"{a} (320x240): " in out
    for word in ("anchor:", "RPN deltas (tx, ty, tw, th)", "RoI:", "objectness", "classes:", "__background__",
                 "box deltas (dx, dy, dw, dh)", "NMS:"):
        assert word in out


def test_bad_threshold_and_bad_model_are_one_line_errors(files, capsys):
    (a, _), _ = files
    code, _, err = _run(capsys, ["explain", a, "--checkpoint", "demo", "--score-threshold", "2"])
    assert code == 2 and err == "error: --score-threshold must be between 0 and 1\n"
    code, _, err = _run(capsys, ["explain", a, "--checkpoint", "/nowhere/model.pt"])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
