"""ui.train.metrics' epoch marks: what tells the Train page's live fragment that an epoch ended, so the
tabs drawn once per epoch (snapshots, comparison, runs table) redraw then and not on every refresh."""

from __future__ import annotations


from detector import runs
from ui.train.metrics import epoch_marks


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

    runs.write_snapshot(run_dir, runs.RpnSnapshot(0, (), ()))
    snapped = epoch_marks(run_dir, tail)
    assert snapped != stepped and snapped.snapshots == (0,)

    runs.append_metrics(run_dir, {"kind": "train", "step": 2, "epoch": 1, "loss": 0.9},
                        {"kind": "val", "epoch": 1, "mAP": 0.1})
    tail.update()
    validated = epoch_marks(run_dir, tail)
    assert validated != snapped and validated.val_rows == 1
    assert epoch_marks(run_dir, tail) == validated  # nothing new: the same marks
