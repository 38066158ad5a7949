"""detector.engine and `python -m detector train/evaluate`: tiny real trainings on synthetic data."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detector import engine, runs, snapshots, training_data
from detector.checkpoints import load_model, read_checkpoint
from detector.cli import main as cli_main
from detector.data.synthetic import write_synthetic
from detector.models import DEMO_ARCH
from detector.run_progress import estimate_progress
from detector.train_config import TrainConfig


ROOT = Path(__file__).resolve().parents[2]


LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")


# small and fast: 64..128 px inputs, few proposals
TINY = {"min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 64,
        "rpn_batch_size_per_image": 64}


TINIER = {**TINY, "min_size": 64, "max_size": 96}


def _config(data: Path, **changes) -> TrainConfig:
    base = TrainConfig(data=str(data), model=DEMO_ARCH, epochs=1, batch_size=2, workers=0, device="cpu",
                       snapshot_images=1, max_val_images=2, decode_check=False, model_kwargs=TINIER)
    return base.replace(**changes)


@pytest.fixture(scope="session")
def dataset(session_tmp) -> Path:
    """10 synthetic 128x96 images in COCO layout (8 train, 2 val)."""
    return write_synthetic(session_tmp / "engine-data", images=10, seed=3, format="coco", width=128, height=96)


@pytest.fixture(scope="session")
def small(session_tmp) -> Path:
    """5 synthetic 128x96 images (4 train, one of them empty; 1 val): for the fault paths."""
    return write_synthetic(session_tmp / "engine-small", images=5, seed=3, format="coco", width=128, height=96)


@pytest.fixture(scope="session")
def trained_run(dataset) -> Path:
    """A 2-epoch run started the way the page starts one: config.json first, then `train --out`."""
    config = TrainConfig(data=str(dataset), model=DEMO_ARCH, epochs=5, batch_size=4, workers=0, device="cpu",
                         snapshot_images=2, decode_check=True, model_kwargs=TINY)
    run_dir = runs.create_run(config.to_dict(), name="engine-session")
    assert cli_main(["train", "--out", str(run_dir), "--epochs", "2"]) == 0  # the flag overrides config.json
    return run_dir


def test_run_folder_describes_itself(trained_run):
    config = runs.read_config(trained_run)
    assert config["epochs"] == 2 and config["model_kwargs"]["min_size"] == 96
    status = runs.read_status(trained_run)
    assert (status.state, status.epoch, status.error, status.interrupted) == ("done", 2, None, False)
    assert runs.read_fixes(trained_run) == []  # clean synthetic data: nothing fixed, but recorded
    assert any("validation" in line for line in runs.log_tail(trained_run, 200))
    assert not list(trained_run.rglob("*.tmp"))


def test_every_iteration_logs_four_losses_lr_and_speed(trained_run):
    train, val = runs.read_metrics(trained_run)
    iters = math.ceil(8 / 4)
    assert [r["step"] for r in train] == list(range(1, 2 * iters + 1))
    assert [r["epoch"] for r in train] == [1] * iters + [2] * iters
    for row in train:
        assert all(math.isfinite(row[k]) and row[k] >= 0 for k in LOSSES)
        assert row["loss"] == pytest.approx(sum(row[k] for k in LOSSES), rel=1e-5)
        assert row["lr"] > 0 and row["images_per_s"] > 0 and row["time"] > 0
    assert train[0]["lr"] < train[1]["lr"]  # warm-up
    assert [v["epoch"] for v in val] == [1, 2]
    for row in val:
        assert all(math.isfinite(row[f"val_{k}"]) for k in LOSSES)
        assert all(isinstance(row[k], float) and 0.0 <= row[k] <= 1.0 for k in ("mAP", "mAP50", "mAP75"))
        assert set(row["per_class"]) == {"circle", "rectangle", "triangle"}


def test_checkpoints_load_with_weights_only_and_carry_resume_state(trained_run):
    last = torch.load(runs.checkpoint_path(trained_run, "last"), map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["step"] == 4 and last["batches_done"] == 0
    assert {"optimizer", "scheduler", "scaler", "state_dict", "model_kwargs", "class_names"} <= set(last)
    assert last["class_names"] == ["circle", "rectangle", "triangle"] and last["model"] == DEMO_ARCH
    best = read_checkpoint(runs.checkpoint_path(trained_run, "best"))
    assert "optimizer" not in best and best["epoch"] in (1, 2)
    loaded = load_model(trained_run)  # a run folder means its best.pt
    assert loaded.class_names == ("circle", "rectangle", "triangle")
    summary = {r.name: r for r in runs.list_runs()}["engine-session"]
    assert summary.state == "done" and summary.best_map == max(v["mAP"] for v in runs.read_metrics(trained_run)[1])


def test_rpn_snapshots_each_epoch_in_original_pixels(trained_run):
    assert runs.list_snapshots(trained_run) == [0, 1, 2]  # 0: before training
    first, last = runs.read_snapshot(trained_run, 0), runs.read_snapshot(trained_run, 2)
    assert len(last.images) == 2 and last.class_names == ("circle", "rectangle", "triangle")
    image = last.images[0]
    assert (image.width, image.height) == (128, 96)
    assert len(image.objectness) == len(image.level_names) >= 2
    assert all(o.ndim == 2 and 0.0 <= float(o.min()) and float(o.max()) <= 1.0 for o in image.objectness)
    assert 0 < len(image.proposals) <= snapshots.SNAPSHOT_PROPOSALS and image.proposals.shape[1] == 4
    assert (image.proposals[:, 2] <= 128 + 1e-3).all() and (image.proposals[:, 3] <= 96 + 1e-3).all()
    assert list(image.proposal_scores) == sorted(image.proposal_scores, reverse=True)
    assert len(image.boxes) == len(image.scores) == len(image.labels)
    assert not all((a == b).all() for a, b in zip(first.images[0].objectness, image.objectness))  # the RPN learned


def test_evaluate_cli_matches_the_runs_own_validation(trained_run, dataset, capsys):
    assert cli_main(["evaluate", "--checkpoint", str(runs.checkpoint_path(trained_run, "last")), "--data",
                     str(dataset), "--split", "val", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    final = runs.read_metrics(trained_run)[1][-1]
    assert out["images"] == 2 and out["mAP"] == pytest.approx(final["mAP"], abs=1e-6)
    assert set(out) >= {"mAP", "mAP50", "mAP75", "per_class", "images"}


def test_loss_falls_on_a_tiny_set_it_can_overfit(small, tmp_path):
    config = _config(small, epochs=10, lr=0.01, warmup_iters=2, max_val_images=0, snapshot_images=0,
                     hflip=False, lr_steps=(100,))
    result = engine.train(config, tmp_path / "overfit")
    train, _ = runs.read_metrics(tmp_path / "overfit")
    assert result.state == "done" and len(train) == 20
    first = sum(r["loss"] for r in train[:4]) / 4
    last = sum(r["loss"] for r in train[-4:]) / 4
    assert last < 0.6 * first, (first, last)


def test_a_separate_validation_dataset_is_used_whole(small, dataset):
    data = training_data.load_training_data(_config(small, val_data=str(dataset), max_val_images=None))
    # with a separate validation set, all 5 images of the dataset train (its own 4/1 split is not used)
    assert (len(data.train), len(data.val)) == (5, 10) and data.val.root == dataset
    assert len(training_data.load_training_data(_config(small, max_val_images=0)).train) == 4


def test_validation_losses_touch_neither_weights_nor_batchnorm_statistics(dataset):
    from detector.models import build_model

    data = training_data.load_training_data(_config(dataset))
    model = build_model(DEMO_ARCH, data.class_names, **TINIER).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = training_data.make_loader(data.val, None, _config(dataset), torch.device("cpu"), 2)
    losses = engine.validation_losses(model, loader, torch.device("cpu"), amp=False)
    assert set(losses) == {f"val_{k}" for k in LOSSES} and all(math.isfinite(v) for v in losses.values())
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "validation changed the model"


def test_without_pycocotools_training_goes_on_and_says_map_was_skipped(small, tmp_path, monkeypatch):
    # as on the GPU machine: the import fails (a None entry in sys.modules makes `import` raise)
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    result = engine.train(_config(small, snapshot_images=0), tmp_path / "nococo")
    assert result.state == "done"
    _, val = runs.read_metrics(tmp_path / "nococo")
    assert val[0]["mAP"] is None and "pycocotools is not installed" in val[0]["note"]
    assert math.isfinite(val[0]["val_loss_classifier"])
    assert any("pycocotools is not installed" in line for line in runs.log_tail(tmp_path / "nococo"))


def test_init_from_a_checkpoint_replaces_the_box_predictor_only_when_classes_differ(trained_run):
    ckpt = read_checkpoint(runs.checkpoint_path(trained_run, "best"))  # what a run folder means
    same = engine.build_training_model(TrainConfig(init=str(trained_run)), ("circle", "rectangle", "triangle"))
    other = engine.build_training_model(TrainConfig(init=str(trained_run)), ("cat", "dog"))
    assert same.arch == other.arch == DEMO_ARCH and same.model_kwargs["min_size"] == 96
    rpn_key = "rpn.head.cls_logits.weight"
    assert torch.equal(other.model.state_dict()[rpn_key], ckpt["state_dict"][rpn_key])  # the RPN is kept
    assert other.model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 classes + background
    assert "replaced" in other.origin and "replaced" not in same.origin
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(same.model.state_dict()[key], ckpt["state_dict"][key])
    with pytest.raises(engine.TrainingFailed, match="checkpoint"):
        engine.build_training_model(TrainConfig(init=str(trained_run), model="fasterrcnn_resnet50_fpn"), ("a",))


def test_stop_file_ends_cleanly_and_resume_continues_mid_epoch(small, tmp_path):
    run_dir = tmp_path / "stop"
    config = _config(small, max_val_images=0, snapshot_images=0)  # 2 iterations, one epoch

    def ask_to_stop(step, model, images):
        if step == 0:
            runs.request_stop(run_dir)  # seen before the next iteration

    result = engine.train(config, run_dir, on_step=ask_to_stop)
    assert (result.state, result.step) == ("stopped", 1)
    assert runs.read_status(run_dir).state == "stopped" and not runs.stop_requested(run_dir)
    ckpt = read_checkpoint(runs.checkpoint_path(run_dir, "last"))
    assert (ckpt["epoch"], ckpt["step"], ckpt["batches_done"]) == (0, 1, 1)
    result = engine.train(config, run_dir, resume=True)
    assert (result.state, result.step, result.epoch) == ("done", 2, 1)
    train, _ = runs.read_metrics(run_dir)
    assert [r["step"] for r in train] == [1, 2] and {r["epoch"] for r in train} == {1}


def test_status_epoch_is_the_headers_and_epochs_done_the_completed_ones(small, tmp_path):
    """What the runs table reads (runs.summarize_run, from status.json on disk) says the epoch the
    Train page's header says (run_progress.estimate_progress over metrics.jsonl) at every step, and
    `epochs_done` counts completed epochs: through epoch 1, a stop in epoch 2, its resume, the end."""
    run_dir = tmp_path / "counts"
    config = _config(small, epochs=2, max_val_images=0, snapshot_images=0)  # 2 iterations an epoch
    seen = []
    resumed = False

    def check(step, model, images):
        summary = runs.summarize_run(run_dir)
        train, _ = runs.read_metrics(run_dir)
        header = estimate_progress(train, config.epochs).epoch
        seen.append((step, summary.epoch, summary.epochs_done))
        assert summary.epoch == header == (train[-1]["epoch"] if train else 0), seen
        assert summary.epochs_done == step // 2, seen  # epoch 1 is complete once its 2 steps are
        if step == 2 and not resumed:
            runs.request_stop(run_dir)  # seen before the next iteration: the run stops one step into epoch 2

    assert engine.train(config, run_dir, on_step=check).state == "stopped"
    status = runs.read_status(run_dir)
    assert (status.state, status.epoch, status.epochs_done, status.step) == ("stopped", 2, 1, 3)
    assert "epochs_done" not in status.extra
    resumed = True
    assert engine.train(config, run_dir, resume=True, on_step=check).state == "done"
    status = runs.read_status(run_dir)
    assert (status.state, status.epoch, status.epochs_done, status.step) == ("done", 2, 2, 4)
    assert [s for s, _, _ in seen] == [0, 1, 2, 3, 3]  # the resumed run's first check: 3 steps, epoch 2 in progress
    assert seen[-1] == (3, 2, 1)


def test_kill_9_then_resume_continues_with_continuous_steps(small, tmp_path):
    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    runs.write_config(run_dir, _config(small, epochs=2).to_dict())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "detector", "train", "--out", str(run_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tail = runs.MetricsTail(run_dir)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            tail.update()
            if any(r["epoch"] == 2 for r in tail.train):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    status = runs.read_status(run_dir)
    assert status.state == "running" and status.interrupted and status.resumable
    assert read_checkpoint(runs.checkpoint_path(run_dir, "last"))["epoch"] == 1
    assert cli_main(["train", "--out", str(run_dir), "--resume"]) == 0
    rows, _ = runs.read_metrics_from(run_dir)
    steps_written = [r["step"] for r in rows if r["kind"] == "train"]
    assert len(steps_written) > len(set(steps_written))  # the killed epoch's steps were written again
    train, val = runs.read_metrics(run_dir)
    assert [r["step"] for r in train] == [1, 2, 3, 4] and [r["epoch"] for r in train] == [1, 1, 2, 2]
    assert [v["epoch"] for v in val] == [1, 2]
    assert runs.read_status(run_dir).state == "done"


def test_nan_loss_stops_naming_the_images_and_keeps_the_last_good_checkpoint(small, tmp_path):
    run_dir = tmp_path / "nan"
    config = _config(small, epochs=2, max_val_images=0, snapshot_images=0)

    def poison(step, model, images):
        if step == 3:  # the second iteration of epoch 2
            with torch.no_grad():
                model.rpn.head.cls_logits.weight.fill_(float("nan"))

    with pytest.raises(engine.TrainingFailed, match="non-finite loss at epoch 2, step 4") as info:
        engine.train(config, run_dir, on_step=poison)
    message = str(info.value)
    assert "images/synth_" in message and message.count(".jpg") == 2
    status = runs.read_status(run_dir)
    assert status.state == "failed" and "non-finite loss" in status.error
    ckpt = read_checkpoint(runs.checkpoint_path(run_dir, "last"))
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_out_of_memory_says_what_to_lower(small, tmp_path):
    def oom(step, model, images):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(engine.TrainingFailed, match="out of memory") as info:
        engine.train(_config(small, max_val_images=0, snapshot_images=0), tmp_path / "oom", on_step=oom)
    assert "--batch-size" in str(info.value) and "min_size" in str(info.value)
    assert runs.read_status(tmp_path / "oom").state == "failed"


def test_batch_size_auto_and_the_speed_switches_on_cpu(small, tmp_path, capsys):
    run_dir = tmp_path / "auto"
    code = cli_main(["train", "--out", str(run_dir), "--data", str(small), "--model", DEMO_ARCH, "--device", "cpu",
                     "--epochs", "1", "--batch-size", "auto", "--workers", "auto", "--channels-last",
                     "--amp-dtype", "bfloat16", "--fused-optimizer", "--set", "snapshot_images=0",
                     "--set", "max_val_images=0", "--set", f"model_kwargs={json.dumps(TINIER)}"])
    assert code == 0, capsys.readouterr().err
    # CPU memory cannot be probed by running out of it: the default batch, said in the log and status
    assert any("batch size auto: 4 on cpu" in line for line in runs.log_tail(run_dir))
    assert runs.read_status(run_dir).extra["batch_size"] == 4
    assert runs.read_config(run_dir)["batch_size"] == "auto"  # what the user asked for stays in config.json
    ckpt = read_checkpoint(runs.checkpoint_path(run_dir, "last"))
    assert ckpt["config"]["batch_size"] == 4 and ckpt["config"]["channels_last"] is True  # resume keeps the batch
    train, _ = runs.read_metrics(run_dir)
    assert len(train) == 1 and 0 <= train[0]["data_s"] < train[0]["time"]  # 4 images, one step: its data wait


def test_a_second_training_on_a_busy_device_is_refused_naming_the_holder(dataset, tmp_path, capsys):
    holder = tmp_path / "holder-run"
    with runs.device_lock("cpu", holder):
        code = cli_main(["train", "--out", str(tmp_path / "second"), "--data", str(dataset), "--device", "cpu",
                         "--epochs", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "holder-run" in err and "busy" in err and "Traceback" not in err
    status = runs.read_status(tmp_path / "second")
    assert status.state == "failed" and "holder-run" in status.error


def test_cli_refuses_bad_requests_with_one_line(dataset, tmp_path, capsys):
    cases = [
        (["train", "--out", str(tmp_path / "a")], "no dataset"),
        (["train", "--out", str(tmp_path / "b"), "--resume"], "nothing to resume"),
        (["train", "--out", str(tmp_path / "c"), "--data", str(dataset), "--model", "nope"], "unknown model"),
        (["train", "--out", str(tmp_path / "d"), "--data", str(tmp_path / "missing")], "missing"),
        (["train", "--out", str(tmp_path / "e"), "--data", str(dataset), "--weights", "coco", "--device", "cpu"], "coco"),
        (["train", "--out", str(tmp_path / "f"), "--data", str(dataset), "--set", "colour=1"], "unknown config field"),
        (["evaluate", "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--data", str(dataset)], "no COCO weights"),
    ]
    for argv, expected in cases:
        assert cli_main(argv) != 0, argv
        err = capsys.readouterr().err
        assert expected.lower() in err.lower() and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_learning_rate_warms_up_then_steps_down():
    config = TrainConfig(epochs=3, warmup_iters=4, warmup_factor=0.01, lr_steps=(2,))
    factor = engine.lr_factor(config, iters_per_epoch=10)
    assert factor(0) == pytest.approx(0.01) and factor(2) == pytest.approx(0.505) and factor(5) == 1.0
    assert factor(19) == 1.0 and factor(20) == pytest.approx(0.1)
    cosine = engine.lr_factor(config.replace(schedule="cosine", warmup_iters=0), 10)
    assert cosine(0) == 1.0 and cosine(15) == pytest.approx(0.5) and cosine(30) == pytest.approx(0.0)
    assert TrainConfig(batch_size=4).base_lr() == pytest.approx(0.005)
    assert TrainConfig(batch_size=4).base_lr(world_size=2) == pytest.approx(0.01)


def test_ddp_two_processes_with_gloo(dataset, tmp_path):
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    runs.write_config(run_dir, _config(dataset, max_val_images=1).to_dict())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "detector", "train", "--out", str(run_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = runs.read_status(run_dir)
    assert status.state == "done" and status.extra["world_size"] == 2
    train, val = runs.read_metrics(run_dir)
    # 8 training images, 2 processes x batch 2: 2 steps per epoch, logged once (rank 0)
    assert [r["step"] for r in train] == [1, 2]
    assert len(val) == 1 and runs.checkpoint_path(run_dir, "last").is_file()
    ckpt = read_checkpoint(runs.checkpoint_path(run_dir, "last"))
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert ckpt["config"]["batch_size"] == 2


# ---------------------------------------------------------------- recipe: TensorBoard, freezing, multi-scale, early stop


def test_tensorboard_event_files_hold_the_metrics_jsonl_values(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(trained_run.glob("events.out.tfevents.*")), "no event file beside metrics.jsonl"
    acc = EventAccumulator(str(trained_run))  # the reader TensorBoard itself uses
    acc.Reload()
    train, val = runs.read_metrics(trained_run)
    for name in ("loss", *LOSSES, "lr", "images_per_s"):
        events = acc.Scalars(f"train/{name}")
        assert [e.step for e in events] == [r["step"] for r in train]
        assert [e.value for e in events] == pytest.approx([r[name] for r in train], rel=1e-6)
    for name in ("val_loss", *(f"val_{k}" for k in LOSSES), "mAP", "mAP50", "mAP75"):
        events = acc.Scalars(f"val/{name}")
        assert [(e.step, pytest.approx(e.value, rel=1e-6, abs=1e-7)) for e in events] == \
            [(r["step"], r[name]) for r in val]


def test_best_pt_is_the_epoch_the_chosen_metric_ranks_best(trained_run):
    _, val = runs.read_metrics(trained_run)
    best = read_checkpoint(runs.checkpoint_path(trained_run, "best"))
    maps = [v["mAP"] for v in val]
    assert best["epoch"] == val[maps.index(max(maps))]["epoch"]  # first of equals: strictly better replaces
    status = runs.read_status(trained_run)
    assert status.extra["best"]["metric"] == "mAP" and status.extra["reason"] == "all 2 epochs"


def test_frozen_backbone_stages_get_no_gradient_no_optimizer_state_and_keep_their_weights(small, tiny_checkpoint,
                                                                                         tmp_path):
    run_dir = tmp_path / "frozen"
    config = _config(small, init=str(tiny_checkpoint), model=None, trainable_backbone_layers=2, epochs=2,
                     lr=0.05, warmup_iters=0, max_val_images=0, snapshot_images=0)
    run_dir.mkdir()
    runs.write_config(run_dir, config.to_dict())  # as `train --out` does
    assert engine.train(config, run_dir).state == "done"
    start = read_checkpoint(tiny_checkpoint)["state_dict"]
    last = torch.load(runs.checkpoint_path(run_dir, "last"), map_location="cpu", weights_only=True)
    frozen = last["frozen_parameters"]
    assert frozen and all(name.startswith("backbone.body.") for name in frozen)
    frozen_modules = {name.rsplit(".", 1)[0] for name in frozen}
    frozen_state = [k for k in start if k.rsplit(".", 1)[0] in frozen_modules]
    assert all(torch.equal(start[k], last["state_dict"][k].to(start[k].dtype)) for k in frozen_state)
    trained = [k for k in start if k.startswith("backbone.fpn.") and k.endswith("weight")]
    assert any(not torch.equal(start[k], last["state_dict"][k]) for k in trained)  # the rest did train
    # the optimizer never held the frozen tensors: its parameter count is the trainable count
    rebuilt = load_model(runs.checkpoint_path(run_dir, "last")).model  # the same tree, frozen stages included
    n_params = sum(1 for _ in rebuilt.parameters())
    assert [n for n, p in rebuilt.named_parameters() if not p.requires_grad] == frozen
    held = sum(len(g["params"]) for g in last["optimizer"]["param_groups"])
    assert held == n_params - len(frozen) and len(last["optimizer"]["state"]) == held
    assert runs.read_config(run_dir)["trainable_backbone_layers"] == 2  # stated in config.json and the log
    assert last["model_kwargs"]["trainable_backbone_layers"] == 2
    # resuming rebuilds the same frozen tree, so the optimizer's state fits and the stages stay frozen
    assert engine.train(config.replace(epochs=3), run_dir, resume=True).state == "done"
    resumed = torch.load(runs.checkpoint_path(run_dir, "last"), map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 3 and resumed["frozen_parameters"] == frozen
    assert all(torch.equal(start[k], resumed["state_dict"][k].to(start[k].dtype)) for k in frozen_state)
    assert any(f"{len(frozen)} of {n_params} parameter tensors frozen" in line for line in runs.log_tail(run_dir, 100))


def test_a_multi_scale_augmented_run_trains_at_the_drawn_sizes(small, tmp_path):
    sizes = (64, 80, 96)
    seen: list[int] = []

    def hook(module, args, out):  # the transform's output: the resized batch
        if module.training:
            seen.extend(min(s) for s in out[0].image_sizes)

    def record_sizes(step, model, images):
        if step == 0:
            model.transform.register_forward_hook(hook)

    config = _config(small, epochs=3, multi_scale=sizes, augmentation="ssd", max_val_images=1, snapshot_images=1,
                     model_kwargs={**TINIER, "max_size": 200})
    result = engine.train(config, tmp_path / "multiscale", on_step=record_sizes)
    assert result.state == "done"
    train, val = runs.read_metrics(tmp_path / "multiscale")
    assert all(math.isfinite(r["loss"]) for r in train) and len(val) == 3
    # each training batch was resized to one of the sizes (one per batch), and more than one was used
    assert set(seen) <= set(sizes) and len(set(seen)) > 1
    # the model keeps its own min_size for validation and in the checkpoint
    last = read_checkpoint(runs.checkpoint_path(tmp_path / "multiscale", "last"))
    assert last["model_kwargs"]["min_size"] == TINIER["min_size"]
    assert "augment_boxes_removed" in runs.read_status(tmp_path / "multiscale").extra


def test_early_stopping_ends_a_run_whose_map_stops_improving(small, tmp_path):
    # backbone frozen and a learning rate far below float32 resolution: the model cannot change,
    # so validation mAP is the same every epoch and patience 1 ends the run after epoch 2 of 6
    run_dir = tmp_path / "early"
    config = _config(small, epochs=6, lr=1e-30, warmup_iters=0, trainable_backbone_layers=0, patience=1,
                     max_val_images=None, snapshot_images=0)
    result = engine.train(config, run_dir)
    _, val = runs.read_metrics(run_dir)
    assert [v["epoch"] for v in val] == [1, 2] and val[0]["mAP"] == val[1]["mAP"]
    status = runs.read_status(run_dir)
    assert (result.state, result.epoch, status.state, status.epoch) == ("done", 2, "done", 2)
    assert "early stop" in status.extra["reason"] and "mAP" in status.extra["reason"]
    assert status.extra["best"]["epoch"] == 1
    assert read_checkpoint(runs.checkpoint_path(run_dir, "best"))["epoch"] == 1
