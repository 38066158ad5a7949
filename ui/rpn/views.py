"""The RPN inspector's views, one at a time: Objectness, Proposals, Trace, Recall, RoIAlign,
Detections and Table 1. Each view reads the cached inspection of one image (InspectorState), its own
widgets, and draws its figures (built once for every session, ui.rpn.inspection.shared_figure) with
their captions; boxes are drawn in the original image's pixels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from detector.checkpoints import LoadedModel
from detector.data.records import class_name
from detector.frames import ImageFrame, grid_text
from detector.inspect import FeatureLevel, Inspection, RPNStage, trace_proposal
from detector.models import ARCHITECTURES
from detector.proposals import ProposalFunnel, ProposalSettings, proposal_recall
from detector.viz import rpn as viz
from detector.wording import counted
from ui.inputs import PickedImage
from ui.rpn import explain
from ui.rpn.roi_pooling import render_roi_pooling
from ui.rpn.inspection import detections_frame, paper_table1_frame, shared_figure, table1, table1_frame, table1_sources
from ui.model import current_device

PRE_NMS_DRAWN = 300  # pre-NMS boxes sent to the browser
RECALL_POINTS = 24  # K values on the recall curve


@dataclass(frozen=True)
class InspectorState:
    """What every view reads: the model, the image, its cached stage and inspection for these settings,
    and the box a link asks to highlight (original pixels, or None)."""

    loaded: LoadedModel
    picked: PickedImage
    stage: RPNStage
    result: Inspection
    settings: ProposalSettings
    defaults: ProposalSettings  # the model's own proposal settings
    linked: tuple[float, float, float, float] | None

    @property
    def frame(self) -> ImageFrame:
        return self.result.frames[0]

    @property
    def funnel(self) -> ProposalFunnel:
        return self.result.funnels[0]

    @property
    def gt(self) -> np.ndarray | None:
        """The image's ground-truth boxes (original pixels), None when it has none."""
        return self.picked.boxes if self.picked.has_ground_truth else None

    def figure(self, name: str, params: tuple, build: Callable[[], object]) -> object:
        """The shared figure `name` of this model and image for `params`."""
        return shared_figure(name, self.loaded, self.picked, params, build)


def keep_within(key: str, low: float, high: float) -> None:
    """A view's widget keeps its value while another view is shown; drop it when it no longer fits
    (another image, model or setting changed the widget's range meanwhile)."""
    value = st.session_state.get(key)
    if value is not None and not low <= value <= high:
        del st.session_state[key]


def follow_proposal_click() -> None:
    """A click on a proposal centre (Proposals view) drives the rank widget (its twin) and opens the Trace."""
    selection = st.session_state.get("rpn_post_chart")
    points = (selection or {}).get("selection", {}).get("points", []) if selection else []
    if points and points != st.session_state.get("rpn_last_click"):
        st.session_state["rpn_last_click"] = points
        data = points[0].get("customdata")
        if data is not None:
            st.session_state["rpn_rank"] = int(data[0] if isinstance(data, (list, tuple)) else data)
            st.session_state["view"] = "Trace"


def anchor_shape_text(level: FeatureLevel, a: int) -> str:
    """Anchor shape `a` of a level: its size, ratio (h/w) and W x H in input pixels."""
    r, s = divmod(a, len(level.sizes))
    w, h = (level.cell_anchors[a, 2:] - level.cell_anchors[a, :2]).tolist()
    return f"size {level.sizes[s]}, ratio {level.ratios[r]:g} (h/w): {w:.0f}x{h:.0f}"


def recall_ks(n: int) -> list[int]:
    """The K values (1..n, geometrically spaced) at which proposal recall is drawn."""
    return sorted({int(round(x)) for x in np.geomspace(1, n, num=min(n, RECALL_POINTS))})


def box_crop(image: Image.Image, box: np.ndarray) -> Image.Image:
    """The region of `image` a box [x1, y1, x2, y2] (original pixels) covers, at least one pixel each way."""
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    return image.crop((x1, y1, max(int(np.ceil(box[2])), x1 + 1), max(int(np.ceil(box[3])), y1 + 1)))


def render_view(view: str, s: InspectorState) -> None:
    """Draw one of VIEWS."""
    RENDERERS[view](s)


@st.fragment
def views(state: InspectorState) -> None:
    """One view at a time, kept in the URL (?view=): only its figures are built, sent and drawn. A
    fragment: the view switch, a view's own widgets and a click in its figures rerun this part alone
    (the image, the knobs, the funnel and the timings stay as they are in the browser); a knob reruns
    the page, this part included."""
    # a click on a proposal centre (Proposals view) drives the rank widget (its twin) and opens the Trace
    follow_proposal_click()
    view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="view", bind="query-params",
                                label_visibility="collapsed") or VIEWS[0]
    render_view(view, state)


