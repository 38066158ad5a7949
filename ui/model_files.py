"""Model files a user brings: a checkpoint from elsewhere, or a COCO weight file for an offline machine.

Drawn in the sidebar under the model picker. A checkpoint (ours, torchvision references', or a bare
state_dict with its architecture and class names) is kept as uploaded in workspace/uploads/, stored
in this project's format in workspace/models/ and chosen (URL `model=upload:<file>`); a weight
file goes through `detector.weights.add_weights` into torchvision's cache. Both are read with
`weights_only=True`; anything else is refused with the reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from detector import checkpoints, models, weights
from detector.workspace import models_dir, uploads_dir
from ui.links import model_param
from ui.model import MODEL_KEY

RECORDED = "(recorded in the file)"
_MESSAGE = "model_files_message"


def _save_upload(upload) -> Path:
    """The uploaded bytes, kept as uploaded in workspace/uploads/ (a fresh name if one exists)."""
    folder = uploads_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{Path(upload.name).stem}-", suffix=Path(upload.name).suffix)
    with open(fd, "wb") as f:
        f.write(upload.getvalue())
    return Path(name)


def _add_checkpoint() -> None:
    upload = st.session_state.get("model_file_upload")
    if upload is None:
        st.session_state[_MESSAGE] = ("warning", "Choose a file first.")
        return
    arch = st.session_state.get("model_file_arch")
    classes = st.session_state.get("model_file_classes") or None
    try:
        stored = checkpoints.import_checkpoint(
            _save_upload(upload), models_dir(), name=upload.name, arch=None if arch in (None, RECORDED) else arch,
            class_names=checkpoints.parse_class_names(classes))
    except (checkpoints.CheckpointError, ValueError) as exc:
        st.session_state[_MESSAGE] = ("error", str(exc))
        return
    st.session_state[MODEL_KEY] = model_param(stored)  # `upload:<file>`; a callback may set it before the picker
    st.query_params["model"] = model_param(stored)
    st.session_state[_MESSAGE] = ("success", f"Stored as {stored.name} and chosen.")


def _add_weights() -> None:
    upload = st.session_state.get("weights_file_upload")
    if upload is None:
        st.session_state[_MESSAGE] = ("warning", "Choose a file first.")
        return
    saved = _save_upload(upload)
    try:
        added = weights.add_weights(saved, file_name=upload.name)
    except (weights.WeightsFileRefused, OSError) as exc:
        st.session_state[_MESSAGE] = ("error", str(exc))
        return
    st.cache_resource.clear()  # models built before now had random weights
    note = f" Note: {added.note}." if added.note else ""
    st.session_state[_MESSAGE] = ("success", f"{added.arch}: {added.status.message}.{note}")


def render_model_files() -> None:
    """The sidebar's "Add a model file" expander, and what the last add did (above it: the expander
    redraws closed when the picker's list changes)."""
    message = st.session_state.pop(_MESSAGE, None)
    if message:
        getattr(st, message[0])(message[1])
    with st.expander("Add a model file", icon=":material/upload_file:"):
        kind = st.radio("What", ["Checkpoint", "COCO weight file"], horizontal=True, key="model_file_kind",
                        help="A checkpoint trained elsewhere, or the pretrained weight file torchvision downloads "
                             "(for a machine without network).")
        if kind == "Checkpoint":
            st.file_uploader("Checkpoint (.pt, .pth)", type=["pt", "pth"], key="model_file_upload",
                             help="Ours, torchvision's references/detection/train.py checkpoint, or a bare state_dict.")
            st.selectbox("Architecture", [RECORDED] + [n for n in models.MODEL_NAMES], key="model_file_arch",
                         help="Only for a bare state_dict, which does not record it.")
            st.text_input("Class names", key="model_file_classes", placeholder="cat,dog,bird",
                          help="In label order, for a file that does not record them (default: COCO's for 91 "
                               "classes, else numbered).")
            st.button("Add checkpoint", key="model_file_add", on_click=_add_checkpoint)
        else:
            st.file_uploader("Weight file, named as torchvision names it", type=["pth"], key="weights_file_upload",
                             help=", ".join(sorted(weights.expected_weight_files())))
            st.button("Add weights", key="weights_file_add", on_click=_add_weights)
