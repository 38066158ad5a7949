"""'Compare runs' on the training page: one curve of several runs on one chart."""

from __future__ import annotations

import streamlit as st

from detector.viz.training import COMPARABLE, comparison_figure
from ui.inputs import follow_default
from ui.train.metrics import metrics_tail
from ui.train.run_list import run_folder


def render_comparison(names: list[str], labels: dict[str, str]) -> None:
    """'Compare runs': one curve of several runs on one chart (the two most recent preselected)."""
    follow_default("train_compare_runs", names[:2])
    chosen = st.multiselect("Runs", names, key="train_compare_runs", format_func=labels.get,
                            help="Pick two or more runs (the two most recent are preselected).")
    metric = st.columns([2, 3])[0].selectbox("Curve", list(COMPARABLE), format_func=lambda k: COMPARABLE[k][0],
                                             key="train_compare_metric")
    if chosen:
        series = {n: getattr(metrics_tail(run_folder(n)), COMPARABLE[metric][1]) for n in chosen}
        st.plotly_chart(comparison_figure(series, metric, st.session_state.get("train_smoothing", 0.6),
                                          uirevision="compare"), key="train_compare_chart",
                        config={"displaylogo": False})
        st.caption("The same curve of each run against step (training) or epoch (validation): e.g. COCO "
                   "weights against random initialisation, or two learning rates.")
