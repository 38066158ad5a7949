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


# ---------------------------------------------------------------- the explanation panel (Detections view)


def _explain_at(**params):
    """/rpn opened by a link to the Detections view with the shipped demo model."""
    at = app_test("pages/rpn.py")
    for k, v in {"model": "demo", "sample": "10002", "view": "Detections", **params}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _frame(at, column: str):
    """The first table on the page with this column, a grid (st.dataframe) or a static one (st.table)."""
    return next(d.value for d in [*at.dataframe, *at.table] if column in d.value.columns)


def _spec(at, key: str) -> dict:
    import json

    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id]
    return json.loads(chart.proto.spec)


@pytest.fixture(scope="module")
def demo_explained():
    """The demo model's own explanation of the sample scene the page shows (ui.inputs.sample_image)."""
    from detector import checkpoints
    from detector.explain import explain_image
    from detector.images import load_image, to_tensor
    from detector.inspect import inspect
    from ui.inputs import sample_image

    demo = checkpoints.load_model(checkpoints.DEMO)
    image = load_image(sample_image(10002)[0], name="sample-10002.png")
    return explain_image(demo.model, inspect(demo.model, [to_tensor(image)]), 0, demo.class_names)


def test_picking_a_detection_opens_its_explanation(demo_explained):
    at = _explain_at()
    assert at.selectbox(key="rpn_det").value == -1 and "det" not in at.query_params
    at.selectbox(key="rpn_det").set_value(1).run()
    assert not at.exception, at.exception
    det = demo_explained.detections[1]
    assert any(h.value.startswith(f"Why detection 1: {det.label_name}") for h in at.subheader)
    assert at.query_params["det"] == "1"  # shareable
    chain = _frame(at, "how")
    assert list(chain["stage"]) == ["anchor", "proposal (before clipping)", f"RoI #{det.roi.index}", "detection 1"]
    assert f"FPN level {det.anchor.level}, cell (row {det.anchor.row}, column {det.anchor.column})" in chain["how"][0]
    deltas = _frame(at, "t_x")
    assert list(deltas["t_x"]) == [round(float(det.anchor.rpn_deltas[0]), 4), round(float(det.box_deltas[0]) / 10, 4)]
    suppressed = _frame(at, "from RoI")
    assert list(suppressed["from RoI"]) == [c.roi for c in det.suppressed]
    # the class distribution: every class and background, sorted, the detection's score on top
    bars = _spec(at, "rpn_explain_classes")["data"][0]
    assert sorted(bars["y"]) == ["background", "circle", "rectangle", "triangle"] and bars["y"][0] == det.label_name
    # the saliency map: Grad-CAM first, EigenCAM on the switch; the opacity control reaches the figure
    assert _spec(at, "rpn_explain_saliency")["data"][1]["name"] == "Grad-CAM"
    at.radio(key="rpn_saliency_method").set_value("eigen").run()
    at.slider(key="rpn_saliency_opacity").set_value(0.3).run()
    assert not at.exception
    heat = _spec(at, "rpn_explain_saliency")["data"][1]
    assert heat["name"] == "EigenCAM" and heat["opacity"] == 0.3
    assert any("EigenCAM" in c.value and "same for every detection" in c.value for c in at.caption)


def test_a_det_link_opens_the_panel_and_bad_values_are_refused(demo_explained):
    at = _explain_at(det="0")
    assert at.selectbox(key="rpn_det").value == 0
    assert any(h.value.startswith("Why detection 0") for h in at.subheader)
    n = len(demo_explained.detections)
    for bad in (str(n), "-1", "x", "1.5", "../etc"):
        at = _explain_at(det=bad)
        assert at.selectbox(key="rpn_det").value == -1, bad
        assert any("The link's det= names no detection" in w.value for w in at.warning), bad
        assert "det" not in at.query_params
        assert not any(h.value.startswith("Why detection") for h in at.subheader)


def test_a_det_link_with_a_box_finds_the_detection_with_that_box(demo_explained):
    det = demo_explained.detections[1]
    box = ",".join(f"{float(v):.1f}" for v in det.box)
    at = _explain_at(det="0", box=box)  # an index from a batched run elsewhere, and its box
    assert at.selectbox(key="rpn_det").value == 1


def test_a_missed_box_link_shows_the_nearest_candidate_at_each_stage(session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "rpn-missed-synth", images=2, seed=6, width=160, height=120)
    stored = store.store_upload("rpn-missed", folder)
    record = stored.dataset.records[1]
    at = app_test("pages/rpn.py")
    for k, v in {"model": "demo", "dataset": stored.name, "image": record.file, "view": "Detections",
                 "box": ",".join(f"{v:g}" for v in record.boxes[0])}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    table = _frame(at, "best IoU")
    assert list(table["stage"]) == ["anchor", "proposal before NMS", "proposal after NMS", "RoI"]
    assert all(0 <= v <= 1 for v in table["best IoU"])
    assert any("candidate:" in m.value for m in at.markdown)  # its class's fate at the best RoI


def test_roialign_view_shows_roi_pooling_beside_it():
    from detector import checkpoints
    from detector.images import load_image, to_tensor
    from detector.inspect import inspect
    from detector.roi_pooling import compare_pooling
    from ui.inputs import sample_image

    at = app_test("pages/rpn.py")
    for k, v in {"model": "demo", "sample": "10002", "view": "RoIAlign"}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    at.session_state["rpn_rank"] = 2
    at.run()
    assert any(h.value == "RoI pooling beside RoIAlign" for h in at.subheader)
    demo = checkpoints.load_model(checkpoints.DEMO)
    insp = inspect(demo.model, [to_tensor(load_image(sample_image(10002)[0]))])
    cmp = compare_pooling(demo.model, insp, int(insp.rois_of(0)[2]))
    caption = next(c.value for c in at.caption if c.value.startswith("Proposal 2 on FPN level"))
    assert f"up to {cmp.corner_shift_input:.1f} input pixels" in caption and "{} x {} whole cells".format(*cmp.rounded_cells) in caption
    pair = _spec(at, "rpn_roi_pooled_pair")["data"]
    assert [t["name"] for t in pair] == ["roi_pool (max)", "roi_align (bilinear mean)"]
    assert len(_spec(at, "rpn_roi_pool_bins")["data"]) >= 3 and len(_spec(at, "rpn_roi_align_points")["data"]) >= 4
