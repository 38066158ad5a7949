"""The run folder contract: the only code that reads or writes a training run's folder.

A run folder (`RUN_DIR`) holds:

    config.json          the TrainConfig as JSON (`train --out RUN_DIR` reads it; flags override)
    status.json          {state, pid, epoch, epochs_done, step, heartbeat, error, ...}, written
                         atomically; `epoch` is the epoch of the last training step taken (1-based, 0
                         before the first): the epoch in progress while training, the one it stopped
                         in after a stop, as metrics.jsonl's last train line and the Train page's
                         header count it; `epochs_done` the epochs completed (validated, snapshot
                         and last.pt written; --resume continues after them); extra fields: epochs,
                         device, world_size, phase, best_map,
                         best {metric, value, epoch}, augment_boxes_removed, reason (why a run
                         ended: "all 12 epochs", "early stop: ...", "SIGTERM received", "stop
                         requested (...)", "ended by a second SIGINT ..."; a killed process writes
                         nothing: readers see its pid gone and show it interrupted)
    metrics.jsonl        append-only, one JSON object per line, `kind` "train" or "val"
    fixes.json           the dataset fixes training applied (from validation)
    train.log            the engine's log; console.log: the process's stdout/stderr when started here
    checkpoints/last.pt, checkpoints/best.pt
    snapshots/epoch_NNN.npz   per-epoch RPN snapshots (numpy arrays + JSON meta, never .pt)
    diagnosis.json       the last finished diagnosis of the run's checkpoint on its validation
                         split (detector.diagnosis's report, plus `checkpoint` and its mtime)
    events.out.tfevents.*     TensorBoard event files with the same scalars as metrics.jsonl
    STOP                 present: the run is asked to stop cleanly

The engine writes; pages, the CLI and tests read through the functions here. One training per
device at a time: `device_lock` holds an `flock` on a file in the workspace, so a dead process
releases it; the lock file names the run that holds it.

One module per concept, every public name re-exported here (`from detector import runs; runs.X`):
    folder          file names, config.json, STOP, fixes.json, train.log, diagnosis.json, checkpoint paths
    status          status.json, RunStatus, the heartbeat (StatusKeeper)
    metrics         metrics.jsonl: append_metrics, MetricsTail, read_metrics
    snapshot_file   snapshots/epoch_NNN.npz: the one home of its key scheme (write and read)
    listing         the workspace's runs/: new names, create_run, run_path, list_runs
    launch          how a training process starts (start_training, start_command, nice, autogroup, GOMP_SPINCOUNT)
    lock            one training per device (device_lock, DeviceBusy)
Which validation is "best" is decided in detector.model_selection.
"""

from detector.runs.folder import (CHECKPOINTS, CONFIG, CONSOLE, DIAGNOSIS, FIXES, LOG, METRICS, SNAPSHOTS, STATUS, STOP,
                                  RunError, best_checkpoint, checkpoint_path, clear_stop, diagnosis_path, has_started,
                                  log_path, log_tail, now_iso, read_config, read_diagnosis, read_fixes, read_json_strict,
                                  request_stop, stop_requested, tensorboard_dir, write_config, write_diagnosis,
                                  write_fixes, write_json_atomic)
from detector.runs.launch import (TRAINING_NICE, TRAINING_SPINCOUNT, autogroup_nice, lower_cpu_priority,
                                  start_command, start_training, training_environment)
from detector.runs.listing import (RUN_NAME_CHARS, RUN_NAME_MAX, RunSummary, create_run, list_runs, new_run_id,
                                   run_name_problem, run_path, summarize_run)
from detector.runs.lock import DeviceBusy, device_lock, lock_file, lock_holder
from detector.runs.metrics import LOSS_NAMES, MetricsTail, append_metrics, read_metrics, read_metrics_from
from detector.runs.snapshot_file import RpnSnapshot, SnapshotImage, list_snapshots, read_snapshot, snapshot_path, write_snapshot
from detector.runs.status import (ACTIVE_STATES, HEARTBEAT_S, HEARTBEAT_STALE_S, STATES, RunStatus, StatusKeeper,
                                  pid_alive, read_status, write_status)

__all__ = [
    "ACTIVE_STATES", "CHECKPOINTS", "CONFIG", "CONSOLE", "DIAGNOSIS", "FIXES", "HEARTBEAT_S", "HEARTBEAT_STALE_S",
    "LOG", "LOSS_NAMES", "METRICS", "RUN_NAME_CHARS", "RUN_NAME_MAX", "SNAPSHOTS", "STATES", "STATUS", "STOP",
    "TRAINING_NICE", "TRAINING_SPINCOUNT", "DeviceBusy", "MetricsTail", "RpnSnapshot", "RunError", "RunStatus",
    "RunSummary", "SnapshotImage", "StatusKeeper", "append_metrics", "autogroup_nice", "best_checkpoint",
    "checkpoint_path", "clear_stop", "create_run", "device_lock", "diagnosis_path", "has_started", "list_runs",
    "list_snapshots", "lock_file", "lock_holder", "log_path", "log_tail", "lower_cpu_priority", "new_run_id",
    "now_iso", "pid_alive", "read_config", "read_diagnosis", "read_fixes", "read_metrics", "read_metrics_from",
    "read_snapshot", "read_status", "request_stop", "run_name_problem", "run_path", "snapshot_path",
    "start_command", "start_training", "stop_requested", "summarize_run", "tensorboard_dir", "training_environment", "write_config",
    "read_json_strict", "write_diagnosis", "write_fixes", "write_json_atomic", "write_snapshot", "write_status",
]
