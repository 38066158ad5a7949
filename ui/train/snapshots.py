"""'Watch the RPN learn': the engine's per-epoch RPN snapshots of a run, drawn on the training page.

Rendered inside the page's live fragment, so new snapshots appear as the engine writes them; the
epoch slider follows the latest epoch until the user moves it, and the image starts on one with
ground truth (there is nothing to watch on an empty one).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from detector import runs
from detector.viz.training import (
    contrast_figure,
    objectness_contrast,
    snapshot_detections_figure,
    snapshot_objectness_figure,
    snapshot_proposals_figure,
)
from detector.wording import counted
from ui.inputs import follow_default
from ui.train.val_images import snapshot_image

EPOCH_KEY, IMAGE_KEY, LEVEL_KEY = "train_snap_epoch", "train_snap_image", "train_snap_level"


@st.cache_data(show_spinner=False, max_entries=32)
def _snapshot(run_dir: str, epoch: int, stamp: float) -> runs.RpnSnapshot:
    del stamp
    return runs.read_snapshot(Path(run_dir), epoch)


def snapshot(run_dir: Path, epoch: int) -> runs.RpnSnapshot:
    path = runs.snapshot_path(run_dir, epoch)
    return _snapshot(str(run_dir), epoch, path.stat().st_mtime if path.exists() else 0.0)


def first_with_ground_truth(snap: runs.RpnSnapshot) -> int:
    """Index of the first snapshot image with a ground-truth box (0 when none has one)."""
    return next((i for i, im in enumerate(snap.images) if len(im.gt_boxes)), 0)


def contrast_over_epochs(run_dir: Path, epochs: list[int], which: int) -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean objectness on the ground truth, mean elsewhere) of one snapshot image."""
    seen, inside, outside = [], [], []
    for e in epochs:
        s = snapshot(run_dir, e)
        if len(s.images) > which:
            i_in, i_out = objectness_contrast(s.images[which])
            seen.append(e)
            inside.append(i_in)
            outside.append(i_out)
    return seen, inside, outside


PINNED_KEY = "_train_snap_pinned"  # session_state: run name -> the epoch the user moved the slider to


def _epoch_key(run_name: str, epochs: list[int]) -> str:
    # a new slider whenever an epoch arrives: a value the browser still holds for the old one (a
    # live refresh racing the page) can then never pass for the user's choice
    return f"{EPOCH_KEY}@{run_name}#{len(epochs)}"


def followed_epoch(run_name: str, epochs: list[int]) -> int:
    """The epoch the slider shows: the one the user moved it to, else the latest."""
    pinned = st.session_state.get(PINNED_KEY, {}).get(run_name)
    return pinned if pinned in epochs else epochs[-1]


def _pin(run_name: str, epochs: list[int]) -> None:
    """The user moved the slider: keep that epoch, or follow again when it is the latest."""
    value = st.session_state.get(_epoch_key(run_name, epochs))
    pins = st.session_state.setdefault(PINNED_KEY, {})
    if value is None or value == epochs[-1]:
        pins.pop(run_name, None)
    else:
        pins[run_name] = value


def render_rpn_snapshots(run_dir: Path, run_name: str) -> None:
    """The tab's content: epoch slider, image and level pickers, three panels, the contrast curve."""
    epochs = runs.list_snapshots(run_dir)
    if not epochs:
        st.info("No RPN snapshot yet: the engine saves one before training (epoch 0) and after each epoch, "
                "on a few fixed validation images. This tab picks them up as they are written.")
        return
    c1, c2, c3 = st.columns([3, 2, 2])
    if len(epochs) > 1:
        epoch = int(c1.select_slider("Epoch", epochs, value=followed_epoch(run_name, epochs), on_change=_pin,
                                     args=(run_name, epochs), key=_epoch_key(run_name, epochs),
                                     help="0 is the model before any training step. Follows the latest epoch "
                                     "while the run trains, unless you move it (back to the end follows again)."))
    else:
        epoch = epochs[0]
        c1.caption(f"Epoch {epoch} (the model before any training step)" if epoch == 0 else f"Epoch {epoch}")
    snap = snapshot(run_dir, epoch)
    if not snap.images:
        st.info("This snapshot holds no image.")
        return
    files = [im.file for im in snap.images]
    follow_default(IMAGE_KEY, first_with_ground_truth(snap), options=(run_name, tuple(files)))
    which = c2.selectbox("Image", range(len(files)), key=IMAGE_KEY,
                         format_func=lambda i: f"{files[i]} ({counted(len(snap.images[i].gt_boxes), 'box')})")
    im = snap.images[which]
    levels = im.level_names
    level = c3.selectbox("FPN level", range(len(levels)), format_func=lambda k: f"level {levels[k]}",
                         key=LEVEL_KEY, help="Objectness of one pyramid level: small objects light up the fine "
                         "levels, large ones the coarse levels.")
    image = snapshot_image(run_dir, im.file)
    if image is None:
        st.caption("The image file is not available any more: boxes are drawn on a grey canvas.")
    f1, f2, f3 = st.columns(3)
    f1.plotly_chart(snapshot_objectness_figure(image, im, level, title=f"objectness, epoch {epoch}"),
                    key="train_snap_obj", config={"displaylogo": False})
    f2.plotly_chart(snapshot_proposals_figure(image, im, top=20, title=f"top 20 proposals, epoch {epoch}"),
                    key="train_snap_props", config={"displaylogo": False})
    f3.plotly_chart(snapshot_detections_figure(image, im, snap.class_names, 0.3,
                                               title=f"detections >= 0.3, epoch {epoch}"),
                    key="train_snap_dets", config={"displaylogo": False})
    st.caption(f"**{im.file}**, epoch {epoch} of the snapshots 0 to {epochs[-1]}. Ground truth is dashed green in "
               "each panel. Left: sigmoid(objectness) per cell (best anchor shape at each location): as the "
               "objectness loss falls, the map sharpens onto the objects. Middle: the RPN's top proposals after NMS "
               "(blue). Right: the detector's final boxes (class score after softmax, per-class NMS).")
    seen, inside, outside = contrast_over_epochs(run_dir, epochs, which)
    st.plotly_chart(contrast_figure(seen, inside, outside, current=epoch, uirevision=f"contrast-{run_name}"),
                    key="train_snap_contrast", config={"displaylogo": False})
    st.caption("Mean objectness of the cells that overlap a ground-truth box against all other cells, over "
               "every level: the RPN learning to tell objects from background (the paper's cls layer).")
