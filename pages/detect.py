"""Detect: upload images, get boxes, filter them live, compare two models, export the results."""

import math
from functools import partial

import streamlit as st

from detector.detection import coco_results_json, detections_csv
from detector.viz.rpn import detections_figure
from detector.wording import counted
from ui.detect.detections import (
    EXPLAIN_COLUMN, annotated_png, cached_detections, class_filter, decode_uploads, detection_tables, explain_links,
    result_heading,
)
from ui.links import page_url
from ui.inputs import SAMPLE_SEEDS, sample_image
from ui.model_export import render_export
from ui.model import current_device, get_model, model_choices, model_label, selected_source
from ui.router import ensure_router

ensure_router()

PER_PAGE = 6

st.title("Detect")
st.markdown(
    "Upload images and the detector draws what it finds: each box is a region proposal that the second "
    "stage classified and refined (class score after softmax, class-specific box regression, per-class NMS)."
)

uploads = st.file_uploader(
    "Images (JPEG, PNG, WebP, BMP)", type=["jpg", "jpeg", "png", "webp", "bmp"], accept_multiple_files=True,
    key="detect_upload", help="Detection starts as soon as the upload finishes; EXIF orientation is respected.",
)
if uploads:
    files = [(u.name, u.getvalue()) for u in uploads]
    st.caption(f"{counted(len(files), 'uploaded file')}.")
else:
    files = [(f"sample-{s}.png", sample_image(s)[0]) for s in SAMPLE_SEEDS[:4]]
    st.info("No upload yet: showing synthetic sample images (generated offline). Upload your own above.")

samples = {} if uploads else {f"sample-{s}.png": s for s in SAMPLE_SEEDS[:4]}  # only these can be linked
images = decode_uploads(files)
for bad in (im for im in images if im.error):
    st.error(f"{bad.name}: {bad.error}", icon=":material/broken_image:")
good = [im for im in images if im.image is not None]

source = selected_source()
device = current_device()
st.caption(f"Model: **{model_label(source)}** on {device.type.upper()} (change it in the sidebar).")
if not good:
    st.stop()

results = cached_detections(source, device, good)

# ---- filters: applied to cached results, never re-running the model; classes follow the model
c1, c2 = st.columns([1, 2])
threshold = c1.slider("Score threshold", 0.0, 1.0, 0.5, 0.05, key="detect_threshold",
                      help="Keep detections whose class score is at least this.")
chosen = class_filter(c2, get_model(source, device).class_names)
filtered = {d: det.above(threshold, chosen) for d, det in results.items()}
ordered = [filtered[im.digest] for im in good]

links = {im.digest: explain_links(source, samples.get(im.name), results[im.digest], filtered[im.digest]) for im in good}

# ---- tables
table, counts = detection_tables(ordered, [u for im in good for u in links[im.digest]])
t1, t2 = st.columns([3, 1])
t1.subheader(result_heading(len(table), len(good), chosen))
t1.dataframe(table, hide_index=True, width="stretch", height=240, key="detect_table",
             column_config={EXPLAIN_COLUMN: st.column_config.LinkColumn(display_text="explain")})
t2.subheader("Per class")
t2.dataframe(counts, hide_index=True, width="stretch", key="detect_counts")

# ---- exports
e1, e2 = st.columns(2)
e1.download_button("Detections as COCO results JSON", coco_results_json(ordered), "detections_coco.json",
                   "application/json", help="[{image_id, category_id, bbox: [x, y, w, h], score}]: loads in pycocotools.")
e2.download_button("Detections as CSV", detections_csv(ordered), "detections.csv", "text/csv")

with st.expander("Export this model (TorchScript or ONNX)", icon=":material/output:"):
    render_export(source, model_label(source), "detect_export")

# ---- gallery
st.subheader("Gallery")
st.caption("Boxes in original-image pixels; hover a box corner for its class, score and size.")
pages = max(1, math.ceil(len(good) / PER_PAGE))
page = st.number_input(f"Page (1 to {pages})", 1, pages, 1, key="detect_page") if pages > 1 else 1
shown = good[(page - 1) * PER_PAGE: page * PER_PAGE]
cols = st.columns(2)
for k, im in enumerate(shown):
    det = filtered[im.digest]
    with cols[k % 2]:
        fig = detections_figure(im.image, det.boxes, det.label_names, det.scores, max_side=720, height=380,
                                title=f"{im.name}: {counted(len(det), 'detection')}")
        st.plotly_chart(fig, key=f"detect_fig_{im.digest}", config={"displaylogo": False})
        if any(links[im.digest]):
            st.markdown("Explain in /rpn: " + " · ".join(
                f"[{n} {sc:.2f}]({u})" for n, sc, u in zip(det.label_names, det.scores, links[im.digest])))
        elif samples == {}:
            st.caption("An upload lives in this session only: open it on /rpn (Upload) to explain its detections.")
        # drawn and encoded on click only (not on every slider move)
        st.download_button("Annotated PNG", partial(annotated_png, im.image, det), f"{im.name.rsplit('.', 1)[0]}_detections.png",
                           "image/png", key=f"detect_png_{im.digest}")

# ---- compare two models on one image
st.subheader("Compare two models")
st.caption("The same image through two models side by side, e.g. before and after fine-tuning.")
choices = model_choices()
k1, k2, k3 = st.columns([2, 2, 2])
pick = k1.selectbox("Image", [im.name for im in good], key="compare_image")
model_a = k2.selectbox("Model A", choices, index=choices.index(source) if source in choices else 0,
                       format_func=model_label, key="compare_a")
model_b = k3.selectbox("Model B", choices, index=min(1, len(choices) - 1), format_func=model_label, key="compare_b")
if st.toggle("Run the comparison", key="compare_run", help="Runs both models on the chosen image (cached)."):
    target = next(im for im in good if im.name == pick)
    left, right = st.columns(2)
    for col, src in ((left, model_a), (right, model_b)):
        det = cached_detections(src, device, [target])[target.digest].above(threshold, None)
        fig = detections_figure(target.image, det.boxes, det.label_names, det.scores, max_side=720, height=380,
                                title=f"{model_label(src)}: {len(det)}")
        col.plotly_chart(fig, key=f"compare_fig_{src}", config={"displaylogo": False})
        col.markdown(f"[Open {model_label(src)} in the RPN inspector]({page_url('rpn', model=src)})")
