"""The Anchors page's Study section: the paper's anchor experiment (Table 8) on a stored dataset.

A study runs in its own process (`detector.anchor_study.start_study`: `python -m detector anchor-study`
in its own session), one ordinary training run per anchor set in the workspace's runs/, so /train
lists them like any other; this section only reads the study folder (study.json) and the runs'
status. `?study=NAME` keeps the study shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from detector import anchor_sets, anchor_study, runs
from detector.train_config import TrainConfig
from detector.viz import anchors as V
from ui.inputs import dataset_select
from ui.links import page_url

STUDY_PARAM = "study"
PICK_KEY = "study_pick"
REFRESH_S = 3.0
SET_CHOICES = (*anchor_sets.PAPER_KEYS, anchor_sets.FITTED)
SET_LABELS = {r.key: f"{r.key}: {r.settings}, {r.scales}" for r in anchor_sets.PAPER_TABLE8} | {
    anchor_sets.FITTED: "fitted: k-means on your boxes (the Fitness section's suggestion)"}


# ---------------------------------------------------------------- reading a study


def progress_rows(study: dict[str, Any], folder: Path) -> pd.DataFrame:
    """One row per set: its run (a link to /train), the run's state and epochs, as the runs say now."""
    rows = []
    for s in study["sets"]:
        run_dir = anchor_study.run_dir_of(study, s["key"], folder)
        status = runs.read_status(run_dir) if run_dir.is_dir() else None
        rows.append({"set": s["key"], "anchors": s["label"],
                     "run": page_url("train", run=run_dir.name) if status else None,
                     "state": status.shown_state if status else s.get("run_state", "pending"),
                     "epochs done": f"{status.epochs_done or 0} / {TrainConfig.from_dict(study['spec']['base']).epochs}"
                     if status else "-"})
    return pd.DataFrame(rows)


def results_table(study: dict[str, Any]) -> pd.DataFrame:
    """The study's table: per set our figures, and the paper's Table 8 mAP beside ours."""
    rows = []
    for s in study["sets"]:
        f = s.get("figures") or {}
        pr = (f.get("proposal_recall") or {}).get("iou") or {}
        ar = f.get("anchor_recall") or {}
        run_dir = Path(s["run"]) if s.get("run") else None
        rows.append({
            "set": s["key"], "sizes": " / ".join(",".join(map(str, lv)) for lv in _distinct(s["sizes"])),
            "ratios (h/w)": ",".join(f"{r:g}" for r in s["ratios"][0]),
            "per location": (f.get("anchors_per_location") or [None])[0],
            "anchors (median image)": f.get("anchors_median_image"),
            "anchor recall 0.5": ar.get("0.5"), "anchor recall 0.7": ar.get("0.7"),
            "proposal recall@300, 0.5": pr.get("0.5"), "proposal recall@300, 0.7": pr.get("0.7"),
            "mAP50": f.get("mAP50"), "mAP": f.get("mAP"), "train time (s)": f.get("train_time_s"),
            "paper mAP (VOC07)": (s.get("paper") or {}).get("mAP"),
            "run": page_url("train", run=run_dir.name) if run_dir and run_dir.is_dir() else None,
        })
    return pd.DataFrame(rows)


def _distinct(levels: list[list[int]]) -> list[list[int]]:
    """One group when every level has the same sizes (the demo's form), else every level."""
    return levels[:1] if all(lv == levels[0] for lv in levels) else levels


TABLE_COLUMNS = {
    "run": st.column_config.LinkColumn("run", display_text="open run", help="the run on /train"),
    "anchor recall 0.5": st.column_config.NumberColumn(format="%.2f", help="share of ground-truth boxes whose best "
                                                       "anchor has IoU >= 0.5 (all images, after the model's resize)"),
    "anchor recall 0.7": st.column_config.NumberColumn(format="%.2f", help="the same at IoU >= 0.7 (a positive anchor "
                                                       "by the paper's rule)"),
    "proposal recall@300, 0.5": st.column_config.NumberColumn(format="%.2f", help="validation boxes one of the top "
                                                              "300 proposals covers at IoU >= 0.5 (Fig. 4's measure)"),
    "proposal recall@300, 0.7": st.column_config.NumberColumn(format="%.2f"),
    "mAP50": st.column_config.NumberColumn(format="%.3f", help="validation mAP at IoU 0.5: the paper's metric"),
    "mAP": st.column_config.NumberColumn(format="%.3f", help="COCO mAP 0.5:0.95 on the validation split"),
    "train time (s)": st.column_config.NumberColumn(format="%.0f"),
    "paper mAP (VOC07)": st.column_config.NumberColumn(format="%.1f", help=anchor_sets.PAPER_SOURCE),
}


