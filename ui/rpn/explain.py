"""The explanation panel of /rpn's Detections view: one detection's chain anchor -> proposal -> RoI ->
detection, the box head's class distribution, both regressions, what its NMS suppressed and where the
model looked (detector.explain, detector.saliency); for a linked box no detection found, the nearest
candidate at each stage. The detection is picked by a click on its centre or by the picker (its
twin), and kept in the URL as `det=K` (ui.links' contract). Boxes in original-image pixels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st
import torch
from torchvision.ops import box_iou

from detector.explain import (
    DetectionExplanation, ImageExplanation, MissedBox, explain_image, nearest_candidates,
)
from detector.saliency import METHODS, SaliencyMap, eigen_map, gradient_map
from detector.viz import explain as viz
from ui.compute import forward_slot, gated
from ui.links import box_from_param, int_from_param
from ui.model import loaded_model_key

if TYPE_CHECKING:
    from ui.rpn.views import InspectorState

DET_KEY, DET_PARAM, NONE = "rpn_det", "det", -1
CHART_KEY = "rpn_detections"  # the Detections view's figure: its click selects a detection


@st.cache_resource(max_entries=16, ttl=3600, show_spinner=False)
def _explained(key: str, digest: str, settings, _loaded, _result) -> ImageExplanation:
    return explain_image(_loaded.model, _result, 0, _loaded.class_names)


def explanation(s: InspectorState) -> ImageExplanation:
    """Every detection of the image explained, for these proposal settings (cached for every session)."""
    key = loaded_model_key(s.loaded)
    return gated(("explain", key, s.picked.digest, s.settings), "Explaining the detections",
                 lambda: _explained(key, s.picked.digest, s.settings, s.loaded, s.result))


@st.cache_resource(max_entries=32, ttl=3600, show_spinner=False)
def _saliency(key: str, digest: str, settings, index: int, method: str, _loaded, _result, _det) -> SaliencyMap:
    with forward_slot():
        if method == "gradient":
            return gradient_map(_loaded.model, _result, _det)
        return eigen_map(_result, _det.roi.level)


def saliency(s: InspectorState, det: DetectionExplanation, method: str) -> SaliencyMap:
    key = loaded_model_key(s.loaded)
    return gated(("saliency", key, s.picked.digest, s.settings, det.index, method), "Saliency map",
                 lambda: _saliency(key, s.picked.digest, s.settings, det.index, method, s.loaded, s.result, det))


def follow_detection_click() -> None:
    """A click on a detection's centre drives the picker (its twin)."""
    selection = st.session_state.get(CHART_KEY)
    points = (selection or {}).get("selection", {}).get("points", []) if selection else []
    if points and points != st.session_state.get("_rpn_det_click"):
        st.session_state["_rpn_det_click"] = points
        data = points[0].get("customdata")
        if data is not None:
            st.session_state[DET_KEY] = int(data[0] if isinstance(data, (list, tuple)) else data)


def _linked_detection(expl: ImageExplanation, raw: str, box: tuple[float, ...] | None) -> int | None:
    """The detection `det=raw` names; with `box=`, the detection nearest that box when detection K is
    not it (another page may have run the image in a batch, which can reorder near-equal scores)."""
    k = int_from_param(raw, len(expl.detections))
    if box is None or not expl.detections:
        return k
    iou = box_iou(_boxes(box), expl.decisions.boxes)[0]
    if k is not None and float(iou[k]) >= 0.9:
        return k
    best = int(iou.argmax())
    return best if float(iou[best]) >= 0.5 else k


def _boxes(boxes) -> torch.Tensor:
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


