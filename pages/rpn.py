"""RPN inspector: what the Region Proposal Network sees in one image, stage by stage."""

import numpy as np
import streamlit as st

from detector.data.records import class_name
from detector.frames import grid_text, size_text
from detector.inspect import trace_proposal
from detector.models import ARCHITECTURES
from detector.proposals import FUNNEL_STAGES, ProposalSettings, proposal_recall
from detector.viz import rpn as viz
from ui.inputs import image_input
from ui.inspection import (
    detections_frame, inspection, paper_table1_frame, rpn_stage, shared_figure, table1, table1_frame, table1_sources,
    timings_frame,
)
from ui.links import box_from_param
from ui.model import current_device, current_model
from ui.router import ensure_router

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

def keep_within(key: str, low: float, high: float) -> None:
    """A view's widget keeps its value while another view is shown; drop it when it no longer fits
    (another image, model or setting changed the widget's range meanwhile)."""
    value = st.session_state.get(key)
    if value is not None and not low <= value <= high:
        del st.session_state[key]


# ---- knobs: they re-run only the proposal filtering and the RoI heads, never the backbone
defaults = ProposalSettings.from_rpn(model.rpn)


def reset_knobs() -> None:
    """Back to the model's own settings: new widget keys, so the browser shows the defaults too."""
    st.session_state["rpn_knobs_resets"] = st.session_state.get("rpn_knobs_resets", 0) + 1


# one set of knob widgets per model (and per reset): each starts from that model's own settings
suffix = f"@{loaded.source}#{st.session_state.get('rpn_knobs_resets', 0)}"
with st.expander("RPN settings (re-run only the proposal filtering and the RoI heads)", expanded=True):
    c1, c2, c3, c4, c5 = st.columns([3, 3, 3, 3, 2])
    pre = c1.number_input("pre_nms_top_n (per level)", 1, 5000, defaults.pre_nms_top_n, step=50,
                          key="rpn_pre_nms" + suffix)
    post = c2.number_input("post_nms_top_n", 1, 5000, defaults.post_nms_top_n, step=50, key="rpn_post_nms" + suffix)
    nms = c3.slider("nms_thresh (IoU)", 0.0, 1.0, defaults.nms_thresh, step=0.05, key="rpn_nms" + suffix)
    score = c4.slider("score_thresh (objectness)", 0.0, 1.0, defaults.score_thresh, step=0.01, key="rpn_score" + suffix)
    c5.button("Model's settings", on_click=reset_knobs, key="rpn_reset",
              help=f"pre_nms_top_n {defaults.pre_nms_top_n}, post_nms_top_n {defaults.post_nms_top_n}, "
                   f"nms_thresh {defaults.nms_thresh:g}, score_thresh {defaults.score_thresh:g}")
settings = defaults.with_(pre_nms_top_n=int(pre), post_nms_top_n=int(post), nms_thresh=float(nms),
                          score_thresh=float(score))

progress = st.progress(0, text="Backbone and RPN head (once per image) ...")
stage = rpn_stage(loaded, picked)
progress.progress(60, text="Proposal filtering and RoI heads ...")
result = inspection(loaded, picked, settings)
progress.empty()
frame, funnel = result.frames[0], result.funnels[0]
post_set = funnel.post_nms
gt = picked.boxes if picked.has_ground_truth else None
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

# a click on a proposal centre (Proposals view) drives the rank widget (its twin) and opens the Trace
selection = st.session_state.get("rpn_post_chart")
points = (selection or {}).get("selection", {}).get("points", []) if selection else []
if points and points != st.session_state.get("rpn_last_click"):
    st.session_state["rpn_last_click"] = points
    data = points[0].get("customdata")
    if data is not None:
        st.session_state["rpn_rank"] = int(data[0] if isinstance(data, (list, tuple)) else data)
        st.session_state["view"] = "Trace"

# one view at a time, kept in the URL (?view=): only its figures are built, sent and drawn
VIEWS = ("Objectness", "Proposals", "Trace", "Recall", "RoIAlign", "Detections", "Table 1")
view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="view", bind="query-params",
                            label_visibility="collapsed") or VIEWS[0]
levels = stage.levels