def _objectness(s: InspectorState) -> None:
    levels, frame = s.stage.levels, s.frame
    c1, c2, c3 = st.columns(3)
    keep_within("rpn_level", 0, len(levels) - 1)
    li = c1.selectbox("FPN level", range(len(levels)), key="rpn_level", persist_state="page",
                      format_func=lambda i: f"{levels[i].name}: {grid_text(levels[i].grid)} cells, "
                                            f"stride {levels[i].stride[0]}")
    level = levels[li]
    keep_within("rpn_shape", -1, level.anchors_per_location - 1)
    shape = c2.selectbox("Anchor shape", [-1] + list(range(level.anchors_per_location)), key="rpn_shape",
                         persist_state="page",
                         format_func=lambda a: "max over shapes" if a < 0 else anchor_shape_text(level, a))
    opacity = c3.slider("Heatmap opacity", 0.0, 1.0, 0.55, 0.05, key="rpn_opacity", persist_state="page")
    prob = s.stage.objectness_prob(0, li).numpy()
    heat = prob.max(axis=0) if shape < 0 else prob[shape]
    st.plotly_chart(s.figure("objectness", (li, shape, opacity), lambda: viz.objectness_figure(
        s.picked.image, heat, level.stride, frame.scale, frame.resized_size, opacity)), key="rpn_heatmap")
    st.caption(f"Objectness p = sigmoid(cls_logits) at FPN level {level.name}: a {grid_text(level.grid)} map "
               "(columns x rows), "
               f"one cell per sliding-window position, stride {level.stride[0]} input pixels "
               f"({level.stride[0] / frame.scale[0]:.1f} pixels of this image); {counted(level.anchors_per_location, 'anchor')} "
               f"per cell. Max over the whole level: {float(prob.max()):.3f}.")


def _proposals(s: InspectorState) -> None:
    post_set, frame, linked = s.funnel.post_nms, s.frame, s.linked
    if len(post_set) == 0:
        st.warning("No proposal survived: lower score_thresh or raise pre_nms_top_n.")
        return
    keep_within("rpn_k", 1, len(post_set))
    k = (st.slider("K: top proposals shown after NMS", 1, len(post_set), min(20, len(post_set)), key="rpn_k",
                   persist_state="page")
         if len(post_set) > 1 else 1)
    pre_set = s.funnel.pre_nms
    pre_order = pre_set.scores.argsort(descending=True)[:PRE_NMS_DRAWN]
    c1, c2 = st.columns(2)
    c1.plotly_chart(s.figure("pre_nms", (s.settings, linked), lambda: viz.proposals_figure(
        s.picked.image, frame.to_original(pre_set.boxes[pre_order]).numpy(), pre_set.scores[pre_order].tolist(),
        style="pre_nms", gt_boxes=s.gt, highlight=linked)), key="rpn_pre_chart")
    c1.caption(f"Before NMS: {counted(len(pre_set), 'proposal')} (the {min(len(pre_set), PRE_NMS_DRAWN)} highest-scoring drawn): "
               "regressed anchors after top-k per level, clipping, small-box removal and score_thresh.")
    c2.plotly_chart(s.figure("post_nms", (s.settings, k, linked), lambda: viz.proposals_figure(
        s.picked.image, frame.to_original(post_set.boxes[:k]).numpy(), post_set.scores[:k].tolist(), clickable=True,
        gt_boxes=s.gt, highlight=linked)), key="rpn_post_chart", on_select="rerun", selection_mode="points")
    c2.caption(f"After NMS (IoU > {s.settings.nms_thresh:g} suppressed, per level): the top {k} of {len(post_set)} "
               "proposals by objectness. Click a centre to trace it to its anchor (the Trace view opens).")


def _trace(s: InspectorState) -> None:
    post_set = s.funnel.post_nms
    if not len(post_set):
        st.info("No proposals to trace.")
        return
    if st.session_state.get("rpn_rank", 0) >= len(post_set):
        st.session_state["rpn_rank"] = 0
    rank = int(st.number_input("Proposal rank (0 = highest objectness)", 0, len(post_set) - 1, key="rpn_rank",
                               persist_state="page"))
    tr = trace_proposal(s.result, 0, rank)
    loc = tr.location
    to_orig = s.frame.to_original
    st.plotly_chart(s.figure("trace", (s.settings, rank), lambda: viz.trace_figure(
        s.picked.image, to_orig(tr.anchor).numpy()[0], to_orig(tr.regressed).numpy()[0], to_orig(tr.proposal).numpy()[0],
        anchor_label=f"anchor {loc.size}, {loc.ratio:g}")), key="rpn_trace")
    st.caption(f"Proposal {rank} (objectness {tr.score:.3f}) comes from the anchor at FPN level {tr.level_name}, "
               f"cell (row {loc.row}, column {loc.column}), shape {loc.shape}: size {loc.size}, ratio {loc.ratio:g} (h/w); "
               "the RPN's regression (t_x, t_y, t_w, t_h) moved it to the magenta box. Boxes in this image's pixels.")


