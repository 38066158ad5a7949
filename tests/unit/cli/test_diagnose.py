"""`python -m detector diagnose` end to end: the shipped demo model on a synthetic dataset written by
`python -m detector synth`; mAP equal to `evaluate`'s, a sweep, a saved tuned checkpoint."""

from __future__ import annotations

import json

import pytest

from detector import checkpoints
from detector.cli import main as cli_main

pytest.importorskip("pycocotools")
pytestmark = pytest.mark.skipif(not checkpoints.DEMO_CHECKPOINT.is_file(), reason="no demo checkpoint")

KEYS = {"images", "mAP", "mAP50", "mAP75", "per_class", "confusion", "errors", "missed"}
CLASS_KEYS = {"class", "gt", "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "precision", "recall",
              "best_f1_threshold"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "held"
    assert cli_main(["synth", str(out), "--images", "6", "--seed", "7", "--format", "coco"]) == 0
    return out


def _json(capsys, argv):
    assert cli_main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def swept(synth, tmp_path_factory):
    """One diagnose run with a box_score_thresh sweep and a saved checkpoint (shared by the tests)."""
    import contextlib
    import io

    tuned = tmp_path_factory.mktemp("tuned") / "tuned.pt"
    out = tmp_path_factory.mktemp("out") / "diagnosis.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli_main(["diagnose", "--checkpoint", "demo", "--data", str(synth), "--json", "--device", "cpu",
                         "--sweep", "box_score_thresh=0.05,0.6,0.97", "--save-checkpoint", str(tuned),
                         "--out", str(out)])
    assert code == 0
    return json.loads(buf.getvalue()), tuned, out


def test_json_has_the_contract_keys_and_evaluates_map(swept, synth, capsys):
    report, _, out = swept
    assert KEYS <= set(report) and "sweep" in report
    assert json.loads(out.read_text()) == report
    assert report["images"] == 6
    for row in report["per_class"]:
        assert CLASS_KEYS <= set(row)
    assert set(report["errors"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg"}
    assert set(report["confusion"]) >= {"labels", "matrix", "iou", "score_threshold"}
    assert report["confusion"]["labels"][-1] == "background"
    missed = report["missed"]
    assert set(missed["by_stage"]) == {"rpn_proposals", "rpn_nms", "rpn_top_n", "box_classification",
                                       "box_localization", "box_nms", "crowded"}
    assert sum(missed["by_stage"].values()) == missed["total"] == len(missed["boxes"])
    evaluated = _json(capsys, ["evaluate", "--checkpoint", "demo", "--data", str(synth), "--json", "--device", "cpu"])
    assert (report["mAP"], report["mAP50"], report["mAP75"]) == (evaluated["mAP"], evaluated["mAP50"],
                                                                 evaluated["mAP75"])


def test_a_box_score_thresh_sweep_lowers_map_as_it_rises(swept):
    report, _, _ = swept
    sweep = report["sweep"]
    assert [p["knobs"] for p in sweep] == [{"box_score_thresh": v} for v in (0.05, 0.6, 0.97)]
    maps = [p["mAP"] for p in sweep]
    # dropping the lowest-scoring detections can only cut the PR curve short
    assert maps[0] >= maps[1] >= maps[2] and maps[2] < maps[0]
    # the demo model's own box_score_thresh (0.05) is the diagnosis itself
    assert maps[0] == report["mAP"]


def test_the_saved_tuned_checkpoint_carries_its_knobs_and_is_a_model_source(swept, synth, capsys):
    report, tuned, _ = swept
    ckpt = checkpoints.read_checkpoint(tuned)
    best = report["saved_checkpoint"]["knobs"]
    assert ckpt["model_kwargs"]["box_score_thresh"] == best["box_score_thresh"]
    demo = checkpoints.read_checkpoint(checkpoints.DEMO_CHECKPOINT)
    assert all((ckpt["state_dict"][k] == v).all() for k, v in demo["state_dict"].items())
    loaded = checkpoints.load_model(str(tuned), "cpu")
    assert loaded.model.roi_heads.score_thresh == best["box_score_thresh"]
    # evaluate with the tuned checkpoint (a full forward) gives the tuner's figure for that setting
    evaluated = _json(capsys, ["evaluate", "--checkpoint", str(tuned), "--data", str(synth), "--json", "--device", "cpu"])
    point = next(p for p in report["sweep"] if p["knobs"] == best)
    assert evaluated["mAP"] == pytest.approx(point["mAP"], abs=1e-12)


@pytest.mark.parametrize("argv, expected", [
    (["--knob", "colour=1"], "expected NAME=VALUE"),
    (["--sweep", "box_score_thresh=high"], "not a number"),
    (["--knob", "box_detections_per_img=0"], "at least 1"),
    (["--iou", "1.5"], "--iou"),
])
def test_bad_requests_get_one_line(synth, capsys, argv, expected):
    assert cli_main(["diagnose", "--checkpoint", "demo", "--data", str(synth), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_dataset_is_named(tmp_path, capsys):
    assert cli_main(["diagnose", "--checkpoint", "demo", "--data", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1