def detection_picker(s: InspectorState, expl: ImageExplanation) -> int:
    """The picker (the click's twin), set once per distinct URL by `det=K`; kept in the URL. NONE or K."""
    count = len(expl.detections)
    if st.session_state.get("_rpn_det_image") not in (None, s.picked.digest):
        st.query_params.pop(DET_PARAM, None)  # a det= belongs to the image it came with
        st.session_state[DET_KEY] = NONE
    st.session_state["_rpn_det_image"] = s.picked.digest
    raw = st.query_params.get(DET_PARAM)
    marker = (raw, st.query_params.get("box"), s.picked.digest)
    if raw is not None and st.session_state.get("_rpn_det_url") != marker:
        st.session_state["_rpn_det_url"] = marker
        k = _linked_detection(expl, raw, box_from_param(st.query_params.get("box")))
        if k is None:
            st.warning(f"The link's det= names no detection of this image (it has {count}, numbered 0 to "
                       f"{count - 1}): pick one below.")
        st.session_state[DET_KEY] = NONE if k is None else k
    follow_detection_click()
    if st.session_state.get(DET_KEY, NONE) not in range(-1, count):
        st.session_state[DET_KEY] = NONE
    names = {d.index: f"{d.index}: {d.label_name} {d.score:.3f}" for d in expl.detections}
    k = st.selectbox("Explain detection (or click a box centre)", [NONE, *range(count)], key=DET_KEY,
                     format_func=lambda i: "none" if i == NONE else names[i],
                     help="Detections in the model's output order (highest score first).")
    if k == NONE:
        st.query_params.pop(DET_PARAM, None)
    else:
        st.query_params[DET_PARAM] = str(k)
        st.session_state["_rpn_det_url"] = (str(k), st.query_params.get("box"), s.picked.digest)
    return int(k)


def _b(box) -> str:
    return "[" + ", ".join(f"{float(v):.1f}" for v in np.asarray(box).reshape(4)) + "]"


def _t(values, weights=(1.0, 1.0, 1.0, 1.0)) -> str:
    return "(" + ", ".join(f"{float(v) / w:+.3f}" for v, w in zip(np.asarray(values).reshape(4), weights)) + ")"


def chain_frame(expl: ImageExplanation, det: DetectionExplanation) -> pd.DataFrame:
    """The chain as a table in the paper's terms: stage, box (original pixels), what decided it."""
    a, roi = det.anchor, det.roi
    rows = [
        ("anchor", a.box, f"FPN level {a.level}, cell (row {a.row}, column {a.column}), shape {a.shape}: "
                          f"size {a.size}, ratio {a.ratio:g} (h/w)"),
        ("proposal (before clipping)", a.regressed, f"anchor + the RPN's regression t = {_t(a.rpn_deltas)}"),
        (f"RoI #{roi.index}", roi.box, f"objectness p = {roi.objectness:.3f}, rank {roi.rank} after the RPN's NMS; "
                                       f"RoIAlign from FPN level {roi.level}"),
        (f"detection {det.index}", det.box, f"p({det.label_name}) = {det.score:.4f}; RoI + the box head's "
                                            f"regression t^u = {_t(det.box_deltas, expl.box_coder_weights)}"),
    ]
    return pd.DataFrame([{"stage": n, "box [x1, y1, x2, y2]": _b(b), "how": w} for n, b, w in rows])


def deltas_frame(expl: ImageExplanation, det: DetectionExplanation) -> pd.DataFrame:
    """Both regressions: the paper's t = (t_x, t_y, t_w, t_h), the raw outputs and BoxCoder's weights."""
    out = []
    for name, raw, weights in (("RPN: anchor -> proposal", det.anchor.rpn_deltas, expl.rpn_coder_weights),
                               (f"box head ({det.label_name}): RoI -> detection", det.box_deltas,
                                expl.box_coder_weights)):
        t = np.asarray(raw, dtype=float).reshape(4) / np.asarray(weights)
        out.append({"regression": name, **{k: round(float(v), 4) for k, v in zip(("t_x", "t_y", "t_w", "t_h"), t)},
                    "network output (d)": _t(raw), "BoxCoder weights (d = w t)": str(tuple(weights))})
    return pd.DataFrame(out)


def suppressed_frame(expl: ImageExplanation, det: DetectionExplanation) -> pd.DataFrame:
    return pd.DataFrame([{"from RoI": c.roi, "score": round(c.score, 4), f"IoU with detection {det.index}":
                          round(float(c.iou or 0.0), 3), "box [x1, y1, x2, y2]": _b(c.box)} for c in det.suppressed])


