"""AppTest: every query parameter accepts only names from the lists the pages offer.

A parameter holding a filesystem path (absolute, relative, `..`, or a name prefixed the way the
contract names runs and uploads) or an unknown name falls back to the default; the path given is
never opened, listed or loaded (a Python audit hook watches every file event of the process), and
no message shows it.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from detector import checkpoints, models
from tests.app.conftest import app_test

_events: list[tuple[str, str]] = []
_watching: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if _watching and event in ("open", "os.listdir", "os.scandir", "os.chdir", "os.remove", "os.rename",
                               "shutil.copyfile", "os.mkdir", "pickle.find_class", "torch.load"):
        text = " ".join(str(a) for a in args)
        for probe in _watching:
            if probe in text:
                _events.append((event, text))


sys.addaudithook(_audit)  # hooks cannot be removed: it only records while _watching names a probe


@pytest.fixture
def probe(tmp_path):
    """A real, loadable checkpoint outside the workspace: what a hostile link would point at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret-model.pt"
    shutil.copy(checkpoints.DEMO_CHECKPOINT, path)
    (outside / "checkpoints").mkdir()
    shutil.copy(checkpoints.DEMO_CHECKPOINT, outside / "checkpoints" / "best.pt")  # a 'run folder' too
    _events.clear()
    _watching[:] = [str(outside), "secret-model", "etc/hostname"]
    yield outside
    _watching.clear()


def _texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success"):
        parts += [e.value for e in getattr(at, kind)]
        parts += [e.value for e in getattr(at.sidebar, kind)]
    return "\n".join(str(p) for p in parts)


def _hostile_models(outside):
    return [str(outside / "secret-model.pt"), str(outside), "/../../../etc/hostname", "../../../etc/hostname",
            f"run:{outside}", "run:../../outside", "run:..", "upload:../secret-model.pt", f"upload:{outside}/x.pt",
            "not_a_builder", "run:no-such-run", "upload:no-such-file.pt", "demo/../demo"]


def test_model_param_refuses_paths_and_unknown_names(probe):
    default = None
    for value in _hostile_models(probe):
        at = app_test("app.py")
        at.query_params["model"] = value
        at.run()
        assert not at.exception, (value, at.exception)
        chosen = at.sidebar.selectbox(key="model_source").value
        default = default or chosen
        assert chosen == default and chosen in (checkpoints.DEMO, *models.ARCHITECTURES), (value, chosen)
        assert any("not one this server offers" in w.value for w in at.sidebar.warning), value
        assert str(probe) not in _texts(at) and "secret-model" not in _texts(at)
        assert at.query_params["model"] in (chosen, [chosen])  # the URL is put right
    assert _events == [], _events  # nothing under the probe was opened, listed or loaded


def test_model_param_takes_a_run_by_its_name(tiny_checkpoint):
    from detector import runs

    run_dir = runs.create_run(name="url-run")
    (run_dir / "checkpoints").mkdir()
    shutil.copy(tiny_checkpoint, run_dir / "checkpoints" / "best.pt")
    at = app_test("app.py")
    at.query_params["model"] = "run:url-run"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model_source").value == "run:url-run"
    assert not at.sidebar.warning
    assert "run url-run" in _texts(at)
    # the run's absolute folder is not a name: refused, though it exists
    at = app_test("app.py")
    at.query_params["model"] = str(run_dir)
    at.run()
    assert at.sidebar.selectbox(key="model_source").value != str(run_dir)
    assert any("not one this server offers" in w.value for w in at.sidebar.warning)


def test_device_param_takes_only_auto_cpu_cuda(probe):
    for value in ("/etc/hostname", str(probe), "cuda:0", "tpu"):
        at = app_test("app.py")
        at.query_params["device"] = value
        at.run()
        assert not at.exception
        assert at.sidebar.radio(key="device_pref").value == "auto", value
    assert _events == []


def test_rpn_view_param_takes_only_a_view_name(probe):
    for value in ("../../etc/hostname", str(probe), "Nope"):
        at = app_test("pages/rpn.py")
        at.session_state["model_source"] = models.DEMO_ARCH
        at.query_params["view"] = value
        at.run()
        assert not at.exception, value
        assert at.get("button_group")[0].value == "Objectness"
        assert "Objectness p = sigmoid" in _texts(at)
    assert _events == []


def _replaced(page: str, param: str, values, probe) -> None:
    """Each value of `param` on `page` runs cleanly, is replaced in the URL and shows no probe path."""
    for value in values:
        at = app_test(page)
        at.query_params[param] = value
        at.run()
        assert not at.exception, value
        assert at.query_params[param] != value and str(probe) not in _texts(at)
    assert _events == []


def test_run_param_takes_only_a_run_of_the_workspace(probe):
    from detector import runs

    runs.create_run(name="url-known-run")
    _replaced("pages/train.py", "run", (str(probe), "../outside", "..", "/etc", "no-such-run"), probe)


def test_dataset_param_takes_only_a_stored_dataset(probe, session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "url-synth", images=2, seed=3, width=96, height=72)
    store.store_upload("url-shapes", folder)
    _events.clear()
    _replaced("pages/data.py", "dataset", (str(probe), "../datasets/url-shapes", "/etc", "no-such-dataset"), probe)


def test_image_and_box_params_take_only_a_dataset_file_and_four_numbers(probe, session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "url-image-synth", images=2, seed=4, width=96, height=72)
    stored = store.store_upload("url-image-shapes", folder)
    files = [r.file for r in stored.dataset.records]
    _events.clear()
    for image, box in ((str(probe / "secret-model.pt"), "1,2,3,4"), ("../../../etc/hostname", "/etc/hostname"),
                       (f"../{files[0]}", "nan,1,2"), (files[0], "1,2,3")):
        at = app_test("pages/rpn.py")
        at.session_state["model_source"] = "mobilenet_v3_fpn_lite"
        at.query_params["dataset"], at.query_params["image"], at.query_params["box"] = stored.name, image, box
        at.run()
        assert not at.exception, (image, box)
        assert at.selectbox(key="rpn_file").value in files  # one of the dataset's own files, whatever the link said
        assert not any("Magenta: the box from the link" in i.value for i in at.info), box  # a malformed box is ignored
    assert _events == []


def test_rpn_sample_and_det_params_take_only_a_sample_seed_and_a_detection_index(probe):
    for value in ("../../etc/hostname", str(probe), "10003", "-1", "1e4"):
        at = app_test("pages/rpn.py")
        at.session_state["model_source"] = "demo"
        at.query_params["sample"] = value
        at.query_params["det"] = value
        at.query_params["view"] = "Detections"
        at.run()
        assert not at.exception, value
        assert at.selectbox(key="rpn_seed").value == 10_001  # the first sample scene, the default
        assert at.query_params["sample"] == "10001" and "det" not in at.query_params
        assert value not in _texts(at) and str(probe) not in _texts(at)
    assert _events == []
