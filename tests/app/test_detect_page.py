"""AppTest: the Detect page with uploads, bad files, live filters and the comparison."""

from __future__ import annotations

import io
import json
import shutil

from detector.scenes import make_scene
from tests.app.conftest import app_test
from ui.links import models_dir, page_url
from ui.model import model_label


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    make_scene(seed, 160, 120).image.save(buf, format="PNG")
    return buf.getvalue()


def _uploaded(checkpoint) -> str:
    """Put a checkpoint where uploaded models live and return its URL name (`upload:FILE`)."""
    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, models_dir() / "tiny.pt")
    return "upload:tiny.pt"


def test_offline_page_shows_samples():
    at = app_test("pages/detect.py").run()
    assert not at.exception
    assert any("synthetic sample images" in i.value for i in at.info)


def test_each_sample_detection_links_to_its_explanation_on_rpn():
    """The table and the gallery link every detection of a sample scene to /rpn?...&det=K, and that
    link opens the explanation of the same detection (same class and score)."""
    from urllib.parse import parse_qs, urlsplit

    at = app_test("pages/detect.py")
    at.session_state["model_source"] = "demo"
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) > 0 and table["explain in /rpn"].notna().all()
    gallery = " ".join(m.value for m in at.markdown if m.value.startswith("Explain in /rpn: "))
    for row in table.head(3).itertuples():
        link = row[-1]
        assert f"({link})" in gallery  # the gallery carries the same links
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert query["model"] == "demo" and query["view"] == "Detections" and query["sample"] in row.image
        rpn = app_test("pages/rpn.py")
        for k, v in query.items():
            rpn.query_params[k] = v
        rpn.run()
        assert not rpn.exception, rpn.exception
        assert rpn.selectbox(key="rpn_det").value == int(query["det"])
        assert any(h.value == f"Why detection {query['det']}: {row.label} {row.score:.3f}" for h in rpn.subheader)


def test_an_upload_has_no_link_but_says_where_to_explain_it(tiny_checkpoint):
    at = app_test("pages/detect.py")
    at.session_state["model_source"] = _uploaded(tiny_checkpoint)
    at.run()
    at.file_uploader(key="detect_upload").set_value([("a.png", _png(1), "image/png")]).run()
    assert not at.exception
    assert at.dataframe[0].value["explain in /rpn"].isna().all()
    assert any("An upload lives in this session only" in c.value for c in at.caption)


def test_uploads_bad_files_filters_and_compare(tiny_checkpoint):
    at = app_test("pages/detect.py")
    at.query_params["model"] = _uploaded(tiny_checkpoint)
    at.run()
    at.file_uploader(key="detect_upload").set_value([
        ("one.png", _png(1), "image/png"), ("two.png", _png(2), "image/png"),
        ("broken.jpg", b"\xff\xd8\xff\xe0garbage", "image/jpeg"),
    ])
    at.slider(key="detect_threshold").set_value(0.0)
    at.run()
    assert not at.exception
    assert any("broken.jpg" in e.value for e in at.error)
    table = at.dataframe[0].value
    assert set(table["image"]) == {"one.png", "two.png"}
    assert len(table) == 10  # the tiny checkpoint returns its 5 best boxes per image
    # a stricter threshold filters the cached results
    cut = round(float(table["score"].median()) + 0.025, 2)
    at.slider(key="detect_threshold").set_value(cut).run()
    assert len(at.dataframe[0].value) == int((table["score"] >= cut).sum()) < 10
    at.slider(key="detect_threshold").set_value(0.0).run()
    classes = at.multiselect(key="detect_classes")
    keep = [classes.options[0]]
    at.multiselect(key="detect_classes").set_value(keep).run()
    assert set(at.dataframe[0].value["label"]) <= set(keep)
    counts = at.dataframe[1].value
    assert counts["count"].sum() == len(at.dataframe[0].value)
    at.toggle(key="compare_run").set_value(True).run()
    assert not at.exception
    # two figures side by side, each titled with its model and its detections on the chosen image
    # (the same count as the table's rows for that image at this threshold), each linking to /rpn
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [sp["layout"].get("title", {}).get("text", "") for sp in specs]
    image = at.selectbox(key="compare_image").value
    model_a, model_b = at.selectbox(key="compare_a").value, at.selectbox(key="compare_b").value
    label_a, label_b = model_label(model_a), model_label(model_b)
    rows = at.dataframe[0].value
    n_a = int((rows["image"] == image).sum())
    assert f"{label_a}: {n_a}" in titles
    assert any(t.startswith(f"{label_b}: ") for t in titles)
    links = [m.value for m in at.markdown if "in the RPN inspector" in m.value]
    assert any(page_url("rpn", model=model_a) in m for m in links)
    assert any(page_url("rpn", model=model_b) in m for m in links)


def _other_classes_checkpoint(session_tmp) -> str:
    """A second tiny model with other class names (as a freshly fine-tuned model has)."""
    from detector import checkpoints, models

    path = models_dir() / "other-classes.pt"
    if not path.exists():
        models_dir().mkdir(parents=True, exist_ok=True)
        kwargs = {"min_size": 128, "max_size": 160, "box_score_thresh": 0.0, "box_detections_per_img": 5}
        model = models.build_model(models.DEMO_ARCH, ("cat", "dog"), **kwargs)
        checkpoints.save_checkpoint(path, model, models.DEMO_ARCH, ("cat", "dog"), kwargs)
    return "upload:other-classes.pt"


def test_class_filter_follows_the_model(tiny_checkpoint, session_tmp):
    at = app_test("pages/detect.py")
    at.query_params["model"] = _uploaded(tiny_checkpoint)
    at.run()
    at.slider(key="detect_threshold").set_value(0.0).run()
    assert at.multiselect(key="detect_classes").value == ["circle", "rectangle", "triangle"]
    at.multiselect(key="detect_classes").set_value(["circle"]).run()
    at.slider(key="detect_threshold").set_value(0.05).run()  # another rerun: the user's choice sticks
    assert at.multiselect(key="detect_classes").value == ["circle"]

    # the model changes while on the page (as the sidebar does): the filter resets to its classes
    from ui.model import MODEL_KEY

    at.session_state[MODEL_KEY] = _other_classes_checkpoint(session_tmp)  # a model source is its name
    at.slider(key="detect_threshold").set_value(0.0).run()
    assert not at.exception
    classes = at.multiselect(key="detect_classes")
    assert classes.options == ["cat", "dog"] and classes.value == ["cat", "dog"]
    table = at.dataframe[0].value
    assert len(table) == 20 and set(table["label"]) <= {"cat", "dog"}  # 5 per sample image, 4 images

    # an empty filter says so next to the (empty) result
    at.multiselect(key="detect_classes").set_value([]).run()
    assert len(at.dataframe[0].value) == 0
    assert any("0 detections in 4 images · no class selected" in h.value for h in at.subheader)
