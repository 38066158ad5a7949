"""Shared input widgets: pick an image (sample, upload, or a stored dataset's image with its boxes)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from detector import scenes
from detector.images import ImageError, load_image

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
        return [self.class_names[i - 1] if 0 < i <= len(self.class_names) else str(i) for i in self.labels]


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


def _stored_dataset_image(key: str) -> PickedImage | None:
    try:
        from detector.data import store
    except ImportError:
        st.info("Stored datasets are not available in this version.")
        return None
    datasets = store.list_datasets()
    if not datasets:
        st.info("No stored dataset yet: upload one on the **Data** page.")
        return None
    names = [d.name for d in datasets]
    name = st.selectbox("Dataset", names, key=f"{key}_dataset")
    stored = store.open_dataset(name)
    records = stored.dataset.records
    if not records:
        st.warning(f"Dataset {name} has no images.")
        return None
    index = st.number_input(f"Image (0 to {len(records) - 1})", 0, len(records) - 1, 0, key=f"{key}_index")
    record = records[int(index)]
    path = stored.dataset.root / record.file
    try:
        image = load_image(path, name=record.file)
    except ImageError as exc:
        st.error(str(exc))
        return None
    return _picked(image, record.file, record.boxes, record.labels, stored.dataset.class_names, True)


def image_input(key: str, default_source: str = "Sample") -> PickedImage | None:
    """Radio Sample / Upload / Stored dataset, in the page body; None until an image is usable."""
    sources = ["Sample", "Upload", "Stored dataset"]
    source = st.radio("Image", sources, index=sources.index(default_source), key=f"{key}_source", horizontal=True)
    if source == "Sample":
        seed = st.selectbox("Sample scene", SAMPLE_SEEDS, key=f"{key}_seed",
                            format_func=lambda s: f"synthetic scene #{s}",
                            help="Generated offline: circles, rectangles and triangles with exact ground truth.")
        png, boxes, labels = sample_image(int(seed))
        image = Image.open(io.BytesIO(png)).convert("RGB")
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
