"""The /diagnose page driven by AppTest: a stored synthetic dataset and a tiny checkpoint (random
weights with box_score_thresh 0, so every stage has something to show)."""

from __future__ import annotations

import shutil

import pytest

from tests.app.conftest import app_test

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def stored(session_tmp):
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(session_tmp / "diag-synth", images=6, seed=11, width=160, height=120, val_fraction=0.5)
    return store.store_upload("diag-shapes", folder)


@pytest.fixture(scope="module")
def uploaded(tiny_checkpoint):
    """The tiny checkpoint as an uploaded model (workspace/models/), so links can name it."""
    from ui.links import models_dir

    models_dir().mkdir(parents=True, exist_ok=True)
    path = models_dir() / "tiny.pt"
    shutil.copy(tiny_checkpoint, path)
    return path


def _page(source, **params):
    at = app_test("pages/diagnose.py")
    at.session_state["model_source"] = source
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_diagnoses_a_stored_dataset_with_every_view(stored, uploaded):
    at = _page("upload:tiny.pt", dataset=stored.name)
    assert not at.exception, at.exception
    assert at.selectbox(key="diag_target").value is not None
    assert _metric(at, "images") == str(len(stored.val_indices))
    table = at.dataframe[0].value
    assert list(table.columns[:4]) == ["class", "gt", "AP", "AP50"]
    assert "missed boxes" in [m.label for m in at.metric]
    # the missed boxes table links each box to /rpn on its image, with the box (URL contract)
    missed = next(d.value for d in at.dataframe if "open in /rpn" in d.value.columns)
    assert len(missed) > 0
    link = missed["open in /rpn"].iloc[0]
    assert link.startswith("rpn?model=upload:tiny.pt&dataset=") and "&image=" in link and "&box=" in link
    assert "Open this box in the RPN inspector" in " ".join(m.value for m in at.markdown)


def test_false_positives_and_confusions_link_to_their_explanation(stored, uploaded):
    from urllib.parse import parse_qs, urlsplit

    at = _page("upload:tiny.pt", dataset=stored.name)
    at.slider(key="diag_score").set_value(0.0).run()  # random weights: every detection a false positive or worse
    assert not at.exception
    wrong = next(d.value for d in at.dataframe if "explain in /rpn" in d.value.columns)
    assert len(wrong) > 0 and set(wrong["sits on"]) <= {"circle", "rectangle", "triangle", "background"}
    query = parse_qs(urlsplit(wrong["explain in /rpn"].iloc[0]).query)
    assert query["model"] == ["upload:tiny.pt"] and query["dataset"] == [stored.name]
    assert query["image"] == [wrong["image"].iloc[0]] and query["view"] == ["Detections"]
    assert query["det"] == [str(wrong["detection"].iloc[0])] and len(query["box"][0].split(",")) == 4
    assert f"[Explain this detection in the RPN inspector]({wrong['explain in /rpn'].iloc[0]})" in [
        m.value for m in at.markdown]
    # the link opens the panel of that detection on /rpn
    rpn = app_test("pages/rpn.py")
    for k, v in query.items():
        rpn.query_params[k] = v[0]
    rpn.run()
    assert not rpn.exception, rpn.exception
    assert any(h.value.startswith("Why detection") for h in rpn.subheader)


def test_thresholds_move_the_report(stored, uploaded):
    at = _page("upload:tiny.pt", dataset=stored.name)
    before = _metric(at, "missed boxes")
    at.slider(key="diag_score").set_value(0.0).run()
    assert not at.exception
    after = _metric(at, "missed boxes")
    assert int(after.split()[0]) <= int(before.split()[0])


def test_tuner_changes_the_figures_and_saves_a_checkpoint(stored, uploaded):
    from detector import checkpoints
    from ui.links import models_dir

    at = _page("upload:tiny.pt", dataset=stored.name)
    at.tabs  # the tuner tab's widgets are in the tree
    at.number_input(key="diag_knob_box_detections_per_img").set_value(1).run()
    assert not at.exception
    at.text_input(key="diag_save_name").set_value("tiny tuned").run()
    at.button(key="diag_save").click().run()
    assert not at.exception
    saved = models_dir() / "tiny-tuned.pt"
    assert saved.is_file()
    assert checkpoints.read_checkpoint(saved)["model_kwargs"]["box_detections_per_img"] == 1
    assert any("Saved tiny-tuned.pt" in s.value for s in at.success)


def test_a_runs_diagnosis_is_written_and_reopens(stored, tiny_checkpoint):
    from detector import runs

    run_dir = runs.create_run({"data": stored.name}, name="diag-run")
    runs.checkpoint_path(run_dir, "best").parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_checkpoint, runs.checkpoint_path(run_dir, "best"))
    at = _page(f"run:{run_dir.name}", run=run_dir.name)
    assert not at.exception, at.exception
    assert "diag-run" in at.selectbox(key="diag_target").format_func(at.selectbox(key="diag_target").value)
    written = runs.read_diagnosis(run_dir)
    assert written is not None and written["split"] == "val" and written["images"] == len(stored.val_indices)
    again = _page(f"run:{run_dir.name}", run=run_dir.name)
    assert not again.exception
    assert any("diagnosis.json" in s.value for s in again.success)


def _all_images(at, stored):
    """Choose the stored dataset's all-images target (6 images) on the page."""
    box = at.selectbox(key="diag_target")
    box.set_value(next(i for i, label in enumerate(box.options) if f"{stored.name} (all images)" in label))
    return at.run()


def _passes_on_disk():
    from detector.workspace import workspace_root

    return sorted((workspace_root() / "diagnosis").glob("*"))


def test_a_pass_the_machine_cannot_hold_is_refused_and_leaves_nothing(stored, uploaded, monkeypatch):
    from detector.diagnosis import passes

    monkeypatch.setattr(passes, "memory_available", lambda: 1024)
    before = _passes_on_disk()
    at = _all_images(_page("upload:tiny.pt", dataset=stored.name), stored)
    assert not at.exception
    at.number_input(key="diag_images_6").set_value(2).run()
    assert not at.exception
    assert any(i.value.startswith("The pass: 2 images (2 to run), about") for i in at.info)
    refusal = " ".join(e.value for e in at.error)
    assert "A pass over 2 images needs" in refusal and "(0.0 MiB free)" in refusal
    assert "mAP" not in [m.label for m in at.metric]
    assert _passes_on_disk() == before


def test_a_longer_pass_states_its_plan_and_starts_on_a_click(stored, uploaded, monkeypatch):
    from ui.diagnose import glue

    monkeypatch.setattr(glue, "AUTO_START_S", 0.0)
    at = _all_images(_page("upload:tiny.pt", dataset=stored.name), stored)
    at.number_input(key="diag_images_6").set_value(3).run()
    assert not at.exception
    plan = next(i.value for i in at.info if i.value.startswith("The pass: 3 images (3 to run)"))
    assert "of memory" in plan and "of disk" in plan and "rpn_pre_nms_top_n_test" in plan
    assert "images" not in [m.label for m in at.metric]
    at.button(key="diag_start").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "images") == "3"
    # the pass ended in this run: its plan and Stop button are gone, its progress says done
    assert not {"Start the pass", "Stop the pass"} & {b.label for b in at.button}
    assert not any("to run)" in i.value for i in at.info)
    progress = [p.proto.text for p in at.get("progress")]
    assert progress == ["One forward per image: 3 of 3, done"], progress
    assert any("rpn_pre_nms_top_n_test" in c.value for c in at.caption)  # the tuner says what is exact
