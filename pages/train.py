"""Train: start a fine-tuning run, watch its losses live, stop and resume it, compare runs, watch
the RPN learn over epochs, and look at the hardest validation images afterwards."""

from functools import partial

import streamlit as st

from detector import runs
from ui.links import page_url
from ui.model import current_device
from ui.router import ensure_router
from ui.train.compare import render_comparison
from ui.train.curves import render_curves
from ui.train.files import render_run_files
from ui.train.form import describe_device, new_run_form
from ui.train.hard_examples import render_hard_examples
from ui.train.header import config_summary, render_state_note
from ui.train.metrics import epoch_marks, metrics_tail, steps_per_epoch_hint, train_split_size
from ui.train.run_list import list_runs, run_label, runs_table, select_run, selected_run, start_new_run
from ui.train.snapshots import render_rpn_snapshots

ensure_router()

REFRESH_S = 2.0  # the curves

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
    asked = new_run_form(device, device_note, train_split_size)
    if asked is not None:
        select_run(start_new_run(*asked).name)
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

# ---- header: state, what it trains, stop / resume
h1, h2, h3 = st.columns([5, 1, 1])
h1.markdown(f"### {current.name} · {state}")
h1.caption(f"Dataset **{run_config.get('data', '?')}**; {config_summary(run_config)}"
           + (f"; training on {status.extra['device']}" if status.extra.get("device") else ""))
if active:
    stopping = runs.stop_requested(run_dir) or state == "stopping"
    # callbacks run before the rerun's script, so a click counts even if a live refresh interrupts that rerun
    h2.button("Stop", key="train_stop", icon=":material/stop:", disabled=stopping, on_click=runs.request_stop,
              args=(run_dir,), help="Asks the run to stop cleanly: it saves a checkpoint at the next step and exits; "
              "Resume continues.")
    if stopping:
        h3.caption("Stop requested: waiting for the next step.")
elif status.resumable and runs.checkpoint_path(run_dir, "last").is_file():
    h2.button("Resume", key="train_resume", icon=":material/play_arrow:", type="primary",
              on_click=partial(runs.start_training, run_dir, resume=True),
              help="Continues from checkpoints/last.pt: same optimizer, schedule and step count.")
elif status.resumable:
    if h2.button("Start again", key="train_again", icon=":material/replay:",
                 help="No checkpoint to resume from: starts a new run with the same settings."):
        select_run(start_new_run(run_config).name)
        st.rerun()
if state == "done" and runs.checkpoint_path(run_dir, "last").parent.is_dir():
    h2.link_button("Diagnose", page_url("diagnose", model=run_dir, run=current.name), icon=":material/troubleshoot:",
                   help="Per-class AP, confusion, error types and where missed objects are lost, on its validation split.")
render_state_note(state, status)

live = st.toggle("Refresh live", True, key="train_live", disabled=not active,
                 help=f"While the run trains, the curves re-read what is new every {REFRESH_S:g} s; the tabs below "
                 "redraw when an epoch ends (a new RPN snapshot, a validation).")
drawn = epoch_marks(run_dir, metrics_tail(run_dir))  # the epochs the tabs below are drawn from


# ---- live: this fragment reruns on its own while the run is active, reading only what is new; the
# rest of the page redraws once when the run's state changes or an epoch ends, not on every refresh
@st.fragment(run_every=REFRESH_S if active and live else None)
def live_view() -> None:
    tail = metrics_tail(run_dir)
    now = runs.read_status(run_dir)
    if now.shown_state != state or epoch_marks(run_dir, tail) != drawn:
        st.rerun()
    render_curves(tail, now, current.name, run_config, active, live, REFRESH_S, steps_per_epoch_hint(run_config))


live_view()
tab_rpn, tab_hard, tab_compare, tab_runs, tab_files = st.tabs(
    ["Watch the RPN learn", "Hardest validation images", "Compare runs", "All runs", "Log and downloads"])
with tab_rpn:
    render_rpn_snapshots(run_dir, current.name)
with tab_hard:
    render_hard_examples(run_dir, current.name, run_config, active, device)
with tab_compare:  # the two most recent runs, until the user picks others
    render_comparison(names, labels)
with tab_runs:
    st.dataframe(runs_table(all_runs), hide_index=True, width="stretch", key="train_runs_table",
                 column_config={"best mAP": st.column_config.NumberColumn(format="%.3f")})
    st.caption("Every run folder in the workspace's runs/, newest first, as of the last epoch. A run whose process "
               "is gone while it said it was training shows as interrupted and can be resumed.")
with tab_files:
    render_run_files(run_dir, current.name, state, drawn.steps, active and live)