# ---------------------------------------------------------------- the section

SECTION_PARAM = "section"
SECTIONS = {"explore": "Explore anchors", "study": "Study: the paper's Table 8 on your data"}


def pick_section() -> str:
    """The Anchors page's section, explore or study, kept in the URL (`?section=study`)."""
    if st.session_state.get("anchors_section") is None:
        wanted = st.query_params.get(SECTION_PARAM)
        st.session_state["anchors_section"] = wanted if wanted in SECTIONS else "explore"
    section = st.segmented_control("Section", list(SECTIONS), format_func=SECTIONS.get, key="anchors_section",
                                   label_visibility="collapsed") or "explore"
    if section == "study":
        st.query_params[SECTION_PARAM] = section
    else:
        st.query_params.pop(SECTION_PARAM, None)
    return section


def _start_form() -> None:
    from detector.data import list_datasets

    names = [d.name for d in list_datasets() if d.boxes]
    if not names:
        st.info("Store a dataset with boxes on the Data page first: a study trains on it.")
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    data = dataset_select(c1, "Dataset", names, key="study_dataset")
    epochs = c2.number_input("Epochs per run", 1, 100, 4, key="study_epochs",
                             help="every run trains this long, from the same start (the demo model)")
    min_size = c3.number_input("Short side (px, 0 = model's)", 0, 1333, 0, step=32, key="study_min_size",
                               help="the model's resize target, the same for every run")
    sets = st.multiselect("Anchor sets", SET_CHOICES, default=list(SET_CHOICES), key="study_sets",
                          format_func=SET_LABELS.get)
    started = st.button("Start study", type="primary", icon=":material/play_arrow:", key="study_start",
                        disabled=not sets)
    if started:
        changes = {"model_kwargs": {"min_size": int(min_size)}} if min_size else {}
        name = anchor_study.new_study_name()
        anchor_study.start_study(name, data, int(epochs), [s for s in SET_CHOICES if s in sets], changes)
        st.session_state[PICK_KEY] = name
        st.query_params[STUDY_PARAM] = name
        st.rerun()


def _picked(names: list[str]) -> str | None:
    wanted = st.query_params.get(STUDY_PARAM)
    if wanted in names and st.session_state.get(PICK_KEY) not in names:
        st.session_state[PICK_KEY] = wanted
    if st.session_state.get(PICK_KEY) not in names:
        st.session_state[PICK_KEY] = names[0]
    name = st.selectbox("Study", names, key=PICK_KEY, help="studies in the workspace's studies/, newest first")
    st.query_params[STUDY_PARAM] = name
    return name


def render_study_section() -> None:
    """Start a study, follow it run by run, and compare its sets with the paper's Table 8."""
    st.markdown(
        "Ren et al. trained the same Faster R-CNN with six anchor settings (Table 8: PASCAL VOC 2007 test, VGG-16): "
        "one anchor per position lost 3 to 4 points of mAP, and 3 scales or 3 aspect ratios won them back. A study "
        "repeats it on your data: one ordinary training run per anchor set, same data, split, seed, schedule and "
        "initial weights (the demo model), differing only in the anchors; each run whose anchors per location differ "
        "from the demo's 15 starts with the RPN head's last layers (objectness and box regression) re-initialised.")
    with st.expander("Start a new study", expanded=not anchor_study.list_studies(), icon=":material/add_circle:"):
        st.caption("The paper's rows in this model's anchor form: the demo's levels all hold the sizes 16..256, so "
                   "the paper's 128², 256², 512² become the middle three (32, 64, 128) on every level; 3 ratios are "
                   "0.5, 1, 2 (h/w). 'fitted' is the k-means suggestion of the Fitness section for the dataset.")
        _start_form()
    names = anchor_study.list_studies()
    if not names:
        return
    name = _picked(names)
    folder = anchor_study.study_folder(name)
    if folder is None:
        return
    _study_view(folder)


