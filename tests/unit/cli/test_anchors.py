"""`python -m detector anchors`, run in-process: its JSON contract, both forms, bad input."""

from __future__ import annotations

import json

import pytest

from detector import anchor_grids
from detector.cli import main
from detector.models import build_model


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["anchors", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["anchors", "--help"])
    assert exc.value.code == 0
    assert "--image-size" in capsys.readouterr().out


def test_design_check_custom_set(capsys):
    code, out, _ = run(capsys, "--image-size", "1000", "600", "--sizes", "128,256,512", "--ratios", "0.5,1,2",
                       "--strides", "16", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["total"], data["inside_image"]) == (21_546, 8_044)
    assert data["resized_size"] == [1000, 600] and data["padded_size"] == [1008, 608]
    (level,) = data["levels"]
    assert level["stride"] == [16, 16] and level["grid"] == [63, 38]
    assert level["anchors_per_location"] == 9 and level["count"] == 21_546 and level["inside_image"] == 8_044
    code, out, _ = run(capsys, "--image-size", "1000", "600", "--sizes", "128,256,512", "--strides", "16")
    assert code == 0 and "21,546" in out and "8,044" in out


def test_sizes_per_level_and_one_group_for_all(capsys):
    code, out, _ = run(capsys, "--image-size", "320", "240", "--sizes", "32/64/128", "--strides", "8,16,32", "--json")
    per_level = json.loads(out)
    assert [lv["sizes"] for lv in per_level["levels"]] == [[32], [64], [128]]
    assert per_level["padded_size"] == [320, 256]  # padded to a multiple of the largest stride
    code, out, _ = run(capsys, "--image-size", "320", "240", "--sizes", "32,64", "--strides", "8,16", "--json")
    shared = json.loads(out)
    assert [lv["sizes"] for lv in shared["levels"]] == [[32, 64], [32, 64]]
    assert [lv["grid"] for lv in shared["levels"]] == [[40, 30], [20, 15]]


def test_model_counts_are_the_real_generators(capsys):
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    code, out, _ = run(capsys, "--image-size", "640", "480", "--model", name, "--json")
    assert code == 0
    data = json.loads(out)
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(build_model(name, weights="none").eval()), (640, 480))
    assert data["total"] == grid.total and data["resized_size"] == list(grid.resized_size)
    assert [lv["count"] for lv in data["levels"]] == [lv.count for lv in grid.levels]


def test_dataset_fitness_json(capsys, tmp_path):
    from detector.data import load_dataset
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(tmp_path / "synth", images=4, width=160, height=120)
    boxes = load_dataset(folder).num_boxes
    code, out, _ = run(capsys, "--dataset", str(folder), "--sizes", "16,32,64", "--strides", "8", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["boxes"] == boxes and data["images"] == 4
    assert set(data["recall"]) == {"0.3", "0.5", "0.7"}
    assert data["recall"]["0.3"] >= data["recall"]["0.5"] >= data["recall"]["0.7"]
    assert set(data["by_size"]) == {"small", "medium", "large"}
    assert sum(data["best_iou"]["counts"]) == boxes
    assert data["suggestions"] and all(s["fits_pretrained_head"] for s in data["suggestions"])
    code, out, _ = run(capsys, "--dataset", str(folder), "--sizes", "16,32,64", "--strides", "8")
    assert code == 0 and "recall" in out and "what-if" in out


@pytest.mark.parametrize("argv, needle", [
    (["--image-size", "100", "100", "--sizes", "1,a", "--strides", "4"], "--sizes"),
    (["--image-size", "100", "100", "--sizes", "32"], "--strides"),
    (["--image-size", "100", "100", "--sizes", "32/64", "--strides", "4"], "2 levels of sizes but 1 stride"),
    (["--image-size", "0", "100", "--sizes", "32", "--strides", "4"], "positive"),
    (["--image-size", "100", "100", "--model", "no_such_model"], "no_such_model"),
    (["--dataset", "/no/such/dataset"], "/no/such/dataset"),
])
def test_bad_input_is_one_line(capsys, argv, needle):
    code, _, err = run(capsys, *argv)
    assert code != 0
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
