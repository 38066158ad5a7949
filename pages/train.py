"""Train: start a fine-tuning run, watch its losses live, stop and resume it, compare runs, watch
the RPN learn over epochs, and look at the hardest validation images afterwards."""

from functools import partial

import streamlit as st

from detector import runs
from detector.hard_examples import RANKINGS, hardest
from detector.run_progress import estimate_progress, format_duration
from detector.viz.training import (
    COMPARABLE,
    comparison_figure,
    contrast_figure,
    hard_example_figure,
    loss_figure,
    objectness_contrast,
    snapshot_detections_figure,
    snapshot_objectness_figure,
    snapshot_proposals_figure,
    validation_figure,
)
from ui.links import page_url
from ui.model import current_device
from ui.training import (
    checkpoint_bytes,
    config_summary,
    describe_device,
    hard_example_link,
    list_runs,
    load_val_image,
    metrics_csv,
    metrics_tail,
    new_run_form,
    run_folder,
    run_label,
    runs_table,
    scored_run,
    reset_zoom,
    select_run,
    selected_run,
    snapshot,
    snapshot_image,
    start_new_run,
    step_zoom,
    steps_per_epoch_hint,
)
from ui.router import ensure_router

ensure_router()

REFRESH_S = 2.0
LOSS_CHART = "train_loss_chart"
STATE_ICONS = {"running": ":material/play_circle:", "queued": ":material/schedule:", "stopping": ":material/pause_circle:",
               "done": ":material/check_circle:", "stopped": ":material/stop_circle:", "failed": ":material/error:",
               "interrupted": ":material/warning:", "missing": ":material/help:"}

st.title("Train")
st.markdown(
    "Fine-tune Faster R-CNN on a stored dataset. Training runs in its own process: refresh, open a second tab or "
    "restart the app and it keeps going; this page only reads the run folder. Faster R-CNN learns four things at "
    "once: the RPN's **objectness** (object or background for each anchor) and **anchor-to-box regression**, and "
    "the detector head's **classification** and **box regression** of each proposal."
)

device = current_device()
device_note = describe_device()
all_runs = list_runs()

# ---- a new run
with st.expander("Start a new run", expanded=not all_runs, icon=":material/add_circle:"):
    st.caption(device_note)
    config = new_run_form(device_note)
    if config is not None:
        run_dir = start_new_run(config)
        select_run(run_dir.name)
        st.rerun()

if not all_runs:
    st.info("No training run yet: start one above, or from a terminal with "
            "`python -m detector train --out workspace/runs/NAME --data DATASET` (it appears here too).")
    st.stop()

# ---- which run (in the URL: a refresh or a shared link comes back to it)
current = selected_run(all_runs)
names = [r.name for r in all_runs]
labels = {r.name: run_label(r) for r in all_runs}
pick = st.selectbox("Run", names, index=names.index(current.name), format_func=labels.get, key=f"train_pick_{current.name}",
                    help="Newest first. Runs started from the command line in this workspace appear here too.")
if pick != current.name:
    select_run(pick)
    st.rerun()
run_dir = current.run_dir
status = runs.read_status(run_dir)
try:
    run_config = runs.read_config(run_dir) or {}
except runs.RunError as exc:
    st.error(str(exc))
    run_config = {}
state = status.shown_state
active = state in runs.ACTIVE_STATES
steps_hint = steps_per_epoch_hint(run_config)

# ---- header: state, what it trains, stop / resume
h1, h2, h3 = st.columns([5, 1, 1])
h1.markdown(f"### {current.name} · {state}")
h1.caption(f"Dataset **{run_config.get('data', '?')}**; {config_summary(run_config)}"
           + (f"; training on {status.extra['device']}" if status.extra.get("device") else ""))
last_ckpt = runs.checkpoint_path(run_dir, "last")
if active:
    stopping = runs.stop_requested(run_dir) or state == "stopping"
    if h2.button("Stop", key="train_stop", icon=":material/stop:", disabled=stopping,
                 help="Asks the run to stop cleanly: it saves a checkpoint at the next step and exits; Resume continues."):
        runs.request_stop(run_dir)
        st.rerun()
    if stopping:
        h3.caption("Stop requested: waiting for the next step.")
