"""AppTest: the router, the shared sidebar and the overview page."""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import app_test

ROOT = Path(__file__).resolve().parents[2]


def test_app_renders_overview_and_sidebar_offline():
    at = app_test("app.py").run()
    assert not at.exception
    assert at.title[0].value == "Faster R-CNN Explorer"
    model_box = at.sidebar.selectbox(key="model_source")
    assert "fasterrcnn_resnet50_fpn (random weights)" in model_box.options
    # no weights are cached in tests: the sidebar says so plainly
    sidebar_text = " ".join(w.value for w in at.sidebar.warning) + " ".join(w.value for w in at.sidebar.info)
    if model_box.value != "demo":
        assert "random weights" in sidebar_text
    assert any("CPU" in c.value for c in at.sidebar.caption)


def test_choosing_a_model_updates_the_url_and_the_status():
    at = app_test("app.py").run()
    at.sidebar.selectbox(key="model_source").set_value("fasterrcnn_resnet50_fpn").run()
    assert not at.exception
    assert at.query_params["model"] in ("fasterrcnn_resnet50_fpn", ["fasterrcnn_resnet50_fpn"])
    assert any("fasterrcnn_resnet50_fpn" in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_overview_links_every_existing_page():
    from ui.router import PAGES

    at = app_test("pages/home.py").run()  # on its own, without the router: plain links
    assert not at.exception
    assert any("L = L_cls" in c.value for c in at.caption)
    texts = [m.value for m in at.markdown]
    listed = [p for p in PAGES if p.url and (ROOT / p.file).is_file()]
    assert {p.url for p in listed} >= {"anchors", "rpn", "data", "train", "detect"}
    summaries = []
    for page in listed:  # each page: a link to its URL, then a line saying what it shows
        link = f"**[{page.title}]({page.url})**"
        assert link in texts
        summaries.append(texts[texts.index(link) + 1])
    assert all(len(t) > 40 for t in summaries) and len(set(summaries)) == len(summaries)
    assert "anchors to RoIs" in summaries[[p.url for p in listed].index("rpn")]
    assert not any("[Overview]" in t for t in texts)  # the overview does not list itself


def test_a_shared_link_lands_on_its_model_with_the_weights_status():
    at = app_test("app.py")
    at.query_params["model"] = "fasterrcnn_resnet50_fpn"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model_source").value == "fasterrcnn_resnet50_fpn"
    assert any("no COCO weights here: random weights; Download to fetch them" in w.value for w in at.sidebar.warning)
    assert at.sidebar.button(key="download_weights")
