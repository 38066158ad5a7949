"""'Add a dataset' on the data page: a zip or folder upload, a path on this machine, or a synthetic
set, each stored (or registered) once and checked; the name of the dataset it added, if any."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from detector.data import DatasetError, store_upload
from detector.data.loader import FORMATS as DATASET_FORMATS
from detector.data.records import VOC_CONVENTIONS
from detector.data.roots import data_roots
from detector.data.store import register_path
from detector.workspace import workspace_root

FORMATS = ["auto", *DATASET_FORMATS]
VOC_COORDINATES = ["auto", *VOC_CONVENTIONS]


def store_once(key: str, name_hint: str, data, format: str, voc_coordinates: str = "auto"
               ) -> tuple[str | None, str | None]:
    """Store an upload once per (content, format, VOC convention) in this session: (dataset name, error)."""
    done = st.session_state.setdefault("_data_stored", {})
    key = f"{key}-{voc_coordinates}"
    if key in done:
        return done[key]
    with st.spinner(f"Checking and storing {name_hint} ..."):
        try:
            result = (store_upload(name_hint, data, format=format, voc_coordinates=voc_coordinates).name, None)
        except DatasetError as exc:
            result = (None, str(exc))
    done[key] = result
    return result


def register(path_text: str, format: str, voc_coordinates: str = "auto") -> tuple[str | None, str | None]:
    """Register a folder or zip on this machine by path (no copy): (dataset name, error message)."""
    with st.spinner("Checking and registering the dataset ..."):
        try:
            return register_path(path_text, format=format, voc_coordinates=voc_coordinates).name, None
        except DatasetError as exc:
            return None, str(exc)


def upload_limit_mb() -> int:
    """The browser upload limit in MB, as Streamlit's config sets it (server.maxUploadSize)."""
    return int(st.get_option("server.maxUploadSize"))


def allowed_roots() -> list[str]:
    """The folders a dataset may be registered from (the workspace first), as shown to the user."""
    return [str(r) for r in data_roots()]


def content_key(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for p in parts:
        digest.update(p if isinstance(p, bytes) else p.encode())
    return digest.hexdigest()[:16]


def folder_upload_key(mapping: dict[str, bytes], format: str) -> tuple[str, str]:
    """(content key, name hint) of a folder upload (file name -> bytes): the hint is its top folder."""
    first = next(iter(mapping))
    hint = first.split("/")[0] if "/" in first else "folder-upload"
    return content_key(*sorted(mapping), *(mapping[k] for k in sorted(mapping)), format), hint


def store_synthetic(images: int, seed: int, format: str) -> tuple[str | None, str | None]:
    """Write a synthetic dataset in the workspace and store it (once per settings in this session)."""
    from detector.data.synthetic import write_synthetic

    key = f"synth-{images}-{seed}-{format}"
    done = st.session_state.setdefault("_data_stored", {})
    if key in done:
        return done[key]
    with st.spinner(f"Drawing {images} synthetic images ..."):
        with tempfile.TemporaryDirectory(dir=workspace_root()) as tmp:
            folder = write_synthetic(Path(tmp) / f"synthetic-{format}-seed{seed}", images=images, seed=seed,
                                     format=format)
            try:
                result = (store_upload(folder.name, folder).name, None)
            except DatasetError as exc:
                result = (None, str(exc))
    done[key] = result
    return result


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
