"""The cached model loader and the model choice shared by every page.

The choice lives in `st.session_state` (set by the sidebar) and in `st.query_params` (so a
refresh or a shared link lands on the same model); a page run on its own (AppTest) falls back to
the default model of DESIGN.md. Models are loaded once per (source, file mtime, device, knobs).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

from detector import checkpoints, models, weights
from detector.workspace import runs_dir
from ui.links import source_from_param

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


def run_checkpoints() -> list[str]:
    """Run folders that hold a checkpoint, newest first (as model sources)."""
    found = []
    for run in runs_dir().iterdir():
        ckpts = run / "checkpoints"
        if (ckpts / "best.pt").is_file() or (ckpts / "last.pt").is_file():
            found.append(run)
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [str(p) for p in found]


def model_choices() -> list[str]:
    """Every model the picker offers: demo (when shipped), the builders, then run checkpoints."""
    builders = [n for n in models.MODEL_NAMES if n != models.DEMO_ARCH]
    demo = [checkpoints.DEMO] if checkpoints.DEMO_CHECKPOINT.is_file() else []
    return demo + builders + run_checkpoints()


def model_label(source: str) -> str:
    """Human label of a model source for pickers."""
    if source == checkpoints.DEMO:
        return "Demo (shipped, trained on synthetic shapes)"
    if source in models.ARCHITECTURES:
        status = weights.weights_status(source)
        return f"{source} ({'COCO' if status.kind == 'coco' else status.kind} weights)" if status.cached else f"{source} (random weights)"
    return f"run {Path(source).name}"


def default_source() -> tuple[str, str]:
    """(source, why) of the default model for the current device."""
    return checkpoints.default_model(current_device())


def selected_source() -> str:
    """The model chosen in the sidebar or named in the URL (`?model=run:ID`, see ui.links), else the default."""
    chosen = st.session_state.get(MODEL_KEY) or source_from_param(st.query_params.get("model"))
    if chosen and (chosen in models.ARCHITECTURES or chosen == checkpoints.DEMO or Path(chosen).exists()):
        return chosen
    return default_source()[0]


def _mtime(source: str) -> float:
    try:
        return checkpoints.checkpoint_path_for(source).stat().st_mtime if source not in models.ARCHITECTURES else 0.0
    except (checkpoints.CheckpointError, OSError):
        return 0.0


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def _load(source: str, mtime: float, device: str, overrides: tuple) -> checkpoints.LoadedModel:
    del mtime  # part of the cache key only: a rewritten checkpoint loads again
    return checkpoints.load_model(source, device, **dict(overrides))


def model_key(source: str, device: torch.device | str = "cpu") -> str:
    """A key naming exactly this model (source, checkpoint mtime, device): for caches of results."""
    return f"{source}|{_mtime(source)}|{device}"


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