def render_explanation(s: InspectorState, expl: ImageExplanation, k: int) -> None:
    """The panel for detection k."""
    det = expl.detections[k]
    thresh = expl.decisions.nms_thresh
    st.subheader(f"Why detection {k}: {det.label_name} {det.score:.3f}")
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(s.figure("explain_chain", (s.settings, k), lambda: viz.chain_figure(s.picked.image, det)),
                    key="rpn_explain_chain")
    c1.caption(f"The chain of Faster R-CNN for this box: the anchor (orange) the RPN regressed into a proposal "
               f"(its RoI #{det.roi.index}, magenta, once clipped), which the box head classified and regressed for "
               f"class {det.label_name} into the detection (arrows: the two regressions). Dashed: the "
               f"{len(det.suppressed)} {det.label_name} candidates its per-class NMS suppressed (IoU > {thresh:g}).")
    c2.plotly_chart(s.figure("explain_classes", (s.settings, k), lambda: viz.class_distribution_figure(
        expl.class_names, det.class_probs.tolist(), det.class_logits.tolist(), det.label)), key="rpn_explain_classes")
    c2.caption("The box head's softmax over all K + 1 classes for this RoI, background included (Fast R-CNN's "
               f"p = (p_0, ..., p_K)); the score is p of the class: {det.score:.4f}. Logits on hover.")
    # static tables (st.table): the whole text of each cell shows, and they redraw quicker than a grid
    st.table(chain_frame(expl, det), hide_index=True)
    st.table(deltas_frame(expl, det), hide_index=True)
    st.caption("t = (t_x, t_y, t_w, t_h) as in the paper (eq. 2): the centre shift in widths and heights and the log "
               "size ratio; torchvision's BoxCoder decodes d = w t, with w = (1, 1, 1, 1) for the RPN and "
               "(10, 10, 5, 5) for the box head.")
    if det.suppressed:
        st.table(suppressed_frame(expl, det), hide_index=True)
    else:
        st.caption(f"Its NMS suppressed no {det.label_name} candidate.")
    m1, m2 = st.columns([2, 1])
    method = m1.radio("Where the model looked", list(METHODS), format_func=METHODS.get, horizontal=True,
                      key="rpn_saliency_method", persist_state="page")
    opacity = m2.slider("Saliency opacity", 0.0, 1.0, 0.6, 0.05, key="rpn_saliency_opacity", persist_state="page")
    smap = saliency(s, det, method)
    st.plotly_chart(s.figure("explain_saliency", (s.settings, k, method, opacity), lambda: viz.saliency_figure(
        s.picked.image, smap, det, opacity)), key="rpn_explain_saliency")
    st.caption(viz.saliency_caption(smap))


def _linked_label(s: InspectorState, box: tuple[float, ...]) -> int | None:
    """The model's class id of the ground-truth box the link names (matched by name), if it is one."""
    if s.gt is None or not len(s.gt):
        return None
    iou = box_iou(_boxes(box), _boxes(s.gt))[0]
    best = int(iou.argmax())
    if float(iou[best]) < 0.99:
        return None
    name = s.picked.label_names[best]
    return s.loaded.class_names.index(name) + 1 if name in s.loaded.class_names else None


def nearest_frame(missed: MissedBox) -> pd.DataFrame:
    return pd.DataFrame([{"stage": n.stage, "best IoU": round(n.iou, 3), "box [x1, y1, x2, y2]": _b(n.box),
                          "objectness": None if n.objectness is None else round(n.objectness, 3),
                          "index": n.index} for n in missed.nearest])


def render_missed(s: InspectorState, expl: ImageExplanation, box: tuple[float, ...]) -> None:
    """For the linked box (a missed ground-truth box from /diagnose): the nearest candidate at each stage."""
    label = _linked_label(s, box)
    missed = nearest_candidates(s.result, 0, list(box), label, expl.decisions)
    st.subheader("The linked box through each stage")
    st.table(nearest_frame(missed), hide_index=True)
    st.caption("The nearest candidate at each stage: the best anchor by IoU (measured in the model's input frame, "
               "as the RPN's matcher does), the best proposal before and after the RPN's NMS, and the best RoI "
               "(one of the first post_nms_top_n). Where the IoU drops is where the box was lost.")
    if missed.roi is None or missed.class_probs is None:
        return
    c1, c2 = st.columns([2, 3])
    c1.plotly_chart(s.figure("missed_classes", (s.settings, box), lambda: viz.class_distribution_figure(
        expl.class_names, missed.class_probs.tolist(), missed.class_logits.tolist(), label or 0,
        title=f"RoI #{missed.roi}: class distribution")), key="rpn_missed_classes")
    if label is not None:
        fate = expl.fate_text(missed.roi, label)
        c2.markdown(f"The box head gave RoI #{missed.roi} p({expl.class_names[label]}) = "
                    f"{float(missed.class_probs[label]):.4f}; its {expl.class_names[label]} candidate: {fate}.")
    c2.caption("The best RoI's softmax over all classes, background included: if background or another class "
               "wins, the box head lost the object; if its class wins but no detection came out, NMS or the "
               "score threshold did.")