def _done(study: dict[str, Any]) -> int:
    return sum(s.get("run_state") == "done" and (s.get("figures") or {}).get("mAP50") is not None
               for s in study["sets"])


def _progress(folder: Path, state: str | None, done: int) -> None:
    """The runs' progress; while the study runs this fragment redraws itself every REFRESH_S and the
    whole section once a set finishes or the study's state changes."""
    try:
        study = anchor_study.read_study(folder)
    except anchor_study.StudyError:
        return
    if study is None:
        tail = anchor_study.console_tail(folder)
        if tail and tail[-1].startswith("error:"):
            st.error(f"The study could not start: {tail[-1][len('error:'):].strip()}")
        else:
            st.info("Preparing the study (reading the dataset, laying out the anchor sets)...")
        if anchor_study.read_study(folder) is not None:
            st.rerun()
        return
    if study["shown_state"] != state or _done(study) != done:
        st.rerun()
    st.dataframe(progress_rows(study, folder), hide_index=True, key="study_progress", width="stretch",
                 column_config={"run": st.column_config.LinkColumn("run", display_text="open run")})
    st.caption("Each set's run is an ordinary run folder in the workspace's runs/: /train lists it, with its live "
               "curves and RPN snapshots.")


def _study_view(folder: Path) -> None:
    """Draw the study: its state, the runs' progress (live while it runs), the table and the figures."""
    try:
        study = anchor_study.read_study(folder)
    except anchor_study.StudyError as exc:
        st.error(str(exc))
        return
    if study is None:  # the process is still preparing study.json (or could not start)
        preparing = not any(line.startswith("error:") for line in anchor_study.console_tail(folder))
        st.fragment(_progress, run_every=REFRESH_S if preparing else None)(folder, None, 0)
        return
    state = study["shown_state"]
    sets = study["sets"]
    done = _done(study)
    current = study.get("current")
    st.markdown(f"**{folder.name}**: {state}, {done} of {len(sets)} runs done"
                + (f"; training **{current}**" if current else "")
                + f" · dataset {study['dataset']['data']} ({study['dataset']['train_images']} training, "
                  f"{study['dataset']['val_images']} validation images)")
    active = state in ("running", "stopping")
    if active:
        st.progress(done / max(len(sets), 1), text=f"run {min(done + 1, len(sets))} of {len(sets)}")
        if st.button("Stop study", key="study_stop", icon=":material/stop_circle:",
                     help="stops the run in training cleanly (its last.pt kept); start the study again to continue"):
            anchor_study.request_stop(folder)
            st.rerun()
    elif state in ("stopped", "interrupted", "failed"):
        st.warning(f"The study is {state}" + (f": {study['error']}" if study.get("error") else "") +
                   ". Continuing it keeps the finished runs and resumes the stopped one from its last.pt.")
        if st.button("Continue study", key="study_continue", icon=":material/play_arrow:"):
            anchor_study.continue_study(folder)
            st.rerun()
    st.fragment(_progress, run_every=REFRESH_S if active else None)(folder, state, done)
    st.markdown("**Our sets beside the paper's Table 8**")
    st.dataframe(results_table(study), hide_index=True, key="study_table", width="stretch", column_config=TABLE_COLUMNS)
    st.caption("Anchor recall is a property of the anchors alone (before training); proposal recall and mAP are the "
               "trained run's (best.pt) on the validation split. The paper's column is VOC 2007 mAP at IoU 0.5 with "
               "VGG-16 (other data, other backbone): compare the order of the rows, not the numbers.")
    finished = [s for s in sets if (s.get("figures") or {}).get("mAP50") is not None]
    if finished:
        c1, c2 = st.columns(2)
        c1.plotly_chart(V.study_map_figure(finished), key="study_map", width="stretch")
        c1.caption("mAP per anchor set: ours on the validation split (mAP50 is the paper's measure) and the paper's "
                   "Table 8 row where the set is one of them.")
        iou = c2.radio("Proposal recall at IoU", ("0.5", "0.7"), horizontal=True, key="study_iou")
        c2.plotly_chart(V.study_recall_figure(finished, iou), key="study_recall", width="stretch")
        c2.caption("Proposal recall against the number of proposals per image (the paper's Fig. 4 measure, at 300 "
                   "proposals in the table): how many validation boxes the RPN of each set still finds with few "
                   "proposals.")
