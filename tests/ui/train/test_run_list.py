"""ui.train.run_list: the All runs table of the Train page."""

from __future__ import annotations

from detector import runs
from ui.train.run_list import runs_table


def test_runs_table_counts_completed_epochs(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runs.CONFIG).write_text('{"epochs": 5, "data": "shapes", "model": "demo"}')
    runs.write_status(run_dir, state="running", epoch=4, epochs_done=3, step=30)
    runs.append_metrics(run_dir, {"kind": "train", "step": 30, "epoch": 4, "loss": 1.0})
    table = runs_table([runs.summarize_run(run_dir)])
    assert table.loc[0, "epochs done"] == "3/5"  # epoch 4 is in progress: the header's count, not the table's
    runs.write_status(run_dir, epochs_done=None)  # a status.json from before the field: its epoch is shown
    assert runs_table([runs.summarize_run(run_dir)]).loc[0, "epochs done"] == "4/5"
