"""bench/: the runner end to end on its cheapest cases, and the bare loop's data matching ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from bench.bare_loop import CocoBoxes
from detector.data import DetectionDataset, load_dataset
from detector.data.synthetic import write_synthetic

ROOT = Path(__file__).resolve().parents[2]


def test_runner_prints_figures_as_json():
    proc = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "anchor_click,baseline", "--repeats", "1",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    report = json.loads(proc.stdout)
    assert report["figures"]["anchor_click_ms"] > 0
    assert set(report["figures"]["peak_rss_mb"]) == {"anchor_click", "baseline"}
    # the baseline (import torch) is the floor under a case that also loads a model
    rss = report["figures"]["peak_rss_mb"]
    assert rss["anchor_click"] > rss["baseline"] > 0
    assert torch.__version__.startswith(report["machine"]["torch"].split("+")[0])


def test_bare_loop_reads_the_same_images_and_boxes_as_our_dataset(tmp_path):
    data = write_synthetic(tmp_path / "synth", images=4, seed=5, width=64, height=48)
    ds = load_dataset(data)
    ours = DetectionDataset(ds.records, ds.root, train=False)
    files = [r.file.removeprefix("images/") for r in ds.records]
    for flip_p in (0.0, 1.0):
        bare = CocoBoxes(data, files, flip_p=flip_p)
        for i in range(len(files)):
            image, target = bare[i]
            ref_image, ref = ours[i]
            assert image.shape == ref_image.shape
            # JPEG decoders may differ by a grey level; the flip must not
            ref_image = ref_image.flip(-1) if flip_p else ref_image
            assert (image - ref_image).abs().mean() < 0.02
            boxes = ref["boxes"].clone()
            if flip_p:
                boxes[:, [0, 2]] = 64 - ref["boxes"][:, [2, 0]]
            assert torch.allclose(target["boxes"], boxes, atol=1e-3)
            assert torch.equal(target["labels"], ref["labels"])


def _gpu_bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--cpu-smoke", "--json", "--out", str(out),
                           "--work", str(tmp_path / "work"), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    return report


def test_gpu_bench_cpu_smoke_measures_engine_and_bare_loop_before_and_after_without_ui_packages(tmp_path):
    report = _gpu_bench(tmp_path, "--models", "mobilenet_v3_fpn_lite", "--phases", "train,inference,loader", "--timed", "2")
    assert report["settings"]["device"] == "cpu" and report["notes"] == []
    # the children ran with streamlit, plotly, pycocotools and defusedxml unimportable, as on the GPU machine
    assert set(report["settings"]["blocked_imports"]) >= {"streamlit", "plotly", "pycocotools", "defusedxml"}
    rows = {(r["loop"], r["variant"]): r for r in report["training"]}
    assert set(rows) == {("engine", "after"), ("bare", "after"), ("engine", "before"), ("bare", "before")}
    for row in rows.values():
        assert "error" not in row and "skipped" not in row, row
        assert row["images_per_s"] > 0 and row["timed_steps"] == 2 and row["batch_size"] == 2
        assert row["gpu_util_mean"] is None and row["peak_gpu_mb"] is None  # no GPU: no figures made up
        assert 0 <= row["data_wait_share"] < 1
    profile = rows[("engine", "after")]["profile"]
    assert profile["top_host_ops"] and profile["wall_ms_per_step"] > 0
    assert set(profile["engine_ranges_ms_per_step"]) >= {"train.forward", "train.backward", "train.optimizer"}
    assert {q["what"] for q in report["ratios"]} == {"engine_over_bare", "after_over_before"}
    (inference,) = report["inference"]
    assert set(inference["latency_ms"]) == {"model", "detect", "rpn_page_stages"}
    assert inference["rpn_page_over_model"] > 0 and inference["images_per_s"]["model"] > 0
    # the loader alone, float32 as the engine hands images over and uint8, per worker count; decode cost
    assert {(r["pixels"], r["workers"]) for r in report["loader"]} == {(p, w) for p in ("float32", "uint8") for w in (0, 1)}
    assert all(r["images_per_s"] > 0 for r in report["loader"])
    assert report["decode"] and all(r["ours_ms_per_image"] > 0 for r in report["decode"])


def test_gpu_bench_skips_what_the_time_budget_cannot_hold_and_says_so(tmp_path):
    report = _gpu_bench(tmp_path, "--models", "mobilenet_v3_fpn_lite", "--budget-s", "3")
    assert report["training"] == [] and report["wall_s"] < 60
    assert {n["phase"] for n in report["notes"]} == {"loader", "train", "inference", "ablations", "auto_batch", "compile"}
    assert all("time budget" in n["skipped"] for n in report["notes"])
