"""The training page's "Log and downloads" tab: the metrics CSV and the checkpoints to download, the
export of a finished run, and the log's last lines, re-read on their own while the run trains."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from detector import runs
from ui.links import model_param
from ui.model_export import render_export
from ui.train.metrics import metrics_csv_of

LOG_REFRESH_S = 5.0  # the log tail, while the run trains


def checkpoint_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def render_run_files(run_dir: Path, run_name: str, state: str, has_steps: bool, live: bool) -> None:
    """The tab's content. `live`: the run trains and the user left the live refresh on."""
    d1, d2, d3 = st.columns(3)
    d1.download_button("Metrics as CSV", partial(metrics_csv_of, run_dir), f"{run_name}_metrics.csv",
                       "text/csv", key="train_dl_csv", disabled=not has_steps,
                       help="Every step and epoch recorded so far, read when you click.")
    for col, which in ((d2, "best"), (d3, "last")):
        path = runs.checkpoint_path(run_dir, which)
        if path.is_file():
            col.download_button(f"Checkpoint {which}.pt ({path.stat().st_size / 1e6:.1f} MB)",
                                partial(checkpoint_bytes, path), f"{run_name}_{which}.pt",
                                "application/octet-stream", key=f"train_dl_{which}",
                                help="torch.load(weights_only=True) loads it; `--checkpoint FILE` uses it.")
        else:
            col.caption(f"No {which}.pt yet.")
    if state == "done" and runs.best_checkpoint(run_dir) is not None:
        st.markdown("**Export the trained model**")
        render_export(model_param(run_dir), run_name, "train_export")
    st.fragment(_log_tail, run_every=LOG_REFRESH_S if live else None)(run_dir, live)


def _log_tail(run_dir: Path, live: bool) -> None:
    st.code("\n".join(runs.log_tail(run_dir, lines=40)) or "(the log is empty)", language=None, height=320)
    st.caption(f"The last lines of {runs.log_path(run_dir)}" + (f", re-read every {LOG_REFRESH_S:g} s." if live else "."))
