"""'Add a dataset' on the data page: a zip or folder upload, a path on this machine, or a synthetic
set, each stored (or registered) once and checked; the name of the dataset it added, if any."""

from __future__ import annotations

import streamlit as st

from detector.data.loader import FORMATS as DATASET_FORMATS
from detector.data.records import VOC_CONVENTIONS
from ui.data import (
    allowed_roots, content_key, folder_upload_key, register, store_once, store_synthetic, upload_limit_mb,
)

FORMATS = ["auto", *DATASET_FORMATS]
VOC_COORDINATES = ["auto", *VOC_CONVENTIONS]


def add_dataset_form() -> str | None:
    """The 'Add a dataset' box; the stored dataset's name when this run added one (errors are shown)."""
    new_name = None
    with st.container(border=True):
        st.subheader("Add a dataset")
        f1, f2 = st.columns(2)
        fmt = f1.selectbox("Format", FORMATS, key="data_format",
                           help="auto: detected from the files (COCO JSON, then VOC XML, then YOLO labels).")
        voc = f2.selectbox("VOC coordinates", VOC_COORDINATES, key="data_voc_coordinates",
                           help="Pascal VOC only. one-based: the devkit's pixel indices (xmin - 1 is the edge); "
                                "zero-based: edges as written (CVAT, Label Studio, LabelImg). auto decides from the files and "
                                "the report says why.")
        tab_zip, tab_folder, tab_path, tab_synth = st.tabs(["Zip archive", "Folder", "Path on this machine",
                                                            "Synthetic"])
        with tab_zip:
            upload = st.file_uploader("Dataset archive (.zip)", type=["zip"], key="data_zip",
                                      help="Checked member by member before anything is unpacked; kept as uploaded.")
            st.caption(f"A browser upload is held in the server's memory while it arrives: up to "
                       f"{upload_limit_mb():,} MB here. A dataset bigger than that: put it on the machine the app "
                       "runs on and register it by path (tab *Path on this machine*), no upload and no copy.")
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
                key, folder_hint = folder_upload_key(mapping, fmt)
                new_name, error = store_once(key, folder_hint, mapping, fmt, voc)
                if error:
                    st.error(error, icon=":material/block:")
        with tab_path:
            path_text = st.text_input("Folder or zip on the machine the app runs on", key="data_path",
                                      placeholder="/data/exports/my_dataset", help="Read where it is, never copied "
                                      "(a zip is unpacked once into the workspace). A relative path starts at the "
                                      "workspace.")
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
    return new_name
