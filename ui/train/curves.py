"""The live part of the training page: progress figures and the per-step loss and per-epoch
validation curves of a run, drawn from the metrics read so far (ui.train.metrics.metrics_tail), and
the user's zoom on the loss chart."""

from __future__ import annotations

from typing import Any

import streamlit as st

from detector import runs
from detector.run_progress import estimate_progress, format_duration
from detector.viz.training import loss_figure, validation_figure
from detector.wording import counted

LOSS_CHART = "train_loss_chart"

ZOOM_KEY = "train_zoom"  # session_state: run name -> (first step, last step)
BOX_SEEN_KEY = "train_zoom_box_seen"


def _selected_box(chart_key: str) -> tuple[float, float] | None:
    event = st.session_state.get(chart_key)
    try:
        boxes = event["selection"]["box"]
        xs = [float(v) for v in boxes[0]["x"]]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return (min(xs), max(xs)) if xs and max(xs) > min(xs) else None


def step_zoom(run_name: str, chart_key: str) -> tuple[float, float] | None:
    """The steps the user zoomed the loss chart to, kept in the session so refreshes keep it.

    Streamlit remounts a plotly chart whenever its figure changes (its element id hashes the
    spec), so plotly's own zoom (uirevision) does not survive new points; a box dragged on the
    chart comes back as a selection event instead, and is kept here per run.
    """
    zooms: dict[str, tuple[float, float]] = st.session_state.setdefault(ZOOM_KEY, {})
    box = _selected_box(chart_key)
    if box is not None and box != st.session_state.get(BOX_SEEN_KEY):
        zooms[run_name] = box
        st.session_state[BOX_SEEN_KEY] = box
    return zooms.get(run_name)


def reset_zoom(run_name: str) -> None:
    st.session_state.setdefault(ZOOM_KEY, {}).pop(run_name, None)


# Process-wide: a live refresh with nothing new (and every session watching the same run) gets the
# figure built before instead of building it again (building is ~10 x the cost of sending it).
# The key is the run and the bytes of metrics.jsonl read: the same bytes give the same rows.
@st.cache_resource(max_entries=32, show_spinner=False)
def _loss_figure(run_key: str, read_bytes: int, smoothing: float, log_y: bool, zoom: tuple[float, float] | None,
                 _train: list[dict[str, Any]]):
    return loss_figure(_train, smoothing, uirevision=f"loss-{run_key}", log_y=log_y, step_range=zoom)


@st.cache_resource(max_entries=16, show_spinner=False)
def _validation_figure(run_key: str, read_bytes: int, _val: list[dict[str, Any]], _train: list[dict[str, Any]]):
    return validation_figure(_val, _train, uirevision=f"val-{run_key}")


def render_curves(tail: runs.MetricsTail, now: runs.RunStatus, run_name: str, run_config: dict[str, Any],
                  active: bool, live: bool, refresh_s: float, steps_hint: int | None) -> None:
    """Epoch / step / speed / time / best mAP, the progress bar while active, and the curves."""
    train, val = tail.train, tail.val
    progress = estimate_progress(train, run_config.get("epochs") or now.extra.get("epochs"), val,
                                 steps_per_epoch_hint=steps_hint)
    p1, p2, p3, p4, p5 = st.columns(5)
    p1.metric("Epoch", f"{progress.epoch}/{progress.epochs or '?'}")
    p2.metric("Step", f"{progress.step}" + (f" / {progress.total_steps}" if progress.total_steps else ""))
    p3.metric("Images/s", f"{progress.images_per_s:.1f}" if progress.images_per_s else "—")
    p4.metric("Time left" if active else "Training time", format_duration(progress.eta_s if active else progress.elapsed_s))
    maps = [v["mAP"] for v in val if isinstance(v.get("mAP"), (int, float))]
    p5.metric("Best mAP", f"{max(maps):.3f}" if maps else "—")
    if active:
        phase = now.extra.get("phase") or now.state
        st.progress(progress.fraction, text=f"{phase} · {counted(len(train), 'step')} read"
                    + (f" · refreshes every {refresh_s:g} s" if live else " · live refresh paused"))
    if not train:
        st.info("No training step recorded yet: the engine is loading the data and the model." if active
                else "This run recorded no training step.")
        return
    c1, c2, c3 = st.columns([5, 2, 2], vertical_alignment="bottom")
    smoothing = c1.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="train_smoothing",
                          help="Exponential moving average of the per-step losses (as TensorBoard): 0 shows raw values.")
    log_y = c2.toggle("Log scale", False, key="train_log_y", help="Logarithmic loss axes.")
    zoom = step_zoom(run_name, LOSS_CHART)
    if c3.button("Reset zoom", key="train_zoom_reset", disabled=zoom is None, icon=":material/zoom_out_map:"):
        reset_zoom(run_name)
        zoom = None
    st.plotly_chart(_loss_figure(run_name, tail.offset, smoothing, log_y, zoom and tuple(zoom), train),
                    key=LOSS_CHART, on_select="rerun", selection_mode="box", config={"displaylogo": False})
    st.caption("Per-step training losses (faint: raw, solid: smoothed) and the learning rate (linear warm-up, then "
               "the schedule). The RPN's objectness and box regression train the proposals; the detector head's "
               "classification and box regression train on the sampled RoIs. Drag a box on any panel to zoom to "
               "those steps: the zoom stays while new points arrive (pause the live refresh to drag at leisure)."
               + (f" Zoomed to steps {zoom[0]:.0f} to {zoom[1]:.0f}." if zoom else ""))
    if val:
        st.plotly_chart(_validation_figure(run_name, tail.offset, val, train), key="train_val_chart",
                        config={"displaylogo": False})
        st.caption("Per epoch: the same four losses on the validation split (weights untouched) beside the mean "
                   "training loss, and COCO mAP of the detections: a gap that widens is overfitting.")


