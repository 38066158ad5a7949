"""Overview: the Faster R-CNN pipeline at a glance, what each page shows, model and device status."""

from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from ui.model import current_device, default_source, model_label, selected_source
from ui.router import PAGES, ensure_router

ensure_router()

ROOT = Path(__file__).resolve().parents[1]

st.title("Faster R-CNN Explorer")
st.markdown(
    "See how **Faster R-CNN** (Ren, He, Girshick and Sun, 2015) finds objects, one stage at a time, on "
    "torchvision's implementation; then fine-tune it on your own data and watch every loss fall."
)

source = selected_source()
default, why = default_source()
col1, col2 = st.columns(2)
col1.markdown(f"**Model in use**  \n{model_label(source)}")
col2.markdown(f"**Device**  \n{current_device().type.upper()}")
if source == default:
    st.caption(f"Why this model: {why}. Change it in the sidebar.")

st.subheader("The pipeline")
st.graphviz_chart(
    """
digraph G {
  rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=11];
  img [label="Image\\nresize + pad\\n(GeneralizedRCNNTransform)"];
  bb [label="Backbone + FPN\\nfeature maps P2..P6\\n(stride 4..64)"];
  anc [label="Anchors\\nk = 3 scales x 3 ratios\\nper location"];
  rpn [label="RPN head\\nobjectness (k per cell)\\n+ box deltas (4k)"];
  prop [label="Proposals\\ntop-k, clip, NMS\\n~1000 RoIs"];
  roi [label="RoIAlign\\n7x7 per RoI\\nfrom its FPN level"];
  head [label="Box head\\nclass scores\\n+ class-specific deltas"];
  det [label="Detections\\nscore threshold\\n+ per-class NMS"];
  img -> bb -> rpn -> prop -> roi -> head -> det; anc -> rpn; bb -> roi;
}
""",
    width="stretch",
)
st.caption(
    "Both stages share the backbone. The RPN is trained with L = L_cls + λ·L_reg over 256 sampled anchors "
    "(loss_objectness, loss_rpn_box_reg); the detection head with the same form over 512 sampled RoIs "
    "(loss_classifier, loss_box_reg)."
)

# What each page shows, by URL path (the pages themselves and their order are ui.router.PAGES).
SUMMARIES = {
    "anchors": "Anchor boxes at every feature-map location of every FPN level: the paper's 9 anchors (3 scales x 3 aspect ratios), torchvision's per-level sizes, or your own; how they match ground truth (IoU >= 0.7 positive, < 0.3 negative) and how well they fit your dataset.",
    "rpn": "Objectness heatmaps per level and per anchor shape, proposals before and after NMS, the funnel from anchors to RoIs, RoIAlign's 7x7 pooled features, and the final detections.",
    "data": "Upload a dataset (COCO, Pascal VOC or YOLO as annotation tools export it): validation report, statistics and a browser of images with their boxes.",
    "train": "Fine-tune on your data in a background process and watch loss_classifier, loss_box_reg, loss_objectness and loss_rpn_box_reg live, with validation mAP.",
    "detect": "Upload images and get detections; compare two models side by side; export COCO JSON, CSV and PNG.",
    "diagnose": "Where a model's mistakes come from: per-class AP and PR curves, the confusion matrix, TIDE error types, the stage that lost each missed box, and a tuner for the post-processing thresholds.",
}
st.subheader("What each page shows")
for page in PAGES:
    if page.url and (ROOT / page.file).is_file():
        with st.container(border=True):
            try:
                st.page_link(page.file, label=f"**{page.title}**", icon=":material/arrow_forward:")
            except StreamlitAPIException:  # run on its own (no router): a plain link
                st.markdown(f"**[{page.title}]({page.url})**")
            st.markdown(SUMMARIES.get(page.url, ""))
