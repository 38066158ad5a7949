"""AppTest of the Anchors page's Study section: start a short study from a stored dataset, watch its
runs go by (listed on /train like any other), then the table of the sets beside the paper's Table 8."""

from __future__ import annotations

import time

import pytest

from detector import anchor_study, runs
from detector.data.store import store_upload
from detector.data.synthetic import write_synthetic
from detector.workspace import studies_dir
from tests.app.conftest import app_test

PAGE = "pages/anchors.py"


@pytest.fixture(scope="module")
def dataset(session_tmp) -> str:
    """A stored synthetic dataset: 4 images of 128 x 96 px (3 train, 1 val)."""
    folder = write_synthetic(session_tmp / "study-page-synth", images=4, seed=4, width=128, height=96)
    return store_upload("study-page-synth", folder).name


def _frame(at, column: str):
    """The dataframe that has `column` (AppTest gives st.dataframe no key): the progress table has
    "epochs done", the study table "paper mAP (VOC07)"."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def _param(at, key: str) -> str:
    value = at.query_params[key]
    return value[0] if isinstance(value, list) else value


@pytest.mark.timeout(900)  # one training and its figures: minutes on a busy 2-core machine
def test_start_a_short_study_see_its_runs_and_the_table(dataset):
    at = app_test(PAGE).run()
    assert not at.exception
    at.button_group(key="anchors_section").set_value("study").run()
    assert _param(at, "section") == "study" and not at.exception
    at.selectbox(key="study_dataset").set_value(dataset)
    at.number_input(key="study_epochs").set_value(1)
    at.number_input(key="study_min_size").set_value(64)
    at.multiselect(key="study_sets").set_value(["3s3r"])  # one run here; the browser flow has two
    at.button(key="study_start").click().run()
    assert not at.exception, at.exception
    name = _param(at, "study")
    folder = studies_dir() / name
    try:
        _follow_to_the_table(at, name, folder)
    finally:  # a failed test leaves no study training
        if (anchor_study.read_study(folder) or {}).get("shown_state") in ("running", "stopping"):
            anchor_study.request_stop(folder)


def _follow_to_the_table(at, name, folder) -> None:

    states = set()
    deadline = time.monotonic() + 700
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        study = anchor_study.read_study(folder)
        if study:
            states |= {s for s in _frame(at, "epochs done")["state"]}
            if study["shown_state"] not in ("running", "stopping"):
                break
        time.sleep(1.0)
    at.run()
    study = anchor_study.read_study(folder)
    assert study and study["state"] == "done", anchor_study.console_tail(folder)
    assert "running" in states or "queued" in states  # seen while it trained, run by run

    table = _frame(at, "paper mAP (VOC07)")
    assert list(table["set"]) == ["3s3r"]
    assert list(table["paper mAP (VOC07)"]) == [69.9] and list(table["per location"]) == [9]
    assert table["mAP50"].notna().all() and table["proposal recall@300, 0.5"].notna().all()
    assert list(table["run"]) == [f"train?run={name}-3s3r"]
    progress = _frame(at, "epochs done")
    assert list(progress["state"]) == ["done"] and list(progress["epochs done"]) == ["1 / 1"]
    charts = {el.key for el in at.get("plotly_chart")}
    assert {"study_map", "study_recall"} <= charts

    # the runs are ordinary runs: /train lists them, and its URL opens one
    train = app_test("pages/train.py")
    train.query_params["run"] = f"{name}-3s3r"
    train.run()
    assert not train.exception
    assert f"{name}-3s3r" in set(_frame(train, "best mAP")["run"])
    assert runs.read_config(runs.run_path(f"{name}-3s3r"))["model_kwargs"]["aspect_ratios"] == [[0.5, 1.0, 2.0]] * 3
