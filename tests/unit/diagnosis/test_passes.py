"""detector.diagnosis.passes: a pass written to its folder as it goes, stopped and resumed, shared
through its lock, planned (and refused) before it starts.

Oracles: the in-memory pass (`collect_trails`, itself checked against `evaluate` and a rebuilt
model) and the uninterrupted pass; nothing here is a number written down.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detector import checkpoints
from detector.diagnosis import collect_trails, diagnosis_report, evaluate_setting
from detector.diagnosis import passes
from detector.evaluation import evaluation_images

pytest.importorskip("pycocotools")

BATCH = 2
IMAGES = 5  # three batches, the last one short


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tmp_path_factory):
    from detector.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path_factory.mktemp("passes") / "synth", images=IMAGES, seed=6, format="coco")
    loaded = checkpoints.load_model(str(tiny_checkpoint), "cpu")
    chosen = evaluation_images(root, "all", loaded.class_names)
    identity = passes.pass_identity(loaded.model, "tiny", str(root), "all", chosen.records, BATCH, 1000)
    return loaded, chosen, identity


def _run(setup, folder, **kwargs):
    loaded, chosen, identity = setup
    return passes.run_pass(loaded.model, chosen.records, chosen.root, loaded.class_names, folder, identity, **kwargs)


@pytest.fixture(scope="module")
def whole(setup, tmp_path_factory):
    return _run(setup, tmp_path_factory.mktemp("whole") / "pass")


def _same_trails(a, b):
    assert len(a) == len(b)
    for ta, tb in zip(a.trails, b.trails):
        for name, value in vars(ta).items():
            other = getattr(tb, name)
            assert (np.array_equal(value, other) and value.dtype == other.dtype) if isinstance(value, np.ndarray) \
                else value == other, name


def test_a_pass_on_disk_equals_the_pass_in_memory(setup, whole):
    loaded, chosen, _ = setup
    memory = collect_trails(loaded.model, chosen.records, chosen.root, loaded.class_names, BATCH, keep_pool=True)
    _same_trails(whole, memory)
    assert diagnosis_report(whole) == diagnosis_report(memory)
    for knobs in ({"rpn_post_nms_top_n_test": 9, "box_nms_thresh": 0.3}, {"box_score_thresh": 0.2}):
        on_disk, in_memory = evaluate_setting(loaded.model, whole, knobs), evaluate_setting(loaded.model, memory, knobs)
        assert (on_disk.mAP, on_disk.mAP50, on_disk.recall) == (in_memory.mAP, in_memory.mAP50, in_memory.recall)
    status = passes.read_status(whole.pools.folder)
    assert status["state"] == "done" and status["done"] == status["total"] == IMAGES
    assert whole.pool_bytes() >= sum(p.nbytes() for p in memory.pools)  # the files hold every pool


def test_a_stopped_pass_resumes_where_it_stopped(setup, whole, tmp_path):
    folder = tmp_path / "pass"
    seen = []
    assert _run(setup, folder, progress=lambda done, total, left: seen.append(done), should_stop=lambda: True) is None
    assert seen == [BATCH] and passes.read_status(folder)["state"] == "stopped"
    assert sorted(p.name for p in (folder / "batches").iterdir()) == ["000000.npz"]
    first = (folder / "batches" / "000000.npz").stat().st_mtime_ns
    passes.request_stop(folder)  # a STOP left from before is cleared by the next start
    resumed = _run(setup, folder, progress=lambda done, total, left: seen.append(done))
    assert seen == [BATCH, 2 * BATCH, IMAGES]  # the first batch was not run again
    assert (folder / "batches" / "000000.npz").stat().st_mtime_ns == first
    _same_trails(resumed, whole)
    for a, b in zip(resumed.pools, whole.pools):
        for key, value in a.to_arrays().items():
            assert np.array_equal(value, b.to_arrays()[key]), key
    assert diagnosis_report(resumed) == diagnosis_report(whole)


def test_one_writer_per_pass(setup, tmp_path):
    folder = tmp_path / "pass"
    folder.mkdir()
    with passes.pass_lock(folder):
        assert passes.lock_holder(folder) is not None
        with pytest.raises(passes.PassBusy, match="another process"):
            _run(setup, folder)
    assert passes.lock_holder(folder) is None
    status = passes.read_status(folder)
    assert status["state"] == "new"  # the refused writer wrote nothing


def test_the_same_model_and_data_meet_in_one_folder(setup):
    loaded, chosen, identity = setup
    again = passes.pass_identity(loaded.model, "tiny", identity["data"], "all", chosen.records, BATCH, 1000)
    assert passes.pass_folder(again) == passes.pass_folder(identity)
    other = passes.pass_identity(loaded.model, "tiny", identity["data"], "all", chosen.records[:4], BATCH, 1000)
    assert passes.pass_folder(other) != passes.pass_folder(identity)


def test_a_refused_pass_leaves_nothing_behind(setup, tmp_path):
    loaded, chosen, identity = setup
    folder = tmp_path / "diagnosis" / "pass"
    plan = passes.plan_pass(loaded.model, chosen.records, chosen.root, loaded.class_names, folder, BATCH, 1000)
    assert plan.images == IMAGES and plan.done == 0 and plan.seconds_per_image > 0
    assert plan.disk_bytes_per_image > plan.held_bytes_per_image > 0
    assert plan.refusal() is None
    short = replace(plan, memory_free=plan.memory_needed // 2, disk_free=plan.disk_needed // 3)
    message = short.refusal()
    assert message.startswith(f"A pass over {IMAGES} images needs ")
    assert passes.mib(short.memory_needed) in message and passes.mib(short.memory_free) in message
    assert passes.mib(short.disk_needed) in message and passes.mib(short.disk_free) in message
    assert not (tmp_path / "diagnosis").exists()


def test_the_cli_refuses_a_pass_the_machine_cannot_hold(setup, tiny_checkpoint, capsys, monkeypatch):
    from detector.cli import main as cli_main
    from detector.workspace import workspace_root

    _, chosen, _ = setup
    monkeypatch.setattr(passes, "memory_available", lambda: 1024)
    before = sorted((workspace_root() / "diagnosis").glob("*"))
    code = cli_main(["diagnose", "--checkpoint", str(tiny_checkpoint), "--data", str(chosen.root), "--split", "all",
                     "--device", "cpu", "--sweep", "box_score_thresh=0.2,0.5", "--json"])
    err = capsys.readouterr().err
    assert code != 0 and f"A pass over {IMAGES} images needs" in err and "(0.0 MiB free)" in err
    after = sorted((workspace_root() / "diagnosis").glob("*"))
    assert after == before

