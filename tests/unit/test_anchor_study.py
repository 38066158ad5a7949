"""detector.anchor_study and `python -m detector anchor-study`: the paper's Table 8 on a synthetic set.

One tiny study (demo architecture from the demo checkpoint, 6 images of 128 x 96, 1 epoch, 2 sets) is
stopped after its first run and run again; the tests read what it left. Anchors per location are
checked on the models rebuilt from the runs' own checkpoints with torchvision's AnchorGenerator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detector import anchor_sets, anchor_study, runs
from detector.checkpoints import DEMO_CHECKPOINT, model_from_checkpoint, read_checkpoint
from detector.cli import main as cli_main
from detector.data.synthetic import write_synthetic
from detector.models import RPN_LAST_LAYERS, build_model

ROOT = Path(__file__).resolve().parents[2]
TINY = {"min_size": 64, "max_size": 96, "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 50,
        "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32}
SETS = "1s1r-128,3s3r"


def _args(data: Path, out: Path) -> list[str]:
    return ["anchor-study", "--data", str(data), "--out", str(out), "--epochs", "1", "--sets", SETS,
            "--device", "cpu", "--set", "workers=0", "--set", "snapshot_images=0", "--set", "batch_size=3",
            "--set", "decode_check=false", "--set", f"model_kwargs={json.dumps(TINY)}"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study stopped once its first run is done (a STOP, as the page's Stop button), then run again."""
    tmp = tmp_path_factory.mktemp("study")
    data = write_synthetic(tmp / "data", images=6, seed=2, format="coco", width=128, height=96)
    out = tmp / "shapes-study"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "detector", *_args(data, out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "shapes-study-1s1r-128"
    deadline = time.monotonic() + 240
    while runs.read_status(first).state != "done" and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    anchor_study.request_stop(out)
    log, _ = proc.communicate(timeout=240)
    stopped = anchor_study.read_study(out)
    kept = {p: p.stat().st_mtime_ns for p in (first / "metrics.jsonl", runs.checkpoint_path(first, "last"))}
    code = cli_main(_args(data, out))  # the same command again: it continues
    return {"data": data, "out": out, "first_rc": proc.returncode, "first_log": log, "stopped": stopped,
            "kept": kept, "rc": code, "final": anchor_study.read_study(out)}


def test_a_stopped_study_resumes_without_retraining_finished_runs(study):
    stopped, final = study["stopped"], study["final"]
    assert study["first_rc"] == 1, study["first_log"]  # stopped: not done
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert [s["run_state"] for s in stopped["sets"]][0] == "done"
    assert stopped["sets"][1]["run_state"] != "done"
    assert study["rc"] == 0 and final["state"] == "done"
    assert [s["run_state"] for s in final["sets"]] == ["done", "done"]
    for path, mtime in study["kept"].items():  # the finished run was not trained again
        assert path.stat().st_mtime_ns == mtime, path
    assert runs.read_status(study["out"] / "shapes-study-3s3r").state == "done"


def test_study_json_has_every_figure_for_every_set_and_the_paper_beside_it(study):
    final = study["final"]
    assert [r["mAP"] for r in final["paper_table8"]] == [r.mAP for r in anchor_sets.PAPER_TABLE8]
    for s in final["sets"]:
        f = s["figures"]
        assert s["paper"]["key"] == s["key"]
        assert f["anchors_per_location"] and f["anchors_median_image"] > 0
        assert set(f["anchor_recall"]) == {"0.5", "0.7"} and all(0 <= v <= 1 for v in f["anchor_recall"].values())
        pr = f["proposal_recall"]
        assert pr["k"] == 300 and set(pr["iou"]) == {"0.5", "0.7"} and pr["gt_boxes"] > 0
        assert len(pr["at_k"]["0.5"]) == len(pr["ks"]) and pr["at_k"]["0.5"] == sorted(pr["at_k"]["0.5"])
        assert isinstance(f["mAP"], float) and isinstance(f["mAP50"], float) and f["train_time_s"] > 0
    assert final["sets"][1]["figures"]["anchors_median_image"] == 9 * final["sets"][0]["figures"]["anchors_median_image"]


def test_runs_differ_only_in_the_anchor_set(study):
    configs = [runs.read_config(Path(s["run"])) for s in study["final"]["sets"]]
    strip = [{**c, "model_kwargs": {k: v for k, v in c["model_kwargs"].items()
                                    if k not in ("anchor_sizes", "aspect_ratios")}} for c in configs]
    assert strip[0] == strip[1]
    assert configs[0]["model_kwargs"]["anchor_sizes"] != configs[1]["model_kwargs"]["anchor_sizes"]
    assert configs[0]["init"] == "demo" and configs[0]["seed"] == configs[1]["seed"]


def test_each_run_has_the_anchors_per_location_its_set_says(study):
    for s in study["final"]["sets"]:
        run_dir = Path(s["run"])
        ckpt = read_checkpoint(runs.checkpoint_path(run_dir, "last"))
        model = model_from_checkpoint(ckpt)
        generator = model.rpn.anchor_generator  # torchvision's AnchorGenerator, as the run trained it
        expected = [len(sz) * len(r) for sz, r in zip(s["sizes"], s["ratios"])]
        assert generator.num_anchors_per_location() == expected == s["figures"]["anchors_per_location"]
        assert model.rpn.head.cls_logits.out_channels == expected[0]
        assert s["reinitialised"] == list(RPN_LAST_LAYERS)  # the demo has 15 per location, these 1 and 9


def test_paper_rows_in_both_anchor_forms_build_what_they_say():
    """A model with one size per level (ResNet-50 FPN) gets b x 2^(k/3) for 3 scales; one whose levels
    share a list (the demo) gets the middle three of it; torchvision builds each with that count."""
    per_level = anchor_sets.paper_sets([[32], [64], [128], [256], [512]])
    by_key = {s.key: s for s in per_level}
    assert by_key["3s3r"].sizes[0] == (32, 40, 51) and by_key["1s1r-256"].sizes[2] == (256,)
    shared = {s.key: s for s in anchor_sets.paper_sets([[16, 32, 64, 128, 256]] * 3)}
    assert shared["3s1r"].sizes == ((32, 64, 128),) * 3 and shared["1s3r-256"].sizes == ((64,),) * 3
    for s in per_level:
        model = build_model("fasterrcnn_resnet50_fpn", ("a",), min_size=64, max_size=64, **s.model_kwargs())
        assert model.rpn.anchor_generator.num_anchors_per_location() == list(s.anchors_per_location)
        assert model.rpn.head.cls_logits.out_channels == s.anchors_per_location[0]


def test_init_checkpoint_with_other_anchors_keeps_all_but_the_rpn_heads_last_layers():
    ckpt = read_checkpoint(DEMO_CHECKPOINT)
    model = model_from_checkpoint(ckpt, anchor_sizes=[[32]] * 3, aspect_ratios=[[1.0]])
    state = model.state_dict()
    changed = {k for k, v in ckpt["state_dict"].items() if not torch.equal(state[k], v.float())}
    assert changed == {f"{layer}.{p}" for layer in RPN_LAST_LAYERS for p in ("weight", "bias")}
    assert model.rpn.head.bbox_pred.out_channels == 4


def test_a_bad_sets_file_is_named_in_one_line(tmp_path, capsys):
    bad = tmp_path / "sets.json"
    bad.write_text('[{"key": "a/b", "sizes": [32]}]')
    data = write_synthetic(tmp_path / "d", images=2, width=64, height=48)
    assert cli_main(["anchor-study", "--data", str(data), "--out", str(tmp_path / "s"), "--sets", str(bad),
                     "--set", f"model_kwargs={json.dumps(TINY)}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: set 1") and "\n" not in err
