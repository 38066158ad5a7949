"""Streamlit glue for the data page: cached stored datasets, statistics and thumbnails; uploads;
the problem table and the image browser's filter."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from detector.data import DatasetError, StoredDataset, open_dataset, store_upload
from detector.data.records import LoadedDataset, Problem
from detector.data.roots import data_roots
from detector.data.store import register_path, reread
from detector.data.stats import DatasetStatistics, dataset_statistics
from detector.data.validation import action_kind, kind_of_action, problems_by_record
from detector.images import ImageError, load_image
from detector.workspace import datasets_dir, workspace_root


def _stamp(name: str) -> float:
    path = datasets_dir() / name / "dataset.json"
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_resource(show_spinner=False, max_entries=8)
def _open(name: str, stamp: float) -> StoredDataset:
    return open_dataset(name)


def stored(name: str) -> StoredDataset:
    """A stored dataset, parsed once per version of its dataset.json."""
    return _open(name, _stamp(name))


@st.cache_resource(show_spinner=False, max_entries=8)
def _stats(name: str, stamp: float) -> tuple[DatasetStatistics, dict]:
    ds = _open(name, stamp).dataset
    return dataset_statistics(ds), problems_by_record(ds)


def statistics(name: str) -> tuple[DatasetStatistics, dict]:
    """(statistics, record index -> problems) of a stored dataset, cached."""
    return _stats(name, _stamp(name))


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(root: str, file: str, max_side: int = 480) -> tuple[Image.Image | None, str | None, float]:
    """(downsampled image, error, scale) for the browser; boxes stay in original pixels."""
    try:
        image = load_image(Path(root) / file, name=file)
    except ImageError as exc:
        return None, str(exc), 1.0
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    return image, None, scale


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


def reread_voc(name: str, convention: str) -> str | None:
    """Parse a stored VOC dataset again with the coordinate convention forced; the error, if any."""
    try:
        reread(name, voc_coordinates=convention)
    except DatasetError as exc:
        return str(exc)
    return None


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


@st.cache_resource(show_spinner=False, max_entries=8)
def _decoded(name: str, stamp: float) -> list:
    from detector.data.validation import decode_problems

    return decode_problems(_open(name, stamp).dataset)


def decoding_problems(name: str) -> list:
    """Problems found by decoding every image of a stored dataset (slow; cached per version)."""
    return _decoded(name, _stamp(name))


PROBLEM_COLUMNS = ["severity", "file", "line", "id", "message", "action"]


def problems_table(problems: list[Problem]) -> pd.DataFrame:
    """One row per problem, in the columns of the validation report."""
    return pd.DataFrame([p.to_dict() for p in problems], columns=PROBLEM_COLUMNS)


def filter_problems(table: pd.DataFrame, severities: list[str], kinds: list[str], search: str) -> pd.DataFrame:
    """The rows of a problems_table with one of these severities and action kinds whose file or message
    contains search (case-insensitive; empty: all), ready to show."""
    shown = table[table["severity"].isin(severities)
                  & table["action"].map(kind_of_action).isin(kinds)]
    if search:
        text = shown["file"].fillna("") + " " + shown["message"]
        shown = shown[text.str.contains(search, case=False, regex=False)]
    return shown.astype({"line": "Int64"}).astype({"id": "string"})


BROWSE_FILTERS = ["all images", "images with problems", "empty images (negatives)"]


def problem_kinds(problems_of: dict[int, list[Problem]]) -> dict[int, set[str]]:
    """Record index -> the action kinds of its problems."""
    return {i: {action_kind(p) for p in ps} for i, ps in problems_of.items()}


def browse_indices(ds: LoadedDataset, problems_of: dict[int, list[Problem]], classes: list[str],
                   problem_filter: str) -> list[int]:
    """Indices of the records that hold one of these classes (empty: any) and pass the problem filter:
    one of BROWSE_FILTERS or an action kind."""
    kinds_by_record = problem_kinds(problems_of)
    all_kinds = set().union(*kinds_by_record.values())
    wanted_labels = {ds.class_names.index(c) + 1 for c in classes}
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
    return indices
