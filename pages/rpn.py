"""RPN inspector: what the Region Proposal Network sees in one image, stage by stage."""

import streamlit as st

from detector.frames import size_text
from detector.proposals import FUNNEL_STAGES
from detector.viz import rpn as viz
from ui.inputs import image_input
from ui.rpn.inspection import inspection, rpn_stage, shared_figure, timings_frame
from ui.links import box_from_param
from ui.model import current_device, current_model
from ui.rpn.knobs import proposal_knobs
from ui.router import ensure_router
from ui.rpn.views import InspectorState, views

ensure_router()

st.title("RPN inspector")
st.caption("Faster R-CNN, section 3.1: a small network slides over the feature maps and, at every location, "
           "scores k anchors for objectness and regresses each to a proposal; NMS keeps the best, RoIAlign "
           "pools each into a fixed 7x7 feature, and the Fast R-CNN head classifies it.")

loaded = current_model()
model = loaded.model
st.caption(f"Model: {loaded.description}. Change it in the sidebar.")
picked = image_input("rpn")
if picked is None:
    st.stop()

# ---- knobs: they re-run only the proposal filtering and the RoI heads, never the backbone
defaults, settings = proposal_knobs(loaded)

progress = st.progress(0, text="Backbone and RPN head (once per image) ...")
stage = rpn_stage(loaded, picked)
progress.progress(60, text="Proposal filtering and RoI heads ...")
result = inspection(loaded, picked, settings)
progress.empty()
frame = result.frames[0]
# a link's box= (e.g. a missed object from /diagnose), drawn on this image only
linked = box_from_param(st.query_params.get("box")) if st.query_params.get("image") == picked.name else None
if linked:
    st.info(f"Magenta: the box from the link, [{', '.join(f'{v:.0f}' for v in linked)}]; follow it through the "
            "proposals before and after NMS and the detections.", icon=":material/my_location:")

# ---- funnel and timing
counts = result.counts(0)
left, right = st.columns([3, 2])
labels = {"anchors": "anchors", **{k: k.replace("_", " ") for k, _ in FUNNEL_STAGES}, "rois": "RoIs",
          "detections": f"detections (score > {model.roi_heads.score_thresh:g})"}
left.plotly_chart(shared_figure("funnel", loaded, picked, (settings,), lambda: viz.funnel_figure(counts, labels)),
                  key="rpn_funnel")
left.caption("The proposal funnel: every anchor is scored, the top pre_nms_top_n per level are regressed into "
             "proposals, clipped, filtered, suppressed by NMS; post_nms_top_n become the RoIs of the detection head.")
right.markdown(f"**Frames** (W x H): original {size_text(frame.original_size)}, resized "
               f"{size_text(frame.resized_size)}, padded {size_text(frame.padded_size)}")
right.dataframe(timings_frame(result.timings), hide_index=True)
right.caption(f"Time per stage on {current_device().type.upper()}: the first four when this image was first run "
              "(cached since), the last two on this run.")


views(InspectorState(loaded, picked, stage, result, settings, defaults, linked))
