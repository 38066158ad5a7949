"""The cached model loader and the model choice shared by every page.

A model source is a name, never a path: `demo`, a builder name, `run:<run id>` (the checkpoint of
a training run in the workspace) or `upload:<file name>` (a checkpoint in workspace/models/). The
choice lives in `st.session_state` (set by the sidebar) and in `st.query_params` (so a refresh or
a shared link lands on the same model); a name not among `model_choices()` (a path, an unknown
run) is ignored for the default, without touching the filesystem for it. A page run on its own
(AppTest) falls back to the default model (checkpoints.default_model). Models are loaded once per (source, file
mtime, device, knobs), in one cache shared by every session of the server.
"""

from __future__ import annotations

import dataclasses

import streamlit as st
import torch

from detector import checkpoints, models, runs, weights
from detector.workspace import models_dir, runs_dir
from ui.links import RUN_PREFIX, UPLOAD_PREFIX

MODEL_KEY = "model_source"
DEVICE_KEY = "device_pref"


def device_preference() -> str:
    """'auto', 'cpu' or 'cuda', from the sidebar or the URL."""
    pref = st.session_state.get(DEVICE_KEY) or st.query_params.get("device", "auto")
    return pref if pref in ("auto", "cpu", "cuda") else "auto"


def current_device() -> torch.device:
    """The device models run on: CUDA when asked for or auto-detected, else CPU."""
    pref = device_preference()
    if pref == "cuda" and not torch.cuda.is_available():
        pref = "cpu"
    return models.resolve_device(pref)


CHECKPOINT_SUFFIXES = (".pt", ".pth")


def run_checkpoints() -> list[str]:
    """`run:<id>` of every run folder that holds a checkpoint, newest first."""
    found = [run for run in runs_dir().iterdir() if run.is_dir() and runs.best_checkpoint(run) is not None]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [RUN_PREFIX + p.name for p in found]


def uploaded_checkpoints() -> list[str]:
    """`upload:<file name>` of every checkpoint file in workspace/models/, by name."""
    return [UPLOAD_PREFIX + p.name for p in sorted(models_dir().iterdir())
            if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES]


def model_choices() -> list[str]:
    """Every model the picker offers: demo (when shipped), the builders, run checkpoints, uploads."""
    builders = [n for n in models.MODEL_NAMES if n != models.DEMO_ARCH]
    demo = [checkpoints.DEMO] if checkpoints.DEMO_CHECKPOINT.is_file() else []
    return demo + builders + run_checkpoints() + uploaded_checkpoints()


def is_model_name(value: str) -> bool:
    """True when `value` has the form of a model name (no path: no separator, no '..', no NUL)."""
    name = value.removeprefix(RUN_PREFIX).removeprefix(UPLOAD_PREFIX)
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def offered(value: object) -> str | None:
    """`value` when it names a model the picker offers, else None (a path is never looked at)."""
    if not isinstance(value, str) or not is_model_name(value):
        return None
    if value in models.ARCHITECTURES:  # every builder is a name (the picker lists all but the demo's own)
        return value
    return value if value in model_choices() else None


def checkpoint_source(source: str) -> str:
    """What detector.models loads for a model name: demo, a builder, or a path inside the workspace.

    Raises CheckpointError for a name that is not a model of this workspace."""
    if source == checkpoints.DEMO or source in models.ARCHITECTURES:
        return source
    if is_model_name(source):
        if source.startswith(RUN_PREFIX):
            path = runs.run_path(source[len(RUN_PREFIX):])
            if path is not None:
                return str(path)
        elif source.startswith(UPLOAD_PREFIX):
            path = models_dir() / source[len(UPLOAD_PREFIX):]
            if path.is_file():
                return str(path)
    raise checkpoints.CheckpointError(f"{source!r} is not a model of this workspace (demo, a builder, run:<id> or "
                                 "upload:<file>)")


def model_label(source: str) -> str:
    """Human label of a model source for pickers."""
    if source == checkpoints.DEMO:
        return "Demo (shipped, trained on synthetic shapes)"
    if source in models.ARCHITECTURES:
        status = weights.weights_status(source)
        return f"{source} ({'COCO' if status.kind == 'coco' else status.kind} weights)" if status.cached else f"{source} (random weights)"
    if source.startswith(RUN_PREFIX):
        return f"run {source[len(RUN_PREFIX):]}"
    if source.startswith(UPLOAD_PREFIX):
        return f"uploaded {source[len(UPLOAD_PREFIX):]}"
    return source


def default_source() -> tuple[str, str]:
    """(source, why) of the default model for the current device."""
    return checkpoints.default_model(current_device())


def selected_source() -> str:
    """The model chosen in the sidebar or named in the URL when the picker offers it, else the default."""
    return offered(st.session_state.get(MODEL_KEY)) or offered(st.query_params.get("model")) or default_source()[0]


def _mtime(source: str) -> float:
    if source in models.ARCHITECTURES:
        return 0.0
    try:
        return checkpoints.checkpoint_path_for(checkpoint_source(source)).stat().st_mtime
    except (checkpoints.CheckpointError, OSError):
        return 0.0


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def _load(source: str, mtime: float, device: str, overrides: tuple) -> checkpoints.LoadedModel:
    del mtime  # part of the cache key only: a rewritten checkpoint loads again
    path = checkpoint_source(source)
    loaded = checkpoints.load_model(path, device, **dict(overrides))
    if path == source:
        return loaded
    # the page names the model as the picker does, never by its path on the server
    ckpt = checkpoints.checkpoint_path_for(path)
    return dataclasses.replace(loaded, source=source, description=loaded.description.replace(
        f"checkpoint {ckpt}", f"{model_label(source)} ({ckpt.name})"))


def model_key(source: str, device: torch.device | str = "cpu") -> str:
    """A key naming exactly this model file version (source, checkpoint mtime, device): for caches of
    results that stay right while the same file is loaded again (detections, exports)."""
    return f"{source}|{_mtime(source)}|{device}"


def loaded_model_key(loaded: checkpoints.LoadedModel) -> str:
    """A key naming one loaded model object (source and object identity): for caches that hold what
    this very object computed (feature maps, figures); a reloaded checkpoint gets a new key."""
    return f"{loaded.source}|{id(loaded.model)}"


def get_model(source: str, device: torch.device | str = "cpu", **overrides) -> checkpoints.LoadedModel:
    """The cached LoadedModel for `source`; on a bad checkpoint, an error on the page and a stop."""
    try:
        return _load(source, _mtime(source), str(device), tuple(sorted(overrides.items())))
    except checkpoints.CheckpointError as exc:
        st.error(f"Cannot use this model: {exc}")
        st.stop()
        raise  # unreachable; st.stop raises


def current_model(**overrides) -> checkpoints.LoadedModel:
    """The model every page uses: the sidebar's choice on the sidebar's device."""
    return get_model(selected_source(), current_device(), **overrides)