# ---- objectness heatmaps
if view == "Objectness":
    c1, c2, c3 = st.columns(3)
    keep_within("rpn_level", 0, len(levels) - 1)
    li = c1.selectbox("FPN level", range(len(levels)), key="rpn_level", persist_state="page",
                      format_func=lambda i: f"{levels[i].name}: {grid_text(levels[i].grid)} cells, "
                                            f"stride {levels[i].stride[0]}")
    level = levels[li]

    def shape_name(a: int) -> str:
        r, s = divmod(a, len(level.sizes))
        w, h = (level.cell_anchors[a, 2:] - level.cell_anchors[a, :2]).tolist()
        return f"size {level.sizes[s]}, ratio {level.ratios[r]:g} (h/w): {w:.0f}x{h:.0f}"

    keep_within("rpn_shape", -1, level.anchors_per_location - 1)
    shape = c2.selectbox("Anchor shape", [-1] + list(range(level.anchors_per_location)), key="rpn_shape",
                         persist_state="page",
                         format_func=lambda a: "max over shapes" if a < 0 else shape_name(a))
    opacity = c3.slider("Heatmap opacity", 0.0, 1.0, 0.55, 0.05, key="rpn_opacity", persist_state="page")
    prob = stage.objectness_prob(0, li).numpy()
    heat = prob.max(axis=0) if shape < 0 else prob[shape]
    st.plotly_chart(shared_figure("objectness", loaded, picked, (li, shape, opacity), lambda: viz.objectness_figure(
        picked.image, heat, level.stride, frame.scale, frame.resized_size, opacity)), key="rpn_heatmap")
    st.caption(f"Objectness p = sigmoid(cls_logits) at FPN level {level.name}: a {grid_text(level.grid)} map "
               "(columns x rows), "
               f"one cell per sliding-window position, stride {level.stride[0]} input pixels "
               f"({level.stride[0] / frame.scale[0]:.1f} pixels of this image); {level.anchors_per_location} anchors "
               f"per cell. Max over the whole level: {float(prob.max()):.3f}.")

# ---- proposals before and after NMS
if view == "Proposals":
    if len(post_set) == 0:
        st.warning("No proposal survived: lower score_thresh or raise pre_nms_top_n.")
    else:
        keep_within("rpn_k", 1, len(post_set))
        k = (st.slider("K: top proposals shown after NMS", 1, len(post_set), min(20, len(post_set)), key="rpn_k",
                       persist_state="page")
             if len(post_set) > 1 else 1)
        pre_set = funnel.pre_nms
        viz_limit = 300  # boxes sent to the browser
        pre_order = pre_set.scores.argsort(descending=True)[:viz_limit]
        c1, c2 = st.columns(2)
        c1.plotly_chart(shared_figure("pre_nms", loaded, picked, (settings, linked), lambda: viz.proposals_figure(
            picked.image, frame.to_original(pre_set.boxes[pre_order]).numpy(), pre_set.scores[pre_order].tolist(),
            style="pre_nms", gt_boxes=gt, highlight=linked)), key="rpn_pre_chart")
        c1.caption(f"Before NMS: {len(pre_set)} proposals (the {min(len(pre_set), viz_limit)} highest-scoring drawn): "
                   "regressed anchors after top-k per level, clipping, small-box removal and score_thresh.")
        c2.plotly_chart(shared_figure("post_nms", loaded, picked, (settings, k, linked), lambda: viz.proposals_figure(
            picked.image, frame.to_original(post_set.boxes[:k]).numpy(), post_set.scores[:k].tolist(), clickable=True,
            gt_boxes=gt, highlight=linked)), key="rpn_post_chart", on_select="rerun", selection_mode="points")
        c2.caption(f"After NMS (IoU > {settings.nms_thresh:g} suppressed, per level): the top {k} of {len(post_set)} "
                   "proposals by objectness. Click a centre to trace it to its anchor (the Trace view opens).")

# ---- trace a proposal to its anchor
if view == "Trace":
    if len(post_set):
        if st.session_state.get("rpn_rank", 0) >= len(post_set):
            st.session_state["rpn_rank"] = 0
        rank = int(st.number_input("Proposal rank (0 = highest objectness)", 0, len(post_set) - 1, key="rpn_rank",
                                   persist_state="page"))
        tr = trace_proposal(result, 0, rank)
        loc = tr.location
        to_orig = frame.to_original
        st.plotly_chart(shared_figure("trace", loaded, picked, (settings, rank), lambda: viz.trace_figure(
            picked.image, to_orig(tr.anchor).numpy()[0], to_orig(tr.regressed).numpy()[0], to_orig(tr.proposal).numpy()[0],
            anchor_label=f"anchor {loc.size}, {loc.ratio:g}")), key="rpn_trace")
        st.caption(f"Proposal {rank} (objectness {tr.score:.3f}) comes from the anchor at FPN level {tr.level_name}, "
                   f"cell (row {loc.y}, column {loc.x}), shape {loc.a}: size {loc.size}, ratio {loc.ratio:g} (h/w); "
                   "the RPN's regression (t_x, t_y, t_w, t_h) moved it to the magenta box. Boxes in this image's pixels.")
    else:
        st.info("No proposals to trace.")

