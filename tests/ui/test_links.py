"""ui.links: in-app links hold names, never paths, and read back to the same model."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from detector import checkpoints, models
from detector.workspace import runs_dir
from ui.links import models_dir, model_param, page_url
from ui.model import offered


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_page_url_names_pages_and_encodes_values():
    assert page_url("rpn") == "rpn"
    assert page_url("/train", run="r1") == "train?run=r1"
    assert page_url("home") == "./"
    url = page_url("rpn", model="demo", dataset="my shapes", image="valid/img 028.jpg", box=(1, 2.5, 30, 40))
    assert url.startswith("rpn?model=demo&dataset=")
    assert _query(url) == {"model": ["demo"], "dataset": ["my shapes"], "image": ["valid/img 028.jpg"],
                           "box": ["1,2.5,30,40"]}
    assert page_url("detect", model="demo", dataset=None) == "detect?model=demo"  # None is left out
    with pytest.raises(ValueError, match="no page"):
        page_url("nowhere")


def test_a_run_folder_becomes_its_id_and_comes_back():
    run = runs_dir() / "link-run"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    url = page_url("rpn", model=run)
    assert _query(url)["model"] == ["run:link-run"]
    assert str(run.parent) not in url  # the path never reaches the URL
    assert model_param(run / "checkpoints" / "best.pt") == "run:link-run"
    (run / "checkpoints" / "best.pt").write_bytes(b"x")
    assert offered("run:link-run") == "run:link-run"  # the URL's name is the model source
    assert offered("run:no-such-run") is None


def test_uploads_builders_demo_and_refused_values(tmp_path):
    models_dir().mkdir(parents=True, exist_ok=True)
    up = models_dir() / "mine.pt"
    up.write_bytes(b"x")
    assert model_param(up) == "upload:mine.pt"
    assert offered("upload:mine.pt") == "upload:mine.pt"
    assert model_param(checkpoints.DEMO) == offered(checkpoints.DEMO) == checkpoints.DEMO
    name = next(iter(models.ARCHITECTURES))
    assert offered(model_param(name)) == name
    with pytest.raises(ValueError, match="cannot name|not a model"):
        model_param(tmp_path / "elsewhere.pt")  # an arbitrary path has no name in a link
    for hostile in ("run:../..", "upload:../runs", "/etc/passwd", str(up), "run:", "upload:a/b"):
        assert offered(hostile) is None
    with pytest.raises(ValueError, match="name, not the path"):
        page_url("rpn", dataset=tmp_path)


def test_detection_links_and_the_det_param():
    from ui.links import detection_url, int_from_param

    url = detection_url("demo", 3, box=[1, 2.5, 30, 40], sample=10002)
    assert url == "rpn?model=demo&sample=10002&box=1,2.5,30,40&view=Detections&det=3"
    url = detection_url("demo", 0, dataset="shapes", image="valid/a b.png")
    assert _query(url) == {"model": ["demo"], "dataset": ["shapes"], "image": ["valid/a b.png"],
                           "view": ["Detections"], "det": ["0"]}
    assert int_from_param("3", 4) == 3 and int_from_param("0", 1) == 0
    for bad in ("4", "-1", "x", "1.5", "", None, " 2", "02", "../1"):
        assert int_from_param(bad, 4) is None, bad
