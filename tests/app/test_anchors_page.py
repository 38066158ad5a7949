"""AppTest: the anchor explorer opens on a sample with anchors drawn; the level / row / column
inputs (the twin of a click on a cell centre) choose the anchors shown; the paper preset, the
RPN labels and the dataset fitness what-if work; bad custom input gets a message, not a crash."""

from __future__ import annotations

import json
import re

import pytest

from detector import anchor_fitness, anchor_grids
from tests.app.conftest import app_test

PAPER = "The paper's preset (3 scales x 3 ratios)"
SYNTHETIC = "Synthetic scenes (offline, 60 images)"


def _counts(at):
    df = at.dataframe[0].value
    levels = df[df["level"] != "total"]
    return levels, df[df["level"] == "total"].iloc[0]


def _cell_indices(at) -> list[int]:
    cell = next(t.value for t in at.table if "fully inside" in t.value.columns)  # the anchors-at-a-cell table
    return [int(i) for i in cell["index"]]


def _expected_indices(at, level: int, row: int, col: int) -> list[int]:
    """Flat (level, y, x, a) indices of a cell, from the counts the page itself shows."""
    levels, _ = _counts(at)
    offset = int(levels["anchors"].iloc[:level].sum())
    columns = int(levels["grid (columns x rows)"].iloc[level].split(" x ")[0])
    per_location = int(levels["anchors per location"].iloc[level])
    start = offset + (row * columns + col) * per_location
    return list(range(start, start + per_location))


def _image_size(at) -> tuple[int, int]:
    text = "\n".join(c.value for c in at.caption)
    w, h = re.search(r"Image (\d+)x(\d+) →", text).groups()
    return int(w), int(h)


