"""AppTest of the training page: start a tiny run from the form and watch its curves grow as the
live fragment reruns; a run made by the CLI appears; an interrupted run resumes; hard examples."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pytest

from detector import models, runs
from detector.data.store import store_upload
from detector.data.synthetic import write_synthetic
from detector.workspace import runs_dir
from tests.app.conftest import ROOT, app_test
from tests.polling import wait_for

PAGE = "pages/train.py"


@pytest.fixture(scope="module")
def dataset(session_tmp) -> str:
    """A stored synthetic dataset: 8 images of 96 x 96 px (6 train, 2 val)."""
    folder = write_synthetic(session_tmp / "train-page-synth", images=8, seed=3, width=96, height=96)
    return store_upload("train-page-synth", folder).name


def _points(spec: str) -> int:
    """Points in the first trace of a plotly figure's JSON (plain list or plotly's typed-array form)."""
    x = json.loads(spec)["data"][0]["x"]
    if isinstance(x, dict):  # {"dtype": "f8", "bdata": base64}
        return len(base64.b64decode(x["bdata"])) // int(x["dtype"][1:])
    return len(x)


def _chart(at, key: str):
    return next(el for el in at.get("plotly_chart") if el.key == key)


def _loss_points(at) -> int:
    charts = [el for el in at.get("plotly_chart") if el.key == "train_loss_chart"]
    return _points(charts[0].proto.spec) if charts else 0


def _header(at) -> str:
    return " ".join(m.value for m in at.markdown if m.value.startswith("### "))


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_start_a_tiny_run_and_watch_the_curves_grow(dataset):
    at = app_test(PAGE).run()
    assert not at.exception
    at.selectbox(key="train_data").set_value(dataset)
    at.radio(key="train_start_from").set_value("architecture").run()
    at.selectbox(key="train_arch").set_value(models.DEMO_ARCH)
    at.number_input(key="train_epochs").set_value(3)
    at.number_input(key="train_batch").set_value(1)
    at.number_input(key="train_min_size").set_value(96)
    at.number_input(key="train_max_size").set_value(128)
    at.number_input(key="train_workers").set_value(0)
    at.number_input(key="train_snapshots").set_value(1)
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    name = at.query_params["run"]
    name = name[0] if isinstance(name, list) else name
    run_dir = runs_dir() / name
    config = runs.read_config(run_dir)
    assert config["model"] == models.DEMO_ARCH and config["epochs"] == 3 and config["workers"] == 0
    assert config["model_kwargs"] == {"min_size": 96, "max_size": 128}

    # the page reruns (as the fragment does every few seconds) while the engine trains
    seen, tails = [], set()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        tail = at.session_state["train_tails"][str(run_dir.resolve())]
        tails.add(id(tail))
        seen.append(_loss_points(at))
        if runs.read_status(run_dir).state in ("done", "failed"):
            break
        time.sleep(0.5)
    at.run()
    status = runs.read_status(run_dir)
    assert status.state == "done", (status, runs.log_tail(run_dir))
    final = _loss_points(at)
    train, val = runs.read_metrics(run_dir)
    assert final == len(train) == 3 * 6  # every step drawn once: 6 training images, batch 1, 3 epochs
    grown = [n for n in seen if 0 < n < final]
    assert grown, f"no partial curve seen while training: {seen}"
    assert seen == sorted(seen), f"the curve shrank: {seen}"
    # one MetricsTail per run and session, read to the end of the file (only new bytes each time)
    tail = at.session_state["train_tails"][str(run_dir.resolve())]
    assert len(tails) == 1 and tail.offset == (run_dir / runs.METRICS).stat().st_size
    assert len(tail.val) == len(val) == 3
    assert f"{name} · done" in _header(at)
    # a finished run links to its diagnosis (URL contract: model=run:<id>, run=<id>)
    assert f"diagnose?model=run:{name}&run={name}" in [b.proto.url for b in at.get("link_button")]
    assert _metric(at, "Epoch") == "3/3" and _metric(at, "Step") == "18 / 18"
    assert "validation mAP per epoch" in _chart(at, "train_val_chart").proto.spec
    # watch the RPN learn: snapshots of epochs 0..3, the slider picks one
    assert at.select_slider[0].label == "Epoch" and at.select_slider[0].options == ["0", "1", "2", "3"]
    assert at.select_slider[0].value == 3  # follows the latest epoch
    snap = runs.read_snapshot(run_dir, 3)
    shown = snap.images[at.selectbox(key="train_snap_image").value]
    assert len(shown.gt_boxes) or not any(len(im.gt_boxes) for im in snap.images)  # opens on an image with boxes
    at.select_slider[0].set_value(0).run()
    assert not at.exception
    assert "objectness, epoch 0" in _chart(at, "train_snap_obj").proto.spec
    at.run()  # the user's choice sticks
    assert at.select_slider[0].value == 0


def test_cli_run_appears_resumes_when_interrupted_and_shows_hard_examples(dataset):
    out = runs_dir() / "made-by-cli"
    cmd = [sys.executable, "-m", "detector", "train", "--out", str(out), "--data", dataset, "--model", models.DEMO_ARCH,
           "--epochs", "1", "--batch-size", "2", "--workers", "0", "--min-size", "96", "--max-size", "128",
           "--set", "snapshot_images=1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]

    at = app_test(PAGE)
    at.query_params["run"] = "made-by-cli"
    at.run()
    assert not at.exception
    assert "made-by-cli · done" in _header(at)
    assert _metric(at, "Epoch") == "1/1"
    table = at.dataframe[0].value
    row = table[table["run"] == "made-by-cli"].iloc[0]
    assert row["state"] == "done" and row["dataset"] == dataset and row["model"] == models.DEMO_ARCH

    # hardest validation images, each linking to the RPN inspector with this run as the model
    at.button(key="train_hard_go").click().run()
    assert not at.exception, at.exception
    hard = [el for el in at.get("plotly_chart") if (el.key or "").startswith("train_hard_")]
    assert len(hard) == 2  # both validation images, hardest first
    links = [m.value for m in at.markdown if "rpn?model=" in m.value]
    assert len(links) == 2 and all(f"rpn?model=run:made-by-cli&dataset={dataset}&image=" in link for link in links)

    # the process died while the status said running: interrupted, and Resume brings it back
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.write_status(out, state="running", pid=dead.pid)
    at.run()
    assert "made-by-cli · interrupted" in _header(at)
    assert any("interrupted" in w.value for w in at.warning)
    at.button(key="train_resume").click().run()
    assert not at.exception
    assert wait_for(lambda: runs.read_status(out).state == "done", timeout_s=120), runs.log_tail(out)
    assert "resuming after epoch 1" in "\n".join(runs.log_tail(out))
    at.run()
    assert "made-by-cli · done" in _header(at)


def _widget(at, key: str):
    for kind in ("number_input", "selectbox", "toggle", "text_input", "radio"):
        for el in at.get(kind):
            if el.key == key:
                return el
    raise KeyError(key)


def test_form_starts_from_the_best_start_with_every_config_knob_explained(dataset):
    from dataclasses import fields

    from detector.train_config import TrainConfig
    from ui.train.form import LABELS, OWN_WIDGETS

    at = app_test(PAGE).run()
    at.selectbox(key="train_data").set_value(dataset).run()
    assert not at.exception
    # no COCO weights in the test's torch cache: fine-tuning the shipped demo model, and why
    assert at.radio(key="train_start_from").value == "demo"
    why = " ".join(c.value for c in at.caption)
    assert "No COCO weights are cached here" in why and "Your classes are its classes" in why
    # every knob of TrainConfig has its widget, starting at TrainConfig()'s default with its help line
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in OWN_WIDGETS:
            continue
        el = _widget(at, LABELS.get(f.name, (None, f"train_{f.name}"))[1])
        assert f.metadata["help"] in (el.help or ""), f.name
        value = getattr(defaults, f.name)
        if value == "auto" and "resolve" in f.metadata:  # e.g. workers: the form shows what auto means here
            value = f.metadata["resolve"]()
        if not isinstance(value, (tuple, list)):
            assert el.value == value or (el.value in ("", None) and value is None), (f.name, el.value, value)
    # the schedule, in steps for this dataset (6 training images): short runs get full-lr steps
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch").set_value(1).run()
    assert any("Schedule: 6 steps per epoch, 12 in all: warm-up over 1 step, then 5 steps at the full "
               "learning rate, x0.1 after epoch 1" in c.value for c in at.caption)
    # a run name: checked, then used as the run's id
    at.text_input(key="train_run_name").set_value("../escape").run()
    assert any("Run name: a run name uses letters" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    at.text_input(key="train_run_name").set_value("demo-finetune").run()
    at.number_input(key="train_min_size").set_value(96)
    at.number_input(key="train_max_size").set_value(128)
    at.number_input(key="train_workers").set_value(0)
    at.button(key="train_start").click().run()
    assert not at.exception
    run_dir = runs_dir() / "demo-finetune"
    try:
        config = runs.read_config(run_dir)
        assert config["init"] == "demo" and config["epochs"] == 2 and config["weights"] == "none"
        assert at.query_params["run"] in ("demo-finetune", ["demo-finetune"])
    finally:
        runs.request_stop(run_dir)
        assert wait_for(lambda: runs.read_status(run_dir).shown_state not in runs.ACTIVE_STATES, 180)
