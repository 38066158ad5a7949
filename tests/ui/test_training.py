"""ui.training's epoch marks: what tells the Train page's live fragment that an epoch ended, so the
tabs drawn once per epoch (snapshots, comparison, runs table) redraw then and not on every refresh."""

from __future__ import annotations

import numpy as np

from detector import runs
from ui.training import epoch_marks


def test_epoch_marks_change_with_a_snapshot_or_a_validation_not_with_a_step(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tail = runs.MetricsTail(run_dir)
    empty = epoch_marks(run_dir, tail)
    assert empty.snapshots == () and empty.val_rows == 0 and not empty.steps

    runs.append_metrics(run_dir, {"kind": "train", "step": 1, "epoch": 1, "loss": 1.0})
    tail.update()
    stepped = epoch_marks(run_dir, tail)
    assert stepped == empty and stepped.steps  # a new step: the curves move, the tabs stay

    runs.write_snapshot(run_dir, 0, {"x": np.zeros(2)}, {"images": []})
    snapped = epoch_marks(run_dir, tail)
    assert snapped != stepped and snapped.snapshots == (0,)

    runs.append_metrics(run_dir, {"kind": "train", "step": 2, "epoch": 1, "loss": 0.9},
                        {"kind": "val", "epoch": 1, "mAP": 0.1})
    tail.update()
    validated = epoch_marks(run_dir, tail)
    assert validated != snapped and validated.val_rows == 1
    assert epoch_marks(run_dir, tail) == validated  # nothing new: the same marks


def test_runs_table_counts_completed_epochs(tmp_path):
    from ui.training import runs_table

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runs.CONFIG).write_text('{"epochs": 5, "data": "shapes", "model": "demo"}')
    runs.write_status(run_dir, state="running", epoch=4, epochs_done=3, step=30)
    runs.append_metrics(run_dir, {"kind": "train", "step": 30, "epoch": 4, "loss": 1.0})
    table = runs_table([runs.summarize_run(run_dir)])
    assert table.loc[0, "epochs done"] == "3/5"  # epoch 4 is in progress: the header's count, not the table's
    runs.write_status(run_dir, epochs_done=None)  # a status.json from before the field: its epoch is shown
    assert runs_table([runs.summarize_run(run_dir)]).loc[0, "epochs done"] == "4/5"
