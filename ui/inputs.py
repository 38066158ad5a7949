"""Shared input widgets: pick an image (sample, upload, or a stored dataset's image with its boxes)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import streamlit as st
from PIL import Image

from detector import scenes
from detector.data.records import class_name
from detector.images import ImageError, load_image
from detector.wording import counted

SOURCES = ("Sample", "Upload", "Stored dataset")
STORED = SOURCES[2]
SAMPLE_SEEDS = (10_001, 10_002, 10_005, 10_007, 10_011, 10_013)


@dataclass(frozen=True)
class PickedImage:
    """An image chosen on a page, with its ground truth when it has one (original-image pixels)."""

    image: Image.Image = field(repr=False)
    name: str
    boxes: np.ndarray = field(repr=False)  # (N, 4) float, [x1, y1, x2, y2] original pixels
    labels: list[int]  # 1-based, index into class_names
    class_names: tuple[str, ...]
    has_ground_truth: bool
    digest: str  # hash of the pixels: the cache key of anything computed on this image

    @property
    def no_boxes_note(self) -> str:
        """Why there is nothing to compare with, in plain words: no ground truth at all (an upload),
        or ground truth with no box in it (an empty scene)."""
        if not self.has_ground_truth:
            return f"{self.name} is an upload without ground truth: pick a sample scene or a stored dataset image."
        return f"{self.name} has no ground-truth box (an empty image): pick another image with objects in it."

    @property
    def label_names(self) -> list[str]:
        return [class_name(self.class_names, int(i)) for i in self.labels]


_MISSING = object()


def follow_default(key: str, default: Any, options: Any = None) -> None:
    """Keep the widget under `key` on `default` while the user has not moved it away from the
    last default set here; a change of `options` (e.g. another model's classes) resets it.

    Call it just before creating the widget (which then takes its value from session state, with
    no `value=`/`default=` argument). A user's own choice sticks until `options` change.
    """
    auto_key = f"_follow_{key}"
    last = st.session_state.get(auto_key)
    current = st.session_state.get(key, _MISSING)
    if current is _MISSING or last is None or last[0] != options or current == last[1]:
        st.session_state[key] = default
    st.session_state[auto_key] = (options, default)


def _digest(image: Image.Image) -> str:
    return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()[:16]


@st.cache_data(show_spinner=False, max_entries=32)
def sample_image(seed: int, width: int = 480, height: int = 360) -> tuple[bytes, list, list]:
    """PNG bytes and ground truth of a synthetic sample scene."""
    scene = scenes.make_scene(seed, width, height)
    buf = io.BytesIO()
    scene.image.save(buf, format="PNG")
    return buf.getvalue(), [list(b) for b in scene.boxes], list(scene.labels)


def _picked(image: Image.Image, name: str, boxes, labels, class_names, has_gt: bool) -> PickedImage:
    arr = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return PickedImage(image, name, arr, [int(x) for x in labels], tuple(class_names), has_gt, _digest(image))


# ---------------------------------------------------------------- datasets

DATASET_PARAM, IMAGE_PARAM, SAMPLE_PARAM = "dataset", "image", "sample"  # URL names (ui.links' contract)
LAST_DATASET_KEY = "_last_dataset"  # session_state: the stored dataset the user worked with last


def default_dataset(names: Sequence[str]) -> str | None:
    """The dataset a page offers first: the one the URL names (`?dataset=NAME`), else the one the
    user worked with last in this session, else the most recently stored (`names` newest first, as
    detector.data.list_datasets gives them): the only one, when there is one."""
    for wanted in (st.query_params.get(DATASET_PARAM), st.session_state.get(LAST_DATASET_KEY)):
        if wanted in names:
            return wanted
    return names[0] if names else None


def remember_dataset(name: str | None) -> None:
    """Note the dataset the user works with, so the next page offers it first."""
    if name:
        st.session_state[LAST_DATASET_KEY] = name


def dataset_select(container: Any, label: str, names: Sequence[str], key: str, **kwargs: Any) -> str:
    """A selectbox of stored dataset names that starts on default_dataset(names) and remembers the
    choice for the other pages (kwargs go to st.selectbox: format_func, help)."""
    if st.session_state.get(key) not in names:
        st.session_state[key] = default_dataset(names)
    name = container.selectbox(label, list(names), key=key, **kwargs)
    remember_dataset(name)
    return name


def _apply_url_image(key: str, names: Sequence[str]) -> None:
    """`?dataset=NAME&image=FILE` selects that image once per distinct URL (a link from another page)."""
    wanted = (st.query_params.get(DATASET_PARAM), st.query_params.get(IMAGE_PARAM))
    if wanted[0] not in names or st.session_state.get(f"_{key}_url") == wanted:
        return
    st.session_state[f"_{key}_url"] = wanted
    st.session_state[f"{key}_source"] = STORED
    st.session_state[f"{key}_dataset"] = wanted[0]
    if wanted[1]:
        st.session_state[f"{key}_file"] = wanted[1]


def _apply_url_sample(key: str) -> None:
    """`?sample=SEED` selects that sample scene once per distinct URL; a seed not offered is ignored."""
    wanted = st.query_params.get(SAMPLE_PARAM)
    if wanted is None or st.session_state.get(f"_{key}_sample_url") == wanted:
        return
    st.session_state[f"_{key}_sample_url"] = wanted
    if wanted in {str(s) for s in SAMPLE_SEEDS} and st.query_params.get(DATASET_PARAM) is None:
        st.session_state[f"{key}_source"] = "Sample"
        st.session_state[f"{key}_seed"] = int(wanted)


def _first_with_boxes(records: Sequence[Any]) -> int:
    return next((i for i, r in enumerate(records) if len(r.boxes)), 0)


def _stored_dataset_image(key: str) -> PickedImage | None:
    from detector.data import store

    datasets = store.list_datasets()
    if not datasets:
        st.info("No stored dataset yet: upload one on the **Data** page.")
        return None
    names = [d.name for d in datasets]
    c1, c2 = st.columns([1, 2])
    name = dataset_select(c1, "Dataset", names, key=f"{key}_dataset")
    stored = store.open_dataset(name)
    records = stored.dataset.records
    if not records:
        st.warning(f"Dataset {name} has no images.")
        return None
    files = [r.file for r in records]
    file_key = f"{key}_file"
    if st.session_state.get(file_key) not in files:
        wanted = st.session_state.get(file_key)
        if wanted and wanted == st.query_params.get(IMAGE_PARAM):  # a link named a file this dataset lacks
            st.warning(f"{wanted} is not an image of dataset {name}: showing its first image with boxes.")
        st.session_state[file_key] = files[_first_with_boxes(records)]
    file = c2.selectbox(f"Image ({len(files)} in {name}; type to search)", files, key=file_key,
                        format_func=lambda f: f"{f} ({counted(len(records[files.index(f)].boxes), 'box')})",
                        help="The file name as in the dataset's annotations. Opens on the first image with boxes.")
    if (st.query_params.get(DATASET_PARAM), st.query_params.get(IMAGE_PARAM)) != (name, file):
        st.query_params.pop("box", None)  # a link's box= belongs to the image it came with
    st.query_params[DATASET_PARAM], st.query_params[IMAGE_PARAM] = name, file
    st.session_state[f"_{key}_url"] = (name, file)
    record = records[files.index(file)]
    try:
        image = load_image(stored.dataset.root / record.file, name=record.file)
    except ImageError as exc:
        st.error(str(exc))
        return None
    st.caption(f"**{record.file}** from dataset **{name}**: {image.width} x {image.height} (W x H), "
               f"{len(record.boxes)} ground-truth box(es).")
    return _picked(image, record.file, record.boxes, record.labels, stored.dataset.class_names, True)


def image_input(key: str, default_source: str = "Sample") -> PickedImage | None:
    """Radio Sample / Upload / Stored dataset, in the page body; None until an image is usable.

    A stored dataset's image is picked by file name (a searchable selectbox) and kept in the URL
    (`?dataset=NAME&image=FILE`), so a link from another page opens that exact image."""
    from detector.data import store

    _apply_url_image(key, [d.name for d in store.list_datasets()])
    _apply_url_sample(key)
    if st.session_state.get(f"{key}_source") not in SOURCES:
        st.session_state[f"{key}_source"] = default_source
    source = st.radio("Image", SOURCES, key=f"{key}_source", horizontal=True)
    if source != STORED:
        for param in (DATASET_PARAM, IMAGE_PARAM):
            st.query_params.pop(param, None)
    if source != "Sample":
        st.query_params.pop(SAMPLE_PARAM, None)
    if source == "Sample":
        seed = st.selectbox("Sample scene", SAMPLE_SEEDS, key=f"{key}_seed",
                            format_func=lambda s: f"synthetic scene #{s}",
                            help="Generated offline: circles, rectangles and triangles with exact ground truth.")
        if st.query_params.get(SAMPLE_PARAM) != str(seed):
            st.query_params.pop("box", None)  # a link's box= belongs to the image it came with
            st.query_params[SAMPLE_PARAM] = str(seed)
            st.session_state[f"_{key}_sample_url"] = str(seed)
        png, boxes, labels = sample_image(int(seed))
        image = load_image(png, name=f"sample-{seed}.png")
        return _picked(image, f"sample-{seed}.png", boxes, labels, scenes.CLASS_NAMES, True)
    if source == "Upload":
        upload = st.file_uploader("Upload an image (JPEG, PNG, WebP, BMP)", type=["jpg", "jpeg", "png", "webp", "bmp"],
                                  key=f"{key}_upload")
        if upload is None:
            st.info("Choose an image file to inspect.")
            return None
        try:
            image = load_image(upload.getvalue(), name=upload.name)
        except ImageError as exc:
            st.error(str(exc))
            return None
        return _picked(image, upload.name, [], [], (), False)
    return _stored_dataset_image(key)
