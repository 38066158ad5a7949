"""The RPN inspector's proposal knobs: pre/post_nms_top_n, nms_thresh and score_thresh, one set of
widgets per model (each starts from that model's own settings) with a reset to them. They re-run
only the proposal filtering and the RoI heads, never the backbone."""

from __future__ import annotations

import streamlit as st

from detector.checkpoints import LoadedModel
from detector.proposals import ProposalSettings

RESETS_KEY = "rpn_knobs_resets"


def reset_knobs() -> None:
    """Back to the model's own settings: new widget keys, so the browser shows the defaults too."""
    st.session_state[RESETS_KEY] = st.session_state.get(RESETS_KEY, 0) + 1


def proposal_knobs(loaded: LoadedModel) -> tuple[ProposalSettings, ProposalSettings]:
    """(the model's own settings, the settings the knobs ask for), from the knobs' expander."""
    defaults = ProposalSettings.from_rpn(loaded.model.rpn)
    suffix = f"@{loaded.source}#{st.session_state.get(RESETS_KEY, 0)}"
    with st.expander("RPN settings (re-run only the proposal filtering and the RoI heads)", expanded=True):
        c1, c2, c3, c4, c5 = st.columns([3, 3, 3, 3, 2])
        pre = c1.number_input("pre_nms_top_n (per level)", 1, 5000, defaults.pre_nms_top_n, step=50,
                              key="rpn_pre_nms" + suffix)
        post = c2.number_input("post_nms_top_n", 1, 5000, defaults.post_nms_top_n, step=50,
                               key="rpn_post_nms" + suffix)
        nms = c3.slider("nms_thresh (IoU)", 0.0, 1.0, defaults.nms_thresh, step=0.05, key="rpn_nms" + suffix)
        score = c4.slider("score_thresh (objectness)", 0.0, 1.0, defaults.score_thresh, step=0.01,
                          key="rpn_score" + suffix)
        c5.button("Model's settings", on_click=reset_knobs, key="rpn_reset",
                  help=f"pre_nms_top_n {defaults.pre_nms_top_n}, post_nms_top_n {defaults.post_nms_top_n}, "
                       f"nms_thresh {defaults.nms_thresh:g}, score_thresh {defaults.score_thresh:g}")
    settings = defaults.with_(pre_nms_top_n=int(pre), post_nms_top_n=int(post), nms_thresh=float(nms),
                              score_thresh=float(score))
    return defaults, settings
