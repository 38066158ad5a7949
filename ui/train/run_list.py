"""The training page's runs: the workspace's runs listed (read again only when their files
change), the one in the URL (`?run=NAME`), the All runs table, and starting a new one.

The page only reads run folders through detector.runs; training runs in its own process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from detector import runs
from detector.train_config import TrainConfig
from detector.workspace import runs_dir

RUN_PARAM = "run"  # st.query_params key holding the run's folder name


def run_label(summary: runs.RunSummary) -> str:
    """A picker label that never changes while the run trains (Streamlit matches widget values by
    their label: a label that changed would lose the choice)."""
    return f"{summary.name} · {summary.dataset or '?'} · {summary.model or 'default model'}"


def selected_run(all_runs: list[runs.RunSummary]) -> runs.RunSummary | None:
    """The run named in the URL (`?run=NAME`), else the most recent one; the URL is kept in step."""
    if not all_runs:
        return None
    by_name = {r.name: r for r in all_runs}
    wanted = st.query_params.get(RUN_PARAM)
    chosen = by_name.get(wanted) if wanted else None
    if chosen is None:
        chosen = all_runs[0]
        st.query_params[RUN_PARAM] = chosen.name
    return chosen


def _runs_signature() -> tuple:
    """What the runs table depends on: each run folder's status and metrics file versions."""
    root = runs_dir()
    sig = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        stamps = []
        for f in (runs.STATUS, runs.CONFIG, runs.METRICS):
            try:
                st_ = (p / f).stat()
                stamps.append((st_.st_mtime_ns, st_.st_size))
            except OSError:
                stamps.append(None)
        sig.append((p.name, tuple(stamps)))
    return tuple(sig)


@st.cache_data(show_spinner=False, max_entries=4, ttl=30)
def _list_runs(signature: tuple) -> list[runs.RunSummary]:
    del signature
    return runs.list_runs()


def list_runs() -> list[runs.RunSummary]:
    """runs.list_runs(), read again only when a run's files changed (or after 30 s, for the
    interrupted check, which depends on time)."""
    return _list_runs(_runs_signature())


def select_run(name: str) -> None:
    st.query_params[RUN_PARAM] = name


def run_folder(name: str) -> Path:
    return runs_dir() / name


def runs_table(all_runs: list[runs.RunSummary]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.name, "state": r.state, "dataset": r.dataset, "model": r.model,
        "epochs done": _epochs_done(r), "step": r.step, "best mAP": r.best_map, "error": r.error or "",
    } for r in all_runs], columns=["run", "state", "dataset", "model", "epochs done", "step", "best mAP", "error"])


def _epochs_done(r: runs.RunSummary) -> str:
    """Completed epochs of a run, "3/5" (status files older than `epochs_done` give the epoch field)."""
    done = r.epoch if r.epochs_done is None else r.epochs_done
    return f"{done}/{r.epochs}" if r.epochs else str(done)


def start_new_run(config: dict[str, Any], name: str | None = None) -> Path:
    """Write the run folder (config.json, status queued; named `name` or a dated id) and launch the
    engine in its own session."""
    run_dir = runs.create_run(TrainConfig.from_dict(config).to_dict(), name=name)
    runs.start_training(run_dir)
    return run_dir
