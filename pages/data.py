"""Data: add a dataset (zip, folder or synthetic), read its validation report, look at its
statistics and browse its images with their ground-truth boxes."""

import json
import math

import pandas as pd
import streamlit as st

from detector.data import DatasetError, list_datasets
from detector.data.validation import action_kind
from detector.viz.data import (
    aspect_ratio_figure,
    box_size_figure,
    class_balance_figure,
    record_figure,
    size_bucket_figure,
)
from ui.data import (
    allowed_roots,
    content_key,
    decoding_problems,
    register,
    reread_voc,
    statistics,
    store_once,
    store_synthetic,
    stored,
    thumbnail,
    upload_limit_mb,
)
from ui.inputs import default_dataset, remember_dataset
from ui.router import ensure_router

ensure_router()

PER_PAGE = 6
FORMATS = ["auto", "coco", "voc", "yolo"]
VOC_COORDINATES = ["auto", "one-based", "zero-based"]

st.title("Data")
st.markdown(
    "Fine-tuning Faster R-CNN needs images with ground-truth boxes. Upload a dataset as COCO, Pascal VOC or "
    "YOLO exports it (CVAT, Label Studio, Roboflow): every image becomes the same record, boxes "
    "`[x1, y1, x2, y2]` in original pixels and labels 1..K (0 is background), checked before anything trains."
)

# ---- add a dataset
new_name = None
with st.container(border=True):
    st.subheader("Add a dataset")
    f1, f2 = st.columns(2)
    fmt = f1.selectbox("Format", FORMATS, key="data_format",
                       help="auto: detected from the files (COCO JSON, then VOC XML, then YOLO labels).")
    voc = f2.selectbox("VOC coordinates", VOC_COORDINATES, key="data_voc_coordinates",
                       help="Pascal VOC only. one-based: the devkit's pixel indices (xmin - 1 is the edge); "
                            "zero-based: edges as written (CVAT, Label Studio). auto decides from the files and "
                            "the report says why.")
    tab_zip, tab_folder, tab_path, tab_synth = st.tabs(["Zip archive", "Folder", "Path on this machine", "Synthetic"])
    with tab_zip:
        upload = st.file_uploader("Dataset archive (.zip)", type=["zip"], key="data_zip",
                                  help="Checked member by member before anything is unpacked; kept as uploaded.")
        st.caption(f"A browser upload is held in the server's memory while it arrives: up to {upload_limit_mb():,} MB "
                   "here. A dataset bigger than that: put it on the machine the app runs on and register it by "
                   "path (tab *Path on this machine*), no upload and no copy.")
        if upload is not None:
            data = upload.getvalue()
            new_name, error = store_once(content_key(data, fmt), upload.name, data, fmt, voc)
            if error:
                st.error(error, icon=":material/block:")
    with tab_folder:
        files = st.file_uploader("Dataset folder", accept_multiple_files="directory", key="data_folder",
                                 help="Pick the export's top folder; sub-folders are kept.")
        if files:
            mapping = {f.name: f.getvalue() for f in files}
            folder_hint = files[0].name.split("/")[0] if "/" in files[0].name else "folder-upload"
            key = content_key(*sorted(mapping), *(mapping[k] for k in sorted(mapping)), fmt)
            new_name, error = store_once(key, folder_hint, mapping, fmt, voc)
            if error:
                st.error(error, icon=":material/block:")
    with tab_path:
        path_text = st.text_input("Folder or zip on the machine the app runs on", key="data_path",
                                  placeholder="/data/exports/my_dataset", help="Read where it is, never copied "
                                  "(a zip is unpacked once into the workspace). A relative path starts at the workspace.")
        if st.button("Register", key="data_register"):
            new_name, error = register(path_text, fmt, voc)
            if error:
                st.error(error, icon=":material/block:")
        st.caption("Allowed folders (the workspace, and those in `DETECTOR_DATA_ROOTS`): "
                   + ", ".join(f"`{r}`" for r in allowed_roots()))
    with tab_synth:
        c1, c2, c3 = st.columns(3)
        n_images = c1.number_input("Images", 4, 2000, 60, key="data_synth_images")
        seed = c2.number_input("Seed", 0, 10_000, 0, key="data_synth_seed")
        synth_fmt = c3.selectbox("Written as", FORMATS[1:], key="data_synth_format")
        if st.button("Create synthetic dataset", key="data_synth"):
            new_name, error = store_synthetic(int(n_images), int(seed), synth_fmt)
            if error:
                st.error(error)
        st.caption("Circles, rectangles and triangles of varied sizes and aspect ratios with exact boxes; "
                   "some images are empty (negatives). Deterministic by seed.")

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
                    format_func=lambda n: f"{n} ({by_name[n].format}, {by_name[n].images} images)")
st.query_params["dataset"] = name
remember_dataset(name)
try:
    sd = stored(name)
except DatasetError as exc:  # a registration whose folder is no longer allowed, or gone
    st.error(str(exc), icon=":material/block:")
    st.stop()
ds = sd.dataset
stats, problems_of = statistics(name)
report = ds.report()

# ---- report
st.header("Validation report")
m = st.columns(6)
m[0].metric("Format", ds.format.upper())
m[1].metric("Images", report["images"])
m[2].metric("Boxes", report["boxes"])
m[3].metric("Empty images", report["empty_images"], help="Kept as negatives: they teach the background class.")
m[4].metric("Classes", len(ds.class_names))
m[5].metric("Problems", len(ds.problems))
if report["usable"]:
    st.success(f"Usable for training. Split: {len(sd.train_indices)} train / {len(sd.val_indices)} validation images.",
               icon=":material/check_circle:")
