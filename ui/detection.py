"""Detection glue for pages: decode uploads safely and cache detections per (model, image bytes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import streamlit as st
from PIL import Image

from detector.detection import Detections, detect
from detector.images import ImageError, load_image
from ui.model import get_model, model_key

_CACHE_KEY = "_detections_cache"
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


def cached_detections(source: str, device, images: list[InputImage], batch_size: int = 4) -> dict[str, Detections]:
    """Detections for each good image, keyed by digest; only images not seen with this model run."""
    cache: dict = st.session_state.setdefault(_CACHE_KEY, {})
    key = model_key(source, device)
    todo = [im for im in images if im.image is not None and (key, im.digest) not in cache]
    if todo:
        loaded = get_model(source, device)
        bar = st.progress(0.0, text=f"Detecting with {source} on {len(todo)} image(s) ...")
        results = detect(loaded, [im.image for im in todo], [im.name for im in todo], batch_size=batch_size,
                         progress=lambda done, total: bar.progress(done / total, text=f"Detected {done}/{total} images"))
        bar.empty()
        for im, det in zip(todo, results):
            cache[(key, im.digest)] = det
        while len(cache) > _CACHE_LIMIT:
            cache.pop(next(iter(cache)))
    return {im.digest: cache[(key, im.digest)] for im in images if (key, im.digest) in cache}
