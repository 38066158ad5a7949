"""'Hardest validation images' of a finished run, on the training page: scored once by the run's
checkpoint (cached), ranked by loss or by the image's own AP, each linking to /rpn on that image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
import torch

from detector import runs
from detector.hard_examples import RANKINGS, hardest
from detector.viz.training import hard_example_figure
from detector.wording import counted
from detector.workspace import datasets_dir
from ui.links import page_url
from ui.train.val_images import load_val_image, scored_run

RANKING_LABELS = {"loss": "highest loss (sum of the four)", "ap": "lowest AP of the image"}


def hard_example_link(run_dir: Path, config: dict[str, Any], file: str) -> str:
    """The /rpn link that opens a validation image of this run with the run's model (the
    dataset is named only when the run trained on a stored dataset, not a folder path)."""
    data = config.get("data")
    stored = data if data and (datasets_dir() / str(data) / "dataset.json").is_file() else None
    return page_url("rpn", model=run_dir, dataset=stored, image=file if stored else None)


def describe(scored_image: Any, threshold: float) -> str:
    """One line per image: its four losses, ground-truth boxes and detections above the threshold."""
    detail = ", ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in scored_image.losses.items())
    return (f"{detail}; {len(scored_image.gt_boxes)} ground-truth box(es), "
            f"{counted(int((scored_image.scores >= threshold).sum()), 'detection')} above {threshold:.2f}.")


def render_hard_examples(run_dir: Path, run_name: str, run_config: dict[str, Any], active: bool,
                         device: torch.device) -> None:
    """The tab's content (scoring starts on a button press, once per run and session)."""
    if active:
        st.info("Available when the run ends: the final checkpoint scores every validation image.")
        return
    if runs.best_checkpoint(run_dir) is None:
        st.info("This run saved no checkpoint.")
        return
    k1, k2, k3 = st.columns([2, 2, 1])
    by = k1.radio("Hardest by", RANKINGS, key="train_hard_by", horizontal=True, format_func=RANKING_LABELS.get)
    max_images = int(k2.number_input("Score at most N validation images", 4, 2000, 48, key="train_hard_max"))
    threshold = k3.slider("Score threshold", 0.0, 1.0, 0.3, 0.05, key="train_hard_thresh")
    asked = st.session_state.setdefault("train_hard_asked", set())
    if st.button("Score the validation images", key="train_hard_go", icon=":material/search:",
                 help="Runs the best checkpoint over the validation split once (cached)."):
        asked.add(run_name)
    if run_name not in asked:
        return
    try:
        with st.spinner("Scoring validation images ..."):
            scored = scored_run(run_dir, device, max_images)
    except (runs.RunError, ValueError) as exc:
        st.error(str(exc))
        return
    st.caption(f"{len(scored.images)} of {scored.total_images} validation images scored with "
               f"{scored.checkpoint.name}. Ground truth dashed, detections in class colours.")
    worst = hardest(scored.images, by, k=6)
    if not worst:
        st.info("No validation image has ground truth to compute an AP on.")
    cols = st.columns(3)
    for n, s in enumerate(worst):
        with cols[n % 3]:
            ap = "n/a" if s.ap is None else f"{s.ap:.3f}"
            st.markdown(f"**{n + 1}. {s.file}**  \nloss {s.loss:.3f} · AP {ap}")
            st.plotly_chart(hard_example_figure(load_val_image(str(s.path)), s, scored.class_names, threshold),
                            key=f"train_hard_{n}", config={"displaylogo": False})
            st.caption(describe(s, threshold))
            st.markdown(f"[Open {s.file} in the RPN inspector]({hard_example_link(run_dir, run_config, s.file)}) "
                        "with this run's model.")