else:
    st.error("Not usable as it is: fix the errors listed below.", icon=":material/error:")
st.caption("Classes in label order (label id = position, 0 is background): "
           + ", ".join(f"{i + 1} {n}" for i, n in enumerate(ds.class_names)))
if ds.voc_coordinates:
    convention, why = ds.voc_coordinates
    v1, v2 = st.columns([1, 3])
    chosen = v1.selectbox("Read VOC boxes as", VOC_COORDINATES[1:], index=VOC_COORDINATES[1:].index(convention),
                          key=f"data_voc_read_{name}", help="Parse the files again with this convention.")
    v2.info(f"VOC coordinates: {why}", icon=":material/straighten:")
    if chosen != convention:
        error = reread_voc(name, chosen)
        if error:
            st.error(error)
        else:
            st.rerun()
for note in ds.notes:
    st.info(note, icon=":material/info:")
if ds.ignored_files:
    with st.expander(f"{len(ds.ignored_files)} annotation file(s) read and not used"):
        st.dataframe(pd.DataFrame([f.to_dict() for f in ds.ignored_files]), hide_index=True, width="stretch",
                     key="data_ignored")
problems = pd.DataFrame([p.to_dict() for p in ds.problems], columns=["severity", "file", "line", "id", "message", "action"])
if len(problems):
    f1, f2, f3 = st.columns([1, 1, 2])
    severities = f1.multiselect("Severity", ["error", "warning"], default=["error", "warning"], key="data_severity")
    kinds = sorted({action_kind(p) for p in ds.problems})
    chosen_kinds = f2.multiselect("Action", kinds, default=kinds, key="data_action")
    search = f3.text_input("Search file or message", key="data_search")
    shown = problems[problems["severity"].isin(severities)
                     & problems["action"].map(lambda a: a.split(":")[0].strip()).isin(chosen_kinds)]
    if search:
        text = shown["file"].fillna("") + " " + shown["message"]
        shown = shown[text.str.contains(search, case=False, regex=False)]
    st.dataframe(shown.astype({"line": "Int64"}).astype({"id": "string"}), hide_index=True, width="stretch",
                 height=min(400, 38 + 35 * len(shown)), key="data_problems")
    st.caption(f"{len(shown)} of {len(problems)} problems. Training applies each action exactly as listed and "
               "records it in the run.")
else:
    st.caption("No problems found.")
if st.button("Decode every image", key="data_decode",
             help="Parsing read only image headers. Decoding finds truncated or corrupt pixel data; "
                  "training leaves such images out and records it."):
    st.session_state[f"data_decoded_{name}"] = True
if st.session_state.get(f"data_decoded_{name}"):
    with st.spinner(f"Decoding {len(ds.records)} images ..."):
        late = decoding_problems(name)
    if late:
        st.warning(f"{len(late)} image(s) fail to decode and will be left out of training.")
        st.dataframe(pd.DataFrame([p.to_dict() for p in late]).astype({"id": "string"}), hide_index=True,
                     width="stretch")
    else:
        st.success(f"All {len(ds.records)} images decode.", icon=":material/check_circle:")
st.download_button("Report as JSON", json.dumps(report, indent=2), f"{name}-report.json", "application/json",
                   key="data_report_download")

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
st.header("Browse images")
b1, b2 = st.columns(2)
class_filter = b1.multiselect("Images containing", list(ds.class_names), key="data_class_filter",
                              help="Empty: every image.")
kinds_by_record = {i: {action_kind(p) for p in ps} for i, ps in problems_of.items()}
all_kinds = sorted({k for ks in kinds_by_record.values() for k in ks})
problem_filter = b2.selectbox("Problems", ["all images", "images with problems", "empty images (negatives)"] + all_kinds,
                              key="data_problem_filter")
wanted_labels = {ds.class_names.index(c) + 1 for c in class_filter}
indices = []
for i, r in enumerate(ds.records):
    if wanted_labels and not wanted_labels & set(r.labels):
        continue
    if problem_filter == "images with problems" and i not in problems_of:
        continue
    if problem_filter == "empty images (negatives)" and r.boxes:
        continue
    if problem_filter in all_kinds and problem_filter not in kinds_by_record.get(i, ()):
        continue
    indices.append(i)
pages = max(1, math.ceil(len(indices) / PER_PAGE))
page = int(st.number_input(f"Page (1 to {pages})", 1, pages, 1, key="data_page"))
st.caption(f"{len(indices)} image(s) match. Ground-truth boxes in original-image pixels; hover a corner for the "
           "class and size.")
train_set = set(sd.train_indices)
cols = st.columns(2)
for slot, i in enumerate(indices[(page - 1) * PER_PAGE: page * PER_PAGE]):
    r = ds.records[i]
    col = cols[slot % 2]
    image, error, scale = thumbnail(str(ds.root), r.file)
    if error:
        col.error(error)
    else:
        fig = record_figure(image, r.boxes, r.labels, ds.class_names, title=r.file, max_side=480,
                            original_size=(r.width, r.height))
        col.plotly_chart(fig, key=f"data_img_{i}")
    split = "train" if i in train_set else "validation"
    col.caption(f"{r.width}x{r.height} px, {len(r.boxes)} box(es), {split}, id {r.image_id}")
    for p in problems_of.get(i, []):
        col.warning(f"{p.message} → {p.action}", icon=":material/warning:")
