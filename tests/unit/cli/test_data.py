"""`validate` and `synth` in-process: report, JSON, exit codes 0/1/2, help; a 5,000-image COCO
file parses in seconds (header reads only)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

from PIL import Image

from detector.cli import main as cli_main
from detector.data import load_dataset


def test_synth_then_validate_json(tmp_path, capsys):
    assert cli_main(["synth", str(tmp_path / "ds"), "--images", "6", "--seed", "4", "--format", "voc",
                     "--width", "64", "--height", "48"]) == 0
    capsys.readouterr()
    assert cli_main(["validate", str(tmp_path / "ds"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"format", "images", "boxes", "empty_images", "classes", "problems", "usable"}
    assert report["format"] == "voc" and report["images"] == 6 and report["usable"] is True
    assert report["classes"] == ["circle", "rectangle", "triangle"] and report["problems"] == []
    assert cli_main(["validate", str(tmp_path / "ds"), "--format", "coco"]) == 1  # forced: no COCO file, nothing usable


def test_validate_exit_1_with_human_report(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    assert cli_main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no boxes in any image" in out and "usable: NO" in out and "empty images (kept as negatives): 1" in out


def test_validate_refuses_what_it_cannot_open(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli_main(["validate", str(tmp_path)]) == 2
    assert cli_main(["validate", str(tmp_path / "missing")]) == 2
    assert cli_main(["synth", str(tmp_path / "x"), "--images", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_help_for_both_commands():
    for command in ("validate", "synth"):
        result = subprocess.run([sys.executable, "-m", "detector", command, "--help"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and "usage" in result.stdout


def test_five_thousand_image_coco_parses_in_seconds(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 20, 160)).save(buf, format="PNG")
    (tmp_path / "images").mkdir()
    images, anns = [], []
    for i in range(5000):
        (tmp_path / "images" / f"{i:05d}.png").write_bytes(buf.getvalue())
        images.append({"id": i, "file_name": f"{i:05d}.png", "width": 64, "height": 48})
        anns += [{"id": 4 * i + k, "image_id": i, "category_id": 1 + k % 2, "bbox": [k * 8, k * 6, 10, 9]} for k in range(4)]
    (tmp_path / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    start = time.perf_counter()
    ds = load_dataset(tmp_path)
    seconds = time.perf_counter() - start
    assert len(ds.records) == 5000 and ds.num_boxes == 20_000 and ds.problems == ()
    assert seconds < 30, f"5,000 images took {seconds:.1f} s to parse"  # about 1 s here: headers only
