"""The shared sidebar: model picker, device, and the weights status in plain words."""

from __future__ import annotations

import streamlit as st
import torch

from detector import checkpoints, models, weights
from ui.links import model_param
from ui.model_files import render_model_files
from ui.model import DEVICE_KEY, MODEL_KEY, current_device, default_source, model_choices, model_label, selected_source


def _sync_query_params() -> None:
    st.query_params["model"] = model_param(st.session_state[MODEL_KEY])
    st.query_params["device"] = st.session_state[DEVICE_KEY]


def render_sidebar() -> None:
    """Draw the sidebar; the choice is kept in session_state and in the URL."""
    with st.sidebar:
        st.subheader("Model")
        choices = model_choices()
        current = selected_source()
        if current not in choices:
            choices = [current] + choices
        if MODEL_KEY not in st.session_state:
            st.session_state[MODEL_KEY] = current
            asked = st.query_params.get("model")
            if asked is not None and asked != current:  # a name the picker does not offer (or a path)
                st.warning("The model named in the link is not one this server offers (demo, a builder, "
                           "run:<id> of a run with a checkpoint, upload:<file>): using the default.",
                           icon=":material/link_off:")
                st.query_params["model"] = current
        if DEVICE_KEY not in st.session_state:
            pref = st.query_params.get("device", "auto")
            st.session_state[DEVICE_KEY] = pref if pref in ("auto", "cpu", "cuda") else "auto"
        st.selectbox("Model", choices, format_func=model_label, key=MODEL_KEY, on_change=_sync_query_params,
                     help="Every page uses this model. Builders use COCO weights when they are in the torch cache.")
        source = st.session_state[MODEL_KEY]
        default, why = default_source()
        if source == default:
            st.caption(f"Default model: {why}.")

        if source in models.ARCHITECTURES:
            arch = models.architecture(source)
            status = weights.weights_status(source)
            st.caption(f"{arch.description}; {arch.on_cpu}.")
            if status.cached:
                st.success(status.message, icon=":material/check_circle:")
            else:
                st.warning(status.message, icon=":material/warning:")
                if st.button("Download weights", key="download_weights",
                             help="Fetches torchvision's pretrained weights into the torch cache (needs internet)."):
                    with st.spinner(f"Downloading {source} weights ..."):
                        try:
                            weights.download_weights(source)
                            st.success("Saved to the torch cache (TORCH_HOME).")
                            st.cache_resource.clear()
                        except weights.WeightsUnavailable as exc:
                            st.error(str(exc))
        elif source == checkpoints.DEMO:
            st.info("Demo model: shipped with the app, trained offline on synthetic circles, rectangles and "
                    "triangles. It needs no download.", icon=":material/school:")
        else:
            st.info(f"Checkpoint: {model_label(source)}", icon=":material/model_training:")

        render_model_files()  # a checkpoint from elsewhere, or a COCO weight file copied over by hand

        st.subheader("Device")
        cuda = torch.cuda.is_available()
        st.radio("Run models on", ["auto", "cpu", "cuda"], key=DEVICE_KEY, horizontal=True,
                 on_change=_sync_query_params,
                 help="auto = CUDA when a GPU is present, else CPU.")
        found = f"CUDA: {torch.cuda.get_device_name(0)}" if cuda else "no CUDA GPU found: CPU only"
        device = current_device()
        st.caption(f"{found}. Using **{device.type.upper()}**.")
        if st.session_state[DEVICE_KEY] == "cuda" and not cuda:
            st.warning("CUDA was chosen but no GPU is available: running on CPU.")
