"""AppTest for the data page: upload a zip and see the report; a refused zip; filters; browser."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from detector.data.synthetic import write_synthetic
from tests.app.conftest import app_test


def zip_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def yolo_zip(tmp_path_factory) -> bytes:
    folder = write_synthetic(tmp_path_factory.mktemp("page") / "shapes", images=8, seed=7, format="yolo",
                             width=96, height=72)
    (folder / "labels" / "synth_00001.txt").write_text("0 0.5 0.5 0.2\n2 0.9 0.5 0.4 0.4\n")  # two problems
    return zip_of(folder)


def test_upload_a_zip_and_see_the_report(yolo_zip):
    at = app_test("pages/data.py").run()
    assert not at.exception
    at.file_uploader(key="data_zip").set_value(("shapes.zip", yolo_zip, "application/zip"))
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="data_dataset").value.startswith("shapes")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Format"] == "YOLO" and metrics["Images"] == "8" and metrics["Problems"] == "2"
    assert any("Usable for training" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["line"]) == [1, 2] and set(table["file"]) == {"labels/synth_00001.txt"}
    assert at.query_params["dataset"] in (at.selectbox(key="data_dataset").value, [at.selectbox(key="data_dataset").value])

    # filter the report, then the browser: only the image with problems, its warnings under it
    at.multiselect(key="data_action").set_value(["line left out"]).run()
    assert len(at.dataframe[0].value) == 1
    at.selectbox(key="data_problem_filter").set_value("images with problems").run()
    assert not at.exception
    assert any("1 image matches" in c.value for c in at.caption)
    assert any("expected 5 fields" in w.value for w in at.warning)
    at.button(key="data_decode").click().run()
    assert any("All 8 images decode" in s.value for s in at.success)
    at.selectbox(key="data_problem_filter").set_value("all images")
    at.multiselect(key="data_class_filter").set_value(["triangle"]).run()
    assert not at.exception


def test_a_hostile_zip_is_refused_with_one_line(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../escape.txt", b"x")
    at = app_test("pages/data.py").run()
    at.file_uploader(key="data_zip").set_value(("evil.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("archive refused" in e.value for e in at.error)
    assert not any(o.startswith("evil") for o in (at.selectbox(key="data_dataset").options
                                                   if at.selectbox else []))


def test_folder_upload_keeps_sub_folders(tmp_path):
    folder = write_synthetic(tmp_path / "vocset", images=4, seed=3, format="voc", width=64, height=48)
    files = [(f"vocset/{p.relative_to(folder).as_posix()}", p.read_bytes(), "application/octet-stream")
             for p in sorted(folder.rglob("*")) if p.is_file()]
    at = app_test("pages/data.py").run()
    at.file_uploader(key="data_folder").set_value(files).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="data_dataset").value.startswith("vocset")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Format"] == "VOC" and metrics["Images"] == "4"
    assert any("3 train / 1 validation" in s.value for s in at.success)  # the dataset's own ImageSets split


def test_register_by_path_and_switch_the_voc_convention(tmp_path, monkeypatch):
    from tests.unit.data.exports import cvat_voc

    allowed = tmp_path / "exports"
    export = cvat_voc(allowed / "cvat-voc")
    monkeypatch.setenv("DETECTOR_DATA_ROOTS", str(allowed))
    at = app_test("pages/data.py").run()
    assert not at.exception
    import streamlit as st

    limit = f"up to {int(st.get_option('server.maxUploadSize')):,} MB"  # Streamlit's own setting, not a copy
    assert any(limit in c.value and "register it by path" in c.value for c in at.caption)
    assert any(str(allowed.resolve()) in c.value for c in at.caption)  # the allowed folders are listed
    at.text_input(key="data_path").input(str(export.root))
    at.button(key="data_register").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="data_dataset").value.startswith("cvat-voc")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Format"] == "VOC" and metrics["Images"] == "3" and metrics["Problems"] == "0"
    assert any("VOC coordinates: zero-based" in i.value and "img_0.xml" in i.value for i in at.info)
    name = at.selectbox(key="data_dataset").value
    at.selectbox(key=f"data_voc_read_{name}").set_value("one-based").run()
    assert not at.exception, at.exception
    assert any("VOC coordinates: one-based, as asked" in i.value for i in at.info)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Problems"] == "1"  # the box at 0.0 read as a 1-based index lands at -1


def test_register_by_path_refuses_a_path_outside_the_allowed_folders(tmp_path, monkeypatch):
    from tests.unit.data.exports import ultralytics_yolo

    allowed, outside = tmp_path / "allowed", tmp_path / "private"
    allowed.mkdir()
    export = ultralytics_yolo(outside / "yolo")
    (allowed / "sneaky").symlink_to(export.root, target_is_directory=True)
    monkeypatch.setenv("DETECTOR_DATA_ROOTS", str(allowed))
    at = app_test("pages/data.py").run()
    before = list(at.selectbox(key="data_dataset").options) if at.selectbox else []
    for text, why in ((str(export.root), "not under a folder datasets may be registered from"),
                      (str(allowed / "sneaky"), "a symbolic link leads outside"),
                      (str(allowed / ".." / "private" / "yolo"), "'..' is refused")):
        at.text_input(key="data_path").input(text)
        at.button(key="data_register").click().run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert any(why in e for e in errors), errors
        assert not any(str(outside) in e for e in errors)  # no server path outside the roots is shown
        assert (list(at.selectbox(key="data_dataset").options) if at.selectbox else []) == before
