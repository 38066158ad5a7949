"""Data: add a dataset (zip, folder or synthetic), read its validation report, look at its
statistics and browse its images with their ground-truth boxes."""

import streamlit as st

from detector.data import DatasetError, list_datasets
from detector.viz.data import aspect_ratio_figure, box_size_figure, class_balance_figure, size_bucket_figure
from detector.wording import counted
from ui.data.browser import render_browser
from ui.data.intake import add_dataset_form
from ui.data.report import render_report
from ui.data.stored import statistics, stored
from ui.inputs import default_dataset, remember_dataset
from ui.router import ensure_router

ensure_router()

st.title("Data")
st.markdown(
    "Fine-tuning Faster R-CNN needs images with ground-truth boxes. Upload a dataset as COCO, Pascal VOC or "
    "YOLO exports it (CVAT, Label Studio, Roboflow): every image becomes the same record, boxes "
    "`[x1, y1, x2, y2]` in original pixels and labels 1..K (0 is background), checked before anything trains."
)

# ---- add a dataset
new_name = add_dataset_form()

# ---- pick a stored dataset (kept in the URL, so a refresh or a shared link lands here)
infos = list_datasets()
if not infos:
    st.info("No stored dataset yet: upload a zip or a folder above, or create a synthetic one.")
    st.stop()
names = [i.name for i in infos]
if new_name and new_name in names:
    st.session_state["data_dataset"] = new_name
elif st.session_state.get("data_dataset") not in names:
    st.session_state["data_dataset"] = default_dataset(names)
by_name = {i.name: i for i in infos}
name = st.selectbox("Stored dataset", names, key="data_dataset",
                    format_func=lambda n: f"{n} ({by_name[n].format}, {counted(by_name[n].images, 'image')})")
st.query_params["dataset"] = name
remember_dataset(name)
try:
    sd = stored(name)
except DatasetError as exc:  # a registration whose folder is no longer allowed, or gone
    st.error(str(exc), icon=":material/block:")
    st.stop()
stats, problems_of = statistics(name)

# ---- report
render_report(name, sd)

# ---- statistics
st.header("Statistics")
c1, c2 = st.columns(2)
c1.plotly_chart(class_balance_figure(stats), key="data_fig_classes")
c1.caption("Boxes per class: the classifier head learns K+1 scores (background included); rare classes get few "
           "positive RoIs.")
c2.plotly_chart(size_bucket_figure(stats), key="data_fig_buckets")
c2.caption("COCO's small/medium/large split by box area; small objects are where the RPN's anchors matter most.")
c3, c4 = st.columns(2)
c3.plotly_chart(box_size_figure(stats), key="data_fig_sizes")
c3.caption("Box width vs height in original pixels: compare with the anchor sizes (after the transform's resize).")
c4.plotly_chart(aspect_ratio_figure(stats), key="data_fig_ratios")
c4.caption("Aspect ratios (height / width): Faster R-CNN's anchors use 0.5, 1 and 2 at every location.")

# ---- browser
render_browser(sd, problems_of)