# ---- recall against ground truth
if view == "Recall":
    if gt is None or len(gt) == 0:
        st.info(f"Recall needs ground truth to compare with: {picked.no_boxes_note}")
    elif len(funnel.after_nms) == 0:
        st.warning("No proposals.")
    else:
        n = len(funnel.after_nms)
        ks = sorted({int(round(x)) for x in np.geomspace(1, n, num=min(n, 24))})
        recalls = proposal_recall(funnel.after_nms.boxes, frame.to_input(gt), ks)
        st.plotly_chart(shared_figure("recall", loaded, picked, (settings,), lambda: viz.recall_figure(
            ks, recalls, marker_k=min(settings.post_nms_top_n, n))), key="rpn_recall")
        st.caption(f"Proposal recall (as the paper's Fig. 4): the share of the {len(gt)} ground-truth boxes that one of "
                   "the top K proposals after NMS overlaps with IoU >= 0.5 / 0.7.")

# ---- RoIAlign
if view == "RoIAlign":
    level_counts = result.roi_level_counts(0)
    c1, c2 = st.columns([1, 2])
    c1.plotly_chart(shared_figure("roi_levels", loaded, picked, (settings,),
                                  lambda: viz.level_counts_figure(level_counts)), key="rpn_roi_levels")
    c1.caption("RoIs per FPN level: RoIAlign pools each RoI from level floor(4 + log2(sqrt(wh) / 224)) "
               "(FPN paper eq. 1), clamped to the levels the head uses.")
    if len(post_set):
        rank = int(st.session_state.get("rpn_rank", 0))
        rank = rank if rank < len(post_set) else 0
        rows = result.rois_of(0)
        pooled = result.pooled[rows[rank]].numpy()
        n_channels = c2.slider("Most active channels shown", 0, 6, 3, key="rpn_channels", persist_state="page")
        top = np.argsort(-pooled.mean(axis=(1, 2)))[:n_channels].tolist()
        box = frame.to_original(post_set.boxes[rank]).numpy()[0]
        x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
        crop = picked.image.crop((x1, y1, max(int(np.ceil(box[2])), x1 + 1), max(int(np.ceil(box[3])), y1 + 1)))
        c2.plotly_chart(shared_figure("pooled", loaded, picked, (settings, rank, n_channels),
                                      lambda: viz.pooled_features_figure(crop, pooled, top)), key="rpn_pooled")
        c2.caption(f"RoIAlign output for proposal {rank} (set in Trace): {pooled.shape[0]} channels x "
                   f"{pooled.shape[1]}x{pooled.shape[2]} bins, pooled from FPN level "
                   f"{result.roi_featmap_names[int(result.roi_level[rows[rank]])]}; the crop is the region it covers.")

# ---- detections
if view == "Detections":
    floor = float(model.roi_heads.score_thresh)
    keep_within("rpn_det_thresh", floor, 1.0)
    thresh = st.slider("Detection score threshold", floor, 1.0, max(floor, 0.5), 0.01, key="rpn_det_thresh",
                       persist_state="page")
    det = result.detections[0].above(thresh)
    names = [class_name(loaded.class_names, i) for i in det.labels.tolist()]
    st.plotly_chart(shared_figure("detections", loaded, picked, (settings, thresh, linked), lambda: viz.detections_figure(
        picked.image, det.boxes.numpy(), names, det.scores.tolist(), gt_boxes=gt, highlight=linked)),
        key="rpn_detections")
    st.caption(f"{len(det)} detections with score >= {thresh:.2f}: the Fast R-CNN head's softmax over classes for each "
               "RoI, class-specific box regression, then per-class NMS. Ground truth dashed.")
    if len(det):
        st.dataframe(detections_frame(det, names), hide_index=True)

# ---- the paper's Table 1 for this model
if view == "Table 1":
    fast = current_device().type == "cuda" or "fast" in ARCHITECTURES[loaded.arch].on_cpu
    source = st.selectbox("Images", table1_sources(), key="rpn_table1_source", persist_state="page")
    if st.toggle("Compute Table 1 for this model", value=fast, key="rpn_table1_on", persist_state="page"):
        with st.spinner("Running the model over the image set ..."):
            rows, n_images = table1(loaded, source, defaults)
        st.dataframe(table1_frame(rows), hide_index=True)
        st.caption(f"Table 1 of the paper for this model: the average size of the post-NMS proposals regressed from each "
                   f"anchor shape, over {n_images} images, in input pixels (ratio = h/w; the paper's 2:1 anchor is 0.5). "
                   "The paper's figures are for the ZF net at s = 600, beside matching sizes.")
    else:
        st.caption("Slow on this device: switch on to run the model over the image set.")
    st.dataframe(paper_table1_frame(), hide_index=True)
    st.caption("The paper's Table 1 (Ren et al. 2015): learned average proposal size for each anchor, ZF net, s = 600.")
