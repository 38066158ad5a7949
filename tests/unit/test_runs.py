"""detector.runs: the run-folder contract (status, metrics tail, stop, lock, listing, snapshots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detector import runs
from detector.frames import CellPlacement
from detector.workspace import runs_dir
from tests.polling import wait_for


@pytest.fixture()
def run_dir(tmp_path):
    return runs.create_run({"data": "shapes", "model": "m", "epochs": 3}, name=f"r-{tmp_path.name}")


def test_create_run_writes_config_and_queued_status(run_dir):
    assert run_dir.parent == runs_dir()
    assert runs.read_config(run_dir)["data"] == "shapes"
    status = runs.read_status(run_dir)
    assert status.state == "queued" and not status.interrupted and status.step == 0
    with pytest.raises(runs.RunError, match="already exists"):
        runs.create_run({}, name=run_dir.name)


def test_status_is_atomic_json_merged_and_stamped(run_dir):
    runs.write_status(run_dir, state="running", pid=os.getpid(), epoch=2, step=40, device="cpu")
    raw = json.loads((run_dir / runs.STATUS).read_text())
    assert raw["state"] == "running" and raw["step"] == 40 and raw["heartbeat"]
    runs.write_status(run_dir, step=41)
    status = runs.read_status(run_dir)
    assert (status.state, status.epoch, status.step, status.extra["device"]) == ("running", 2, 41, "cpu")
    assert status.epochs_done is None  # a status.json written before the field: unknown, not guessed
    runs.write_status(run_dir, epochs_done=1)
    status = runs.read_status(run_dir)
    assert (status.epoch, status.epochs_done) == (2, 1) and "epochs_done" not in status.extra
    assert runs.summarize_run(run_dir).epochs_done == 1
    assert not status.interrupted  # our own pid, fresh heartbeat
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError):
        runs.write_status(run_dir, state="exploded")


def test_dead_pid_or_stale_heartbeat_reads_as_interrupted(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    runs.write_status(run_dir, state="running", pid=proc.pid)
    status = runs.read_status(run_dir)
    assert status.interrupted and status.shown_state == "interrupted" and status.resumable
    runs.write_status(run_dir, state="running", pid=os.getpid())
    assert not runs.read_status(run_dir).interrupted
    assert runs.read_status(run_dir, stale_after_s=-1).interrupted  # heartbeat older than allowed
    runs.write_status(run_dir, state="done", pid=proc.pid)
    assert not runs.read_status(run_dir).interrupted  # finished runs are never "interrupted"


def test_metrics_tail_reads_only_new_complete_lines_and_keeps_last_per_step(run_dir):
    tail = runs.MetricsTail(run_dir)
    assert tail.update() == 0
    runs.append_metrics(run_dir, *({"kind": "train", "epoch": 1, "step": s, "loss": 1.0 / s} for s in (1, 2, 3)))
    assert tail.update() == 3
    offset = tail.offset
    assert offset == (run_dir / runs.METRICS).stat().st_size
    with open(run_dir / runs.METRICS, "a") as fh:  # a line still being written
        fh.write('{"kind": "train", "step": 9')
    assert tail.update() == 0 and tail.offset == offset
    with open(run_dir / runs.METRICS, "a") as fh:
        fh.write(', "epoch": 2, "loss": 0.1}\n')
    # after a resume step 3 repeats; the newest line wins; NaN is written as null
    runs.append_metrics(run_dir, {"kind": "train", "epoch": 2, "step": 3, "loss": float("nan")},
                        {"kind": "val", "epoch": 1, "mAP": 0.25})
    assert tail.update() == 3
    assert [r["step"] for r in tail.train] == [1, 2, 3, 9]
    assert tail.train[2]["epoch"] == 2 and tail.train[2]["loss"] is None
    train, val = runs.read_metrics(run_dir)
    assert train == tail.train and val == [{"kind": "val", "epoch": 1, "mAP": 0.25}]


def test_stop_file_and_fixes_and_log_tail(run_dir):
    assert not runs.stop_requested(run_dir)
    runs.request_stop(run_dir)
    assert runs.stop_requested(run_dir)
    runs.clear_stop(run_dir)
    assert not runs.stop_requested(run_dir)
    runs.write_fixes(run_dir, [{"file": "a.png", "action": "box clipped"}])
    assert runs.read_fixes(run_dir) == [{"file": "a.png", "action": "box clipped"}]
    runs.log_path(run_dir).write_text("".join(f"line {i}\n" for i in range(100)))
    assert runs.log_tail(run_dir, lines=3) == ["line 97", "line 98", "line 99"]


def test_list_runs_shows_state_dataset_model_and_best_map(run_dir):
    runs.append_metrics(run_dir, {"kind": "val", "epoch": 1, "mAP": 0.2}, {"kind": "val", "epoch": 2, "mAP": 0.4},
                        {"kind": "val", "epoch": 3, "mAP": 0.3})
    runs.write_status(run_dir, state="done", epoch=3, step=30)
    summary = {r.name: r for r in runs.list_runs()}[run_dir.name]
    assert (summary.state, summary.dataset, summary.model, summary.epoch, summary.epochs) == ("done", "shapes", "m", 3, 3)
    assert summary.best_map == pytest.approx(0.4)


def test_device_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    with runs.device_lock("cuda:0", a):
        assert runs.lock_holder("cuda:0") == str(a.resolve())
        with pytest.raises(runs.DeviceBusy, match="run-a"):
            with runs.device_lock("cuda:0", b):
                pass
        with runs.device_lock("cpu", b):  # another device is free
            pass
    assert runs.lock_holder("cuda:0") is None
    with runs.device_lock("cuda:0", b):
        pass


def test_lock_held_by_a_killed_process_is_released(tmp_path):
    code = ("import sys, time; from detector import runs\n"
            "with runs.device_lock('cuda:0', sys.argv[1]):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "holder")], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(runs.DeviceBusy, match="holder"):
            with runs.device_lock("cuda:0", tmp_path / "other"):
                pass
    finally:
        proc.kill()
        proc.wait()
    with runs.device_lock("cuda:0", tmp_path / "other"):
        pass


def test_snapshot_round_trip_without_pickle(run_dir):
    image = runs.SnapshotImage(
        file="x.png", width=64, height=48, gt_boxes=np.array([[1, 2, 30, 40]], np.float32), gt_labels=np.array([1]),
        objectness=(np.random.rand(12, 16).astype(np.float16), np.random.rand(6, 8).astype(np.float16)),
        level_names=("0", "1"), proposals=np.zeros((5, 4), np.float32), proposal_scores=np.zeros(5, np.float32),
        boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32), labels=np.zeros(0, np.int64),
        cells=(CellPlacement(2.0, 4.0, 2.0, 4.0), CellPlacement(4.0, 8.0, 4.0, 8.0)), resized=(64, 48))
    runs.write_snapshot(run_dir, runs.RpnSnapshot(2, ("a",), (image,), {"map_side": 64}))
    assert runs.list_snapshots(run_dir) == [2]
    with np.load(runs.snapshot_path(run_dir, 2), allow_pickle=False) as stored:  # plain arrays, no pickle
        assert "img0_objectness_1" in stored.files and stored["meta"].dtype.kind == "U"
    snap = runs.read_snapshot(run_dir, 2)
    assert snap.epoch == 2 and snap.class_names == ("a",) and snap.meta["map_side"] == 64
    (read,) = snap.images
    assert read.file == "x.png" and [o.shape for o in read.objectness] == [(12, 16), (6, 8)]
    assert read.level_names == ("0", "1") and read.cells == image.cells and read.resized == (64, 48)
    assert read.padded is None
    for name in ("gt_boxes", "gt_labels", "proposals", "proposal_scores", "boxes", "scores", "labels"):
        np.testing.assert_array_equal(getattr(read, name), getattr(image, name))
        assert getattr(read, name).dtype == getattr(image, name).dtype
    np.testing.assert_array_equal(read.objectness[1], image.objectness[1])
    with pytest.raises(runs.RunError):
        runs.read_snapshot(run_dir, 7)


def test_start_training_detaches_and_reports_a_failed_start(run_dir):
    pid = runs.start_training(run_dir, extra_args=["--no-such-flag"])
    assert wait_for(lambda: not runs.pid_alive(pid), 60)
    status = runs.read_status(run_dir)
    assert status.state == "queued" and status.interrupted
    assert "no-such-flag" in (run_dir / runs.CONSOLE).read_text()


def test_run_names_are_plain_folder_names():
    assert runs.run_name_problem("shapes-demo_1.2") is None
    for bad in ("../x", "a/b", ".hidden", "-x", "", "x" * 65, "név"):
        assert runs.run_name_problem(bad), bad
    with pytest.raises(runs.RunError, match="letters, digits"):
        runs.create_run({"data": "shapes"}, name="../outside")
    made = runs.create_run({"data": "shapes"}, name="named-run")
    assert made == runs_dir() / "named-run"
    assert "exists already" in runs.run_name_problem("named-run")


def test_heartbeat_says_stopping_once_a_stop_is_asked_for(tmp_path):
    keeper = runs.StatusKeeper(tmp_path, True, state="running", pid=os.getpid(), epoch=1, step=3)
    keeper.write()
    assert runs.read_status(tmp_path).state == "running"
    runs.request_stop(tmp_path)
    keeper.write()
    assert runs.read_status(tmp_path).state == "stopping" and not runs.read_status(tmp_path).interrupted