elif status.resumable or state == "done":
    if last_ckpt.is_file() and state != "done":
        if h2.button("Resume", key="train_resume", icon=":material/play_arrow:", type="primary",
                     help="Continues from checkpoints/last.pt: same optimizer, schedule and step count."):
            runs.start_training(run_dir, resume=True)
            st.rerun()
    elif state != "done":
        if h2.button("Start again", key="train_again", icon=":material/replay:",
                     help="No checkpoint to resume from: starts a new run with the same settings."):
            select_run(start_new_run(run_config).name)
            st.rerun()
if state == "done" and last_ckpt.parent.is_dir():
    h2.link_button("Diagnose", page_url("diagnose", model=run_dir, run=current.name), icon=":material/troubleshoot:",
                   help="Per-class AP, confusion, error types and where missed objects are lost, on its validation split.")
if state == "interrupted":
    st.warning("This run's process is gone (or its heartbeat is stale) while it said it was training: it was "
               "interrupted, e.g. by a restart. Resume continues from its last checkpoint.", icon=STATE_ICONS["interrupted"])
elif state == "failed":
    st.error(f"The run failed: {status.error or 'see the log below'}", icon=STATE_ICONS["failed"])
elif state == "stopped":
    st.info("Stopped on request. Resume continues from the last checkpoint.", icon=STATE_ICONS["stopped"])

# ---- live curves: this fragment reruns on its own while the run is active, reading only new lines
live = st.toggle("Refresh live", True, key="train_live", disabled=not active,
                 help=f"While the run trains, the curves below re-read the new metrics every {REFRESH_S:g} s.")


@st.fragment(run_every=REFRESH_S if active and live else None)
def live_curves() -> None:
    tail = metrics_tail(run_dir)
    now = runs.read_status(run_dir)
    if now.shown_state != state:  # started, finished, stopped or died: redraw the whole page once
        st.rerun()
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
        st.progress(progress.fraction, text=f"{phase} · {len(train)} steps read"
                    + (f" · refreshes every {REFRESH_S:g} s" if live else " · live refresh paused"))
    if not train:
        st.info("No training step recorded yet: the engine is loading the data and the model." if active
                else "This run recorded no training step.")
        return
    c1, c2, c3 = st.columns([5, 2, 2], vertical_alignment="bottom")
    smoothing = c1.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="train_smoothing",
                          help="Exponential moving average of the per-step losses (as TensorBoard): 0 shows raw values.")
    log_y = c2.toggle("Log scale", False, key="train_log_y", help="Logarithmic loss axes.")
    zoom = step_zoom(current.name, LOSS_CHART)
    if c3.button("Reset zoom", key="train_zoom_reset", disabled=zoom is None, icon=":material/zoom_out_map:"):
        reset_zoom(current.name)
        zoom = None
    st.plotly_chart(loss_figure(train, smoothing, uirevision=f"loss-{current.name}", log_y=log_y, step_range=zoom),
                    key=LOSS_CHART, on_select="rerun", selection_mode="box", config={"displaylogo": False})
    st.caption("Per-step training losses (faint: raw, solid: smoothed) and the learning rate (linear warm-up, then "
               "the schedule). The RPN's objectness and box regression train the proposals; the detector head's "
               "classification and box regression train on the sampled RoIs. Drag a box on any panel to zoom to "
               "those steps: the zoom stays while new points arrive (pause the live refresh to drag at leisure)."
               + (f" Zoomed to steps {zoom[0]:.0f} to {zoom[1]:.0f}." if zoom else ""))
    if val:
        st.plotly_chart(validation_figure(val, train, uirevision=f"val-{current.name}"), key="train_val_chart",
                        config={"displaylogo": False})
        st.caption("Per epoch: the same four losses on the validation split (weights untouched) beside the mean "
                   "training loss, and COCO mAP of the detections: a gap that widens is overfitting.")