def _recall(s: InspectorState) -> None:
    gt, after_nms = s.gt, s.funnel.after_nms
    if gt is None or len(gt) == 0:
        st.info(f"Recall needs ground truth to compare with: {s.picked.no_boxes_note}")
        return
    if len(after_nms) == 0:
        st.warning("No proposals.")
        return
    n = len(after_nms)
    ks = recall_ks(n)
    recalls = proposal_recall(after_nms.boxes, s.frame.to_input(gt), ks)
    st.plotly_chart(s.figure("recall", (s.settings,), lambda: viz.recall_figure(
        ks, recalls, marker_k=min(s.settings.post_nms_top_n, n))), key="rpn_recall")
    st.caption(f"Proposal recall (as the paper's Fig. 4): the share of the {len(gt)} ground-truth boxes that one of "
               "the top K proposals after NMS overlaps with IoU >= 0.5 / 0.7.")


def _roi_align(s: InspectorState) -> None:
    result, post_set = s.result, s.funnel.post_nms
    level_counts = result.roi_level_counts(0)
    c1, c2 = st.columns([1, 2])
    c1.plotly_chart(s.figure("roi_levels", (s.settings,), lambda: viz.level_counts_figure(level_counts)),
                    key="rpn_roi_levels")
    c1.caption("RoIs per FPN level: RoIAlign pools each RoI from level floor(4 + log2(sqrt(wh) / 224)) "
               "(FPN paper eq. 1), clamped to the levels the head uses.")
    if not len(post_set):
        return
    rank = int(st.session_state.get("rpn_rank", 0))
    rank = rank if rank < len(post_set) else 0
    rows = result.rois_of(0)
    pooled = result.pooled[rows[rank]].numpy()
    n_channels = c2.slider("Most active channels shown", 0, 6, 3, key="rpn_channels", persist_state="page")
    top = np.argsort(-pooled.mean(axis=(1, 2)))[:n_channels].tolist()
    crop = box_crop(s.picked.image, s.frame.to_original(post_set.boxes[rank]).numpy()[0])
    c2.plotly_chart(s.figure("pooled", (s.settings, rank, n_channels),
                             lambda: viz.pooled_features_figure(crop, pooled, top)), key="rpn_pooled")
    c2.caption(f"RoIAlign output for proposal {rank} (set in Trace): {pooled.shape[0]} channels x "
               f"{pooled.shape[1]}x{pooled.shape[2]} bins, pooled from FPN level "
               f"{result.roi_featmap_names[int(result.roi_level[rows[rank]])]}; the crop is the region it covers.")
    render_roi_pooling(s, rank)


def _detections(s: InspectorState) -> None:
    floor = float(s.loaded.model.roi_heads.score_thresh)
    keep_within("rpn_det_thresh", floor, 1.0)
    thresh = st.slider("Detection score threshold", floor, 1.0, max(floor, 0.5), 0.01, key="rpn_det_thresh",
                       persist_state="page")
    det = s.result.detections[0].above(thresh)
    names = [class_name(s.loaded.class_names, i) for i in det.labels.tolist()]
    expl = explain.explanation(s)
    k = explain.detection_picker(s, expl)
    st.plotly_chart(s.figure("detections", (s.settings, thresh, s.linked), lambda: viz.detections_figure(
        s.picked.image, det.boxes.numpy(), names, det.scores.tolist(), gt_boxes=s.gt, highlight=s.linked,
        clickable=True)), key=explain.CHART_KEY, on_select="rerun", selection_mode="points")
    st.caption(f"{counted(len(det), 'detection')} with score >= {thresh:.2f}: the Fast R-CNN head's softmax over classes for each "
               "RoI, class-specific box regression, then per-class NMS. Ground truth dashed. Click a box centre to "
               "explain it.")
    if len(det):
        st.dataframe(detections_frame(det, names), hide_index=True)
    if k != explain.NONE:
        explain.render_explanation(s, expl, k)
    elif s.linked:
        explain.render_missed(s, expl, s.linked)


def _table1(s: InspectorState) -> None:
    fast = current_device().type == "cuda" or "fast" in ARCHITECTURES[s.loaded.arch].on_cpu
    source = st.selectbox("Images", table1_sources(), key="rpn_table1_source", persist_state="page")
    if st.toggle("Compute Table 1 for this model", value=fast, key="rpn_table1_on", persist_state="page"):
        with st.spinner("Running the model over the image set ..."):
            rows, n_images = table1(s.loaded, source, s.defaults)
        st.dataframe(table1_frame(rows), hide_index=True)
        st.caption(f"Table 1 of the paper for this model: the average size of the post-NMS proposals regressed from each "
                   f"anchor shape, over {counted(n_images, 'image')}, in input pixels (ratio = h/w; the paper's 2:1 anchor is 0.5). "
                   "The paper's figures are for the ZF net at s = 600, beside matching sizes.")
    else:
        st.caption("Slow on this device: switch on to run the model over the image set.")
    st.dataframe(paper_table1_frame(), hide_index=True)
    st.caption("The paper's Table 1 (Ren et al. 2015): learned average proposal size for each anchor, ZF net, s = 600.")


RENDERERS: dict[str, Callable[[InspectorState], None]] = {
    "Objectness": _objectness, "Proposals": _proposals, "Trace": _trace, "Recall": _recall,
    "RoIAlign": _roi_align, "Detections": _detections, "Table 1": _table1,
}
VIEWS = tuple(RENDERERS)  # in the order the view selector shows them
