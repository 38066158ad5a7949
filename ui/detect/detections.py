"""Detection glue for pages: decode uploads safely and cache detections per (model, image bytes).

The detections cache is process-wide (every session of the server shares it, bounded to 256
images, each a few KB of boxes): sessions detecting on the same images with the same model run
the model once; the run passes the server's forward gate (ui.compute).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from detector.detection import ImageDetections, detect, table_rows
from detector.images import ImageError, encode_png, load_image
from detector.viz import draw_boxes_on_image
from detector.wording import counted
from ui.compute import gated
from ui.inputs import follow_default
from ui.links import detection_url
from ui.model import get_model, model_key

_CACHE_LIMIT = 256


@dataclass(frozen=True)
class InputImage:
    """A decoded upload (or the error that stopped it) and the digest of its bytes."""

    name: str
    digest: str
    image: Image.Image | None = field(repr=False, default=None)
    error: str | None = None


@st.cache_data(show_spinner=False, max_entries=256)
def _decode(data: bytes, name: str) -> tuple[Image.Image | None, str | None]:
    try:
        return load_image(data, name=name), None
    except ImageError as exc:
        return None, exc.problem


def decode_uploads(files: list[tuple[str, bytes]]) -> list[InputImage]:
    """Decode (name, bytes) pairs; a bad file gets its error, the others are kept."""
    out = []
    for name, data in files:
        image, error = _decode(data, name)
        out.append(InputImage(name, hashlib.sha1(data).hexdigest(), image, error))
    return out


class _Store:
    """(model key, image digest) -> ImageDetections, least recently used dropped past `limit`; one lock
    per set of images being detected, so two sessions asking for the same images run them once."""

    def __init__(self, limit: int = _CACHE_LIMIT):
        self.limit = limit
        self.items: OrderedDict[tuple[str, str], ImageDetections] = OrderedDict()
        self.lock = threading.Lock()
        self._locks: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple[str, str]) -> ImageDetections | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            return None

    def put(self, key: tuple[str, str], value: ImageDetections) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.limit:
                self.items.popitem(last=False)

    def lock_for(self, keys: tuple) -> threading.Lock:
        with self.lock:
            if len(self._locks) > 4 * self.limit:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(keys, threading.Lock())


@st.cache_resource(show_spinner=False)
def _store() -> _Store:
    return _Store()


def cached_detections(source: str, device, images: list[InputImage], batch_size: int = 4) -> dict[str, ImageDetections]:
    """The detections of each good image, keyed by digest; only images no session ran with this model run."""
    store = _store()
    key = model_key(source, device)
    todo = [im for im in images if im.image is not None and store.get((key, im.digest)) is None]
    if todo:
        loaded = get_model(source, device)
        digests = tuple(sorted({im.digest for im in todo}))

        def run() -> None:
            with store.lock_for((key, digests)):
                left = [im for im in todo if store.get((key, im.digest)) is None]  # another session's run
                if not left:
                    return
                bar = st.progress(0.0, text=f"Detecting with {source} on {counted(len(left), 'image')} ...")
                results = detect(loaded, [im.image for im in left], [im.name for im in left], batch_size=batch_size,
                                 progress=lambda done, total: bar.progress(done / total,
                                                                           text=f"Detected {done}/{total} images"))
                bar.empty()
                for im, det in zip(left, results):
                    store.put((key, im.digest), det)

        gated(("detect", key, digests), f"Detection on {counted(len(todo), 'image')}", run)
    found = {im.digest: store.get((key, im.digest)) for im in images}
    return {d: det for d, det in found.items() if det is not None}


def class_filter(container: Any, class_names: Sequence[str], key: str = "detect_classes") -> list[str]:
    """A multiselect of the model's classes that follows the model: all of them selected, reset to
    all when the model (its class names) changes; the user's own choice sticks otherwise."""
    options = list(class_names)
    follow_default(key, options, options=tuple(options))
    return container.multiselect("Classes", options, key=key,
                                 help="Only these classes are drawn, listed and exported (the model's classes).")


TABLE_COLUMNS = ["image", "label", "score", "x1", "y1", "x2", "y2"]
EXPLAIN_COLUMN = "explain in /rpn"


def explain_links(source: str, seed: int | None, every: ImageDetections, shown: ImageDetections) -> list[str | None]:
    """Per shown detection, its explanation on /rpn (ui.links.detection_url): `det=` its index among
    `every` detection of the image (the model's output order) and its box. Only a sample scene
    (`seed`) can be named in a link: an upload lives in this session only, so its links are None."""
    if seed is None:
        return [None] * len(shown)
    out = []
    for box, score in zip(shown.boxes, shown.scores):
        same = np.flatnonzero((every.boxes == box).all(axis=1) & (every.scores == score))
        try:
            out.append(detection_url(source, int(same[0]), box=box.tolist(), sample=seed) if len(same) else None)
        except ValueError:  # a model source a link cannot name
            out.append(None)
    return out


def detection_tables(ordered: Sequence[ImageDetections], links: Sequence[str | None] | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per detection, count per class) of detections, in the order given; `links` (one per
    row, `explain_links`) become the table's last column."""
    table = pd.DataFrame(table_rows(ordered), columns=TABLE_COLUMNS)
    if links is not None:
        table[EXPLAIN_COLUMN] = list(links)
    counts = table.groupby("label").size().rename("count").reset_index() if len(table) else pd.DataFrame(
        columns=["label", "count"])
    return table, counts


def result_heading(n_detections: int, n_images: int, classes: Sequence[str]) -> str:
    """'N detection(s) in M image(s)', saying why when no class is selected."""
    text = f"{counted(n_detections, 'detection')} in {counted(n_images, 'image')}"
    return text + " · no class selected" if not classes else text


def annotated_png(image: Image.Image, det: ImageDetections) -> bytes:
    """The image with its detections drawn in, as PNG bytes (the gallery's download)."""
    return encode_png(draw_boxes_on_image(image, det.boxes, list(det.label_names), det.scores.tolist()))