live_curves()

tab_rpn, tab_hard, tab_compare, tab_runs, tab_files = st.tabs(
    ["Watch the RPN learn", "Hardest validation images", "Compare runs", "All runs", "Log and downloads"])

# ---- the RPN over epochs, from the engine's per-epoch snapshots
with tab_rpn:
    epochs = runs.list_snapshots(run_dir)
    if not epochs:
        st.info("No RPN snapshot yet: the engine saves one before training (epoch 0) and after each epoch, "
                "on a few fixed validation images.")
    else:
        c1, c2, c3 = st.columns([3, 2, 2])
        epoch = c1.select_slider("Epoch", epochs, value=epochs[-1], key="train_snap_epoch",
                                 help="0 is the model before any training step.") if len(epochs) > 1 else epochs[0]
        snap = snapshot(run_dir, int(epoch))
        if not snap.images:
            st.info("This snapshot holds no image.")
        else:
            files = [im.file for im in snap.images]
            which = c2.selectbox("Image", range(len(files)), format_func=lambda i: files[i], key="train_snap_image")
            levels = snap.images[which].level_names
            level = c3.selectbox("FPN level", range(len(levels)), format_func=lambda k: f"level {levels[k]}",
                                 key="train_snap_level", help="Objectness of one pyramid level: small objects light "
                                 "up the fine levels, large ones the coarse levels.")
            im = snap.images[which]
            image = snapshot_image(run_dir, im.file)
            if image is None:
                st.caption("The image file is not available any more: boxes are drawn on a grey canvas.")
            f1, f2, f3 = st.columns(3)
            f1.plotly_chart(snapshot_objectness_figure(image, im, level, title=f"objectness, epoch {epoch}"),
                            key="train_snap_obj", config={"displaylogo": False})
            f2.plotly_chart(snapshot_proposals_figure(image, im, top=20, title=f"top 20 proposals, epoch {epoch}"),
                            key="train_snap_props", config={"displaylogo": False})
            f3.plotly_chart(snapshot_detections_figure(image, im, snap.class_names, 0.3, title=f"detections >= 0.3, epoch {epoch}"),
                            key="train_snap_dets", config={"displaylogo": False})
            st.caption("Ground truth is dashed green in each panel. Left: sigmoid(objectness) per cell (best anchor "
                       "shape at each location): as the objectness loss falls, the map sharpens onto the objects. "
                       "Middle: the RPN's top proposals after NMS (blue). Right: the detector's final boxes "
                       "(class score after softmax, per-class NMS).")
            inside, outside, seen = [], [], []
            for e in epochs:
                s = snapshot(run_dir, e)
                if len(s.images) > which:
                    i_in, i_out = objectness_contrast(s.images[which])
                    seen.append(e)
                    inside.append(i_in)
                    outside.append(i_out)
            st.plotly_chart(contrast_figure(seen, inside, outside, current=int(epoch),
                                            uirevision=f"contrast-{current.name}"),
                            key="train_snap_contrast", config={"displaylogo": False})
            st.caption("Mean objectness of the cells that overlap a ground-truth box against all other cells, over "
                       "every level: the RPN learning to tell objects from background (the paper's cls layer).")