def _check_cli_gives_the_same_counts(at, capsys) -> None:
    """The counts caption names a `python -m detector anchors` command; run it: same numbers."""
    from detector.cli import main

    text = "\n".join(c.value for c in at.caption)
    command = re.search(r"`python -m detector anchors ([^`]+)`", text).group(1).split()
    capsys.readouterr()
    assert main(["anchors", *command, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    _, total = _counts(at)
    assert data["total"] == int(total["anchors"]) and data["inside_image"] == int(total["fully inside the image"])


@pytest.fixture(scope="module")
def at():
    at = app_test("pages/anchors.py", timeout=240).run()
    assert not at.exception, at.exception
    return at


def test_opens_on_a_sample_with_anchors_drawn(at, capsys):
    assert at.radio(key="anchors_source").value == "Sample"
    levels, total = _counts(at)
    assert int(total["anchors"]) == int(levels["anchors"].sum()) > 0
    assert int(total["fully inside the image"]) <= int(total["anchors"])
    assert any(c.key == "anchors_chart" for c in at.get("plotly_chart"))
    level, row, col = (int(at.number_input(key=k).value) for k in ("anchors_level", "anchors_row", "anchors_col"))
    assert _cell_indices(at) == _expected_indices(at, level, row, col)
    assert "Click a dot" in "\n".join(c.value for c in at.caption)
    assert not at.error
    _check_cli_gives_the_same_counts(at, capsys)


def test_level_row_column_inputs_choose_the_cell(at):
    last = len(_counts(at)[0]) - 1
    at.number_input(key="anchors_level").set_value(0).run()
    at.number_input(key="anchors_row").set_value(1).run()
    at.number_input(key="anchors_col").set_value(2).run()
    assert not at.exception
    assert _cell_indices(at) == _expected_indices(at, 0, 1, 2)
    # a coarser level: the row and column are kept inside its grid
    rows_last = int(_counts(at)[0]["grid (columns x rows)"].iloc[last].split(" x ")[1])
    at.number_input(key="anchors_row").set_value(rows_last + 2).run()
    at.number_input(key="anchors_level").set_value(last).run()
    assert not at.exception
    assert at.number_input(key="anchors_row").value == rows_last - 1
    assert _cell_indices(at) == _expected_indices(at, last, rows_last - 1, int(at.number_input(key="anchors_col").value))
    at.radio(key="anchors_view").set_value("all anchors of one shape").run()
    assert not at.exception and at.selectbox(key="anchors_shape").value == 0


def test_rpn_labels_cover_every_anchor(at):
    metrics = {m.label: m.value for m in at.metric}
    total = int(_counts(at)[1]["anchors"])
    labelled = sum(int(metrics[k].replace(",", "")) for k in ("positive", "negative", "ignored"))
    assert labelled == total
    pos, neg = (int(v) for v in metrics["minibatch (pos + neg)"].split(" + "))
    assert pos + neg == 256 and pos <= 128


def test_fitness_what_if_warns_when_anchors_per_location_change(at):
    from detector.data import list_datasets

    stored = [d.name for d in list_datasets() if d.boxes]  # the newest stored dataset is the default
    assert at.selectbox(key="anchors_fit_dataset").value == (stored[0] if stored else SYNTHETIC)
    metrics = {m.label: m.value for m in at.metric}
    assert {"recall at IoU 0.7", "recall at IoU 0.5", "recall at IoU 0.3"} <= set(metrics)
    at.text_input(key="anchors_whatif_ratios").set_value("0.25,0.5,1,2").run()
    assert not at.exception
    assert any("anchors per location" in w.value for w in at.warning)
    at.text_input(key="anchors_whatif_ratios").set_value("0.5,1,2").run()
    assert not any("anchors per location" in w.value for w in at.warning)


def test_paper_preset_counts_and_figures(at, capsys):
    at.radio(key="anchors_from").set_value(PAPER).run()
    assert not at.exception
    _, total = _counts(at)
    expected = anchor_grids.anchor_grid(anchor_grids.paper_source(), _image_size(at))
    assert int(total["anchors"]) == expected.total
    assert int(total["fully inside the image"]) == expected.inside_image
    table = next(t.value for t in at.table if "the paper" in t.value.columns)
    original = anchor_grids.original_code_counts(expected.resized_size)
    assert list(table["the paper"]) == ["about 20,000 (1000x600)", "about 6,000"]
    assert list(table["original code (py-faster-rcnn)"]) == [f"{original.original_code_total:,}",
                                                            f"{original.original_code_inside:,}"]
    assert "does not reproduce" in "\n".join(c.value for c in at.caption)
    assert len(_cell_indices(at)) == 9
    _check_cli_gives_the_same_counts(at, capsys)


def test_custom_set_and_bad_input(at, capsys):
    at.radio(key="anchors_from").set_value("Custom").run()
    at.text_input(key="anchors_sizes").set_value("64").run()
    at.text_input(key="anchors_strides").set_value("16").run()
    assert not at.exception
    levels, _ = _counts(at)
    assert len(levels) == 1 and int(levels["anchors per location"].iloc[0]) == 3
    _check_cli_gives_the_same_counts(at, capsys)
    at.text_input(key="anchors_sizes").set_value("64,abc").run()
    assert not at.exception
    assert any("Custom anchor set" in e.value for e in at.error)


def test_upload_without_ground_truth():
    import io

    from detector.scenes import make_scene

    at = app_test("pages/anchors.py", timeout=240).run()
    at.radio(key="anchors_source").set_value("Upload").run()
    buf = io.BytesIO()
    make_scene(3, 200, 150).image.save(buf, format="PNG")
    at.file_uploader(key="anchors_upload").set_value(("shapes.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert _image_size(at) == (200, 150)
    assert any("no ground-truth boxes" in i.value for i in at.info)
    assert _cell_indices(at)  # anchors are still drawn


def test_stored_dataset_image_and_fitness(session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic
    from detector.models import build_model

    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    folder = write_synthetic(session_tmp / "anchors-synth", images=3, seed=7, width=200, height=150)
    stored = store.store_upload("anchors-shapes", folder)
    at = app_test("pages/anchors.py", timeout=240)
    at.session_state["model_source"] = name
    at.run()
    at.radio(key="anchors_source").set_value("Stored dataset").run()
    at.selectbox(key="anchors_dataset").set_value(stored.name).run()
    assert not at.exception
    # the fitness section defaults to the dataset the user works with, not the synthetic scenes
    assert at.selectbox(key="anchors_fit_dataset").value == stored.name
    records = stored.dataset.records
    expected = anchor_fitness.fitness(anchor_grids.model_source(build_model(name, weights="none").eval()),
                         [(r.width, r.height, r.boxes) for r in records])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["boxes"] == f"{sum(len(r.boxes) for r in records):,}"
    assert metrics["recall at IoU 0.5"] == f"{expected.recall['0.5']:.1%}"
    positives = int(metrics["positive"].replace(",", ""))
    assert positives >= 1  # the image's boxes each keep their best anchor


def test_counts_total_row_is_blank_where_a_level_figure_has_no_total():
    at = app_test("pages/anchors.py", timeout=240).run()
    levels, total = _counts(at)
    assert total["anchors per location"] == "" and total["sizes"] == ""
    assert all(v.isdigit() for v in levels["anchors per location"])


def test_a_link_opens_that_exact_dataset_image_by_file_name(session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "anchors-link", images=4, seed=3, width=160, height=120)
    stored = store.store_upload("anchors-link", folder)
    records = stored.dataset.records
    wanted = records[2].file
    at = app_test("pages/anchors.py", timeout=240)
    at.query_params["dataset"], at.query_params["image"] = stored.name, wanted
    at.run()
    assert not at.exception
    assert at.radio(key="anchors_source").value == "Stored dataset"
    picker = at.selectbox(key="anchors_file")
    assert picker.value == wanted and picker.options[: len(records)] == [
        f"{r.file} ({len(r.boxes)} {'box' if len(r.boxes) == 1 else 'boxes'})" for r in records]
    assert any(f"**{wanted}** from dataset **{stored.name}**" in c.value for c in at.caption)
    assert _image_size(at) == (records[2].width, records[2].height)
    # a file the dataset lacks: a plain warning, and the first image with boxes instead
    at = app_test("pages/anchors.py", timeout=240)
    at.query_params["dataset"], at.query_params["image"] = stored.name, "valid/nope.jpg"
    at.run()
    assert not at.exception
    assert any("valid/nope.jpg is not an image of dataset" in w.value for w in at.warning)
    first = next(r.file for r in records if len(r.boxes))
    assert at.selectbox(key="anchors_file").value == first
