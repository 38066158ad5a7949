"""The RoIAlign view's comparison with RoI pooling (detector.roi_pooling) for the chosen RoI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from detector.roi_pooling import compare_pooling
from detector.viz import roi_pooling as viz

if TYPE_CHECKING:
    from ui.rpn.views import InspectorState


def render_roi_pooling(s: InspectorState, rank: int) -> None:
    """RoIPool's quantised bins and RoIAlign's sampling points for RoI `rank`, and both pooled features."""
    cmp = compare_pooling(s.loaded.model, s.result, int(s.result.rois_of(0)[rank]))
    frame = s.frame
    st.subheader("RoI pooling beside RoIAlign")
    c1, c2 = st.columns(2)
    c1.plotly_chart(s.figure("roi_pool_bins", (s.settings, rank), lambda: viz.roi_pool_bins_figure(
        s.picked.image, cmp, frame)), key="rpn_roi_pool_bins")
    c2.plotly_chart(s.figure("roi_align_points", (s.settings, rank), lambda: viz.roi_align_points_figure(
        s.picked.image, cmp, frame)), key="rpn_roi_align_points")
    st.plotly_chart(s.figure("roi_pooled_pair", (s.settings, rank), lambda: viz.pooled_pair_figure(cmp)),
                    key="rpn_roi_pooled_pair")
    stride = 1 / cmp.spatial_scale
    (cols, rows), size = cmp.rounded_cells, cmp.pool_bins.shape[0]
    st.caption(
        f"Proposal {rank} on FPN level {cmp.level} (stride {stride:g} input pixels). RoIPool (Fast R-CNN, "
        "torchvision.ops.roi_pool) rounds the RoI to whole feature cells and its bins again, then takes each "
        "bin's maximum; RoIAlign (Mask R-CNN, torchvision.ops.roi_align) averages bilinear samples at the exact "
        f"positions. Here the rounding moves a corner by up to {cmp.corner_shift_input:.1f} input pixels and "
        f"leaves {cols} x {rows} whole cells for {size} x {size} bins, which overlap and repeat cells: on a box only "
        "a few cells wide, half a stride of misalignment is a large share of the box, so RoIPool's feature no "
        "longer lines up with it. Each pooled map has its own colour scale (a maximum runs higher than a mean).")