# ---- after training: the hardest validation images
with tab_hard:
    if active:
        st.info("Available when the run ends: the final checkpoint scores every validation image.")
    elif not (runs.checkpoint_path(run_dir, "best").is_file() or last_ckpt.is_file()):
        st.info("This run saved no checkpoint.")
    else:
        k1, k2, k3 = st.columns([2, 2, 1])
        by = k1.radio("Hardest by", RANKINGS, key="train_hard_by", horizontal=True,
                      format_func={"loss": "highest loss (sum of the four)", "ap": "lowest AP of the image"}.get)
        max_images = int(k2.number_input("Score at most N validation images", 4, 2000, 48, key="train_hard_max"))
        threshold = k3.slider("Score threshold", 0.0, 1.0, 0.3, 0.05, key="train_hard_thresh")
        asked = st.session_state.setdefault("train_hard_asked", set())
        if st.button("Score the validation images", key="train_hard_go", icon=":material/search:",
                     help="Runs the best checkpoint over the validation split once (cached)."):
            asked.add(current.name)
        if current.name in asked:
            try:
                with st.spinner("Scoring validation images ..."):
                    scored = scored_run(run_dir, device, max_images)
            except (runs.RunError, ValueError) as exc:
                st.error(str(exc))
            else:
                st.caption(f"{len(scored.images)} of {scored.total_images} validation images scored with "
                           f"{scored.checkpoint.name}. Ground truth dashed, detections in class colours.")
                worst = hardest(scored.images, by, k=6)
                if not worst:
                    st.info("No validation image has ground truth to compute an AP on.")
                cols = st.columns(3)
                for n, s in enumerate(worst):
                    with cols[n % 3]:
                        ap = "n/a" if s.ap is None else f"{s.ap:.3f}"
                        fig = hard_example_figure(load_val_image(str(s.path)), s, scored.class_names, threshold)
                        st.markdown(f"**{n + 1}. {s.file}**  \nloss {s.loss:.3f} · AP {ap}")
                        st.plotly_chart(fig, key=f"train_hard_{n}", config={"displaylogo": False})
                        detail = ", ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in s.losses.items())
                        st.caption(f"{detail}; {len(s.gt_boxes)} ground-truth box(es), "
                                   f"{int((s.scores >= threshold).sum())} detection(s) above {threshold:.2f}.")
                        st.markdown(f"[Open in the RPN inspector]({hard_example_link(run_dir, run_config, s.file)}) "
                                    "with this run's model (pick the image there under Stored dataset).")

# ---- two or more runs on one chart
with tab_compare:
    chosen = st.multiselect("Runs", names, default=names[: min(2, len(names))], key="train_compare_runs",
                            format_func=labels.get, help="Pick two or more runs.")
    m1, m2 = st.columns([2, 3])
    metric = m1.selectbox("Curve", list(COMPARABLE), format_func=lambda k: COMPARABLE[k][0], key="train_compare_metric")
    if chosen:
        series = {}
        for name in chosen:
            tail = metrics_tail(run_folder(name))
            series[name] = tail.train if COMPARABLE[metric][1] == "train" else tail.val
        st.plotly_chart(comparison_figure(series, metric, st.session_state.get("train_smoothing", 0.6), uirevision="compare"), key="train_compare_chart",
                        config={"displaylogo": False})
        st.caption("The same curve of each run against step (training) or epoch (validation): e.g. COCO "
                   "weights against random initialisation, or two learning rates.")

with tab_runs:
    st.dataframe(runs_table(all_runs), hide_index=True, width="stretch", key="train_runs_table",
                 column_config={"best mAP": st.column_config.NumberColumn(format="%.3f")})
    st.caption("Every run folder in the workspace's runs/, newest first. A run whose process is gone while it "
               "said it was training shows as interrupted and can be resumed.")

with tab_files:
    tail = metrics_tail(run_dir)
    d1, d2, d3 = st.columns(3)
    d1.download_button("Metrics as CSV", metrics_csv(tail.train, tail.val), f"{current.name}_metrics.csv", "text/csv",
                       key="train_dl_csv", disabled=not (tail.train or tail.val))
    for col, which in ((d2, "best"), (d3, "last")):
        path = runs.checkpoint_path(run_dir, which)
        if path.is_file():
            col.download_button(f"Checkpoint {which}.pt ({path.stat().st_size / 1e6:.1f} MB)", partial(checkpoint_bytes, path),
                                f"{current.name}_{which}.pt", "application/octet-stream", key=f"train_dl_{which}",
                                help="torch.load(weights_only=True) loads it; `--checkpoint FILE` uses it.")
        else:
            col.caption(f"No {which}.pt yet.")
    st.code("\n".join(runs.log_tail(run_dir, lines=40)) or "(the log is empty)", language=None, height=320)
    st.caption(f"The last lines of {runs.log_path(run_dir)}.")
