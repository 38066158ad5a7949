"""AppTest: the RPN inspector opens on a sample image, its knobs re-run only the cheap part,
the trace and level widgets drive what is shown, an upload works and a bad upload is refused;
one view at a time is built (the view selector, kept in the URL)."""

from __future__ import annotations

import io

import pytest

from detector.models import DEMO_ARCH
from detector.scenes import make_scene
from tests.app.conftest import app_test


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def _knob(at, name: str):
    """A knob widget: its key carries the model and a reset count after `name` (one set per model)."""
    widgets = [w for w in list(at.number_input) + list(at.slider) if w.key and w.key.startswith(name + "@")]
    assert len(widgets) == 1, [w.key for w in widgets]
    return widgets[0]


def _view(at, name: str):
    """Open a view of the page (the segmented control at the top of the views)."""
    at.get("button_group")[0].set_value(name).run()
    assert not at.exception, at.exception
    return at


def _timings(at) -> dict[str, float]:
    df = at.dataframe[0].value
    return dict(zip(df["stage"], df["ms"]))


RANDOM_MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"  # random weights here: objectness about 0.5 everywhere


def _pinned(source: str = RANDOM_MODEL):
    """The page with a given model (the sidebar's choice), whatever the default model becomes."""
    at = app_test("pages/rpn.py")
    at.session_state["model_source"] = source
    return at


@pytest.fixture(scope="module")
def at():
    at = _pinned().run()
    assert not at.exception, at.exception
    return at


def test_opens_on_a_sample_with_heatmap_and_funnel_and_builds_one_view_at_a_time(at):
    text = _captions(at)
    assert "Objectness p = sigmoid(cls_logits) at FPN level" in text
    assert "After NMS" not in text  # the other views are not built
    assert len(at.get("plotly_chart")) == 2  # the funnel and the heatmap, nothing else is sent
    _view(at, "Proposals")
    text = _captions(at)
    assert "After NMS" in text and "Before NMS" in text and "Objectness p" not in text
    assert len(at.get("plotly_chart")) == 3
    _view(at, "Recall")
    assert "Proposal recall" in _captions(at)  # the sample scene has ground truth
    _view(at, "Objectness")
    timings = _timings(at)
    assert set(timings) == {"transform", "backbone", "RPN head", "anchors + decoding", "proposal filtering", "RoI heads"}
    assert timings["backbone"] > 0
    assert not at.error


def test_knobs_rerun_only_the_cheap_part(at):
    _view(at, "Proposals")
    before = _timings(at)
    _knob(at, "rpn_post_nms").set_value(12).run()
    assert not at.exception
    assert "of 12 proposals" in _captions(at)
    after = _timings(at)
    # the backbone, RPN head and decoding come from the cached stage: the very same measurements
    for stage in ("transform", "backbone", "RPN head", "anchors + decoding"):
        assert after[stage] == before[stage]
    _knob(at, "rpn_score").set_value(0.99).run()  # random weights: every objectness is about 0.5
    assert not at.exception
    assert any("No proposal survived" in w.value for w in at.warning)
    _knob(at, "rpn_score").set_value(0.0).run()
    assert not at.warning


def test_trace_level_and_shape_widgets(at):
    _view(at, "Trace")
    at.number_input(key="rpn_rank").set_value(3).run()
    assert not at.exception
    assert "Proposal 3 (objectness" in _captions(at)
    _view(at, "RoIAlign")  # the rank chosen in Trace is kept while Trace is not shown
    assert "RoIAlign output for proposal 3" in _captions(at)
    _view(at, "Objectness")
    at.selectbox(key="rpn_level").set_value(1).run()
    at.selectbox(key="rpn_shape").set_value(2).run()
    assert not at.exception
    assert "at FPN level 1:" in _captions(at)
    _view(at, "Trace")
    _view(at, "Objectness")
    assert at.selectbox(key="rpn_level").value == 1  # a view's widgets keep their values
    _view(at, "Detections")
    at.slider(key="rpn_det_thresh").set_value(0.05).run()
    assert not at.exception


def test_upload_without_ground_truth_and_a_bad_file():
    at = app_test("pages/rpn.py").run()
    at.radio(key="rpn_source").set_value("Upload").run()
    buf = io.BytesIO()
    make_scene(3, 200, 150).image.save(buf, format="PNG")
    at.file_uploader(key="rpn_upload").set_value(("shapes.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert "Objectness p = sigmoid" in _captions(at)
    _view(at, "Recall")
    assert any("Recall needs ground truth" in i.value for i in at.info)
    at.file_uploader(key="rpn_upload").set_value(("broken.png", b"not an image", "image/png")).run()
    assert not at.exception
    assert any("broken.png" in e.value for e in at.error)


def test_stored_dataset_image_gives_recall_and_table1(session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "rpn-synth", images=3, seed=5, width=160, height=120)
    stored = store.store_upload("rpn-shapes", folder)
    at = app_test("pages/rpn.py").run()
    at.radio(key="rpn_source").set_value("Stored dataset").run()
    at.selectbox(key="rpn_dataset").set_value(stored.name).run()
    at.selectbox(key="rpn_file").set_value(stored.dataset.records[1].file).run()
    assert not at.exception
    record = stored.dataset.records[1]
    _view(at, "Recall")
    assert f"the share of the {len(record.boxes)} ground-truth boxes" in _captions(at)
    _view(at, "Table 1")
    at.selectbox(key="rpn_table1_source").set_value(f"dataset: {stored.name}").run()
    assert not at.exception
    assert "over 3 images" in _captions(at)


def test_knobs_follow_the_model_and_reset():
    at = _pinned().run()
    assert _knob(at, "rpn_pre_nms").value == 150  # mobilenet_320's own test-time setting
    _knob(at, "rpn_pre_nms").set_value(7).run()
    assert _knob(at, "rpn_pre_nms").value == 7
    at.button(key="rpn_reset").click().run()
    assert _knob(at, "rpn_pre_nms").value == 150
    at.session_state["model_source"] = DEMO_ARCH  # another model: its own settings
    at.run()
    assert not at.exception
    assert _knob(at, "rpn_pre_nms").value == 300 and _knob(at, "rpn_post_nms").value == 100


def test_a_link_with_a_box_highlights_it_on_its_image(session_tmp):
    """/diagnose links a missed box as ?dataset=&image=&box= (URL contract): /rpn opens that image
    and draws the box; on another image the box is not drawn."""
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "rpn-box-synth", images=2, seed=6, width=160, height=120)
    stored = store.store_upload("rpn-box", folder)
    record = stored.dataset.records[1]
    box = ",".join(f"{v:g}" for v in record.boxes[0])
    at = app_test("pages/rpn.py")
    for k, v in {"dataset": stored.name, "image": record.file, "box": box}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    assert any("the box from the link" in i.value for i in at.info)
    at.selectbox(key="rpn_file").set_value(stored.dataset.records[0].file).run()
    assert not any("the box from the link" in i.value for i in at.info)
