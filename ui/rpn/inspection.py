"""Cached inspection runs for the RPN page: the expensive stage once per (model, image), the cheap
heads once per (model, image, proposal settings), Table 1 once per (model, image set), and the
page's figures once per (model, image, what they show).

Every cache here is process-wide (st.cache_resource: the same object comes back, no pickling of
feature maps), so sessions looking at the same model and image share one computation; the model
object's id is part of the key, so a reloaded checkpoint is run again. Torch work passes the
server's forward gate (ui.compute): at most one forward per core at once, the others queued.
Sizes: a stage holds the image's feature maps and objectness (about 2 to 60 MB, by model and image
size), an inspection its proposals and pooled RoI features (about 1 to 15 MB), a figure its
downsampled image and overlays (about 30 to 300 KB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from detector.images import ImageError, load_image, to_tensor
from detector.inspect import (
    DetectionTensors, Inspection, ProposalSizeRow, RPNStage, inspect, proposal_size_table, run_heads, run_rpn_stage,
)
from detector.checkpoints import LoadedModel
from detector.proposals import PAPER_TABLE1, ProposalSettings
from ui.compute import forward_slot, gated
from ui.inputs import SAMPLE_SEEDS, PickedImage, sample_image
from ui.model import loaded_model_key

TABLE1_IMAGES = 6  # images Table 1 averages over


@st.cache_resource(max_entries=8, ttl=3600, show_spinner=False)
def _stage(key: str, digest: str, _loaded: LoadedModel, _image: Image.Image) -> RPNStage:
    with forward_slot():
        return run_rpn_stage(_loaded.model, [to_tensor(_image)])


@st.cache_resource(max_entries=16, ttl=3600, show_spinner=False)
def _heads(key: str, digest: str, settings: ProposalSettings, _loaded: LoadedModel, _stage: RPNStage) -> Inspection:
    with forward_slot():
        return run_heads(_loaded.model, _stage, settings)


def rpn_stage(loaded: LoadedModel, picked: PickedImage) -> RPNStage:
    """Transform + backbone + RPN head for this image (cached per model and image, for every session)."""
    key = loaded_model_key(loaded)
    return gated(("stage", key, picked.digest), "Backbone and RPN head",
                 lambda: _stage(key, picked.digest, loaded, picked.image))


def inspection(loaded: LoadedModel, picked: PickedImage, settings: ProposalSettings) -> Inspection:
    """Proposal filtering + RoI heads for these settings, from the cached stage (never the backbone)."""
    stage = rpn_stage(loaded, picked)
    key = loaded_model_key(loaded)
    return gated(("heads", key, picked.digest, settings), "Proposal filtering and RoI heads",
                 lambda: _heads(key, picked.digest, settings, loaded, stage))


@st.cache_resource(max_entries=64, ttl=3600, show_spinner=False)
def _figure(name: str, key: tuple, _build: Callable[[], Any]) -> Any:
    return _build()


def shared_figure(name: str, loaded: LoadedModel, picked: PickedImage, params: tuple, build: Callable[[], Any]) -> Any:
    """The figure `name` of this model and image for `params` (every value it depends on besides
    the model and the image), built once by `build()` for every session; do not modify it."""
    return _figure(name, (loaded_model_key(loaded), picked.digest, params), build)


def table1_sources() -> list[str]:
    """Image sets Table 1 can average over: the sample scenes, then stored datasets."""
    names = ["Sample scenes"]
    try:
        from detector.data import store

        names += [f"dataset: {d.name}" for d in store.list_datasets()]
    except (ImportError, OSError):
        pass
    return names


def _images_of(source: str) -> list[Image.Image]:
    if source == "Sample scenes":
        return [load_image(sample_image(int(s))[0], name=f"sample {s}") for s in SAMPLE_SEEDS[:TABLE1_IMAGES]]
    from detector.data import store

    stored = store.open_dataset(source.removeprefix("dataset: "))
    images = []
    for record in stored.dataset.records[:TABLE1_IMAGES]:
        try:
            images.append(load_image(stored.dataset.root / record.file, name=record.file))
        except ImageError:
            continue  # Table 1 averages over the images that open; the Data page reports the others
    return images


@st.cache_resource(max_entries=8, show_spinner=False)
def _table1(
    key: str, source: str, settings: ProposalSettings, _loaded: LoadedModel
) -> tuple[list[ProposalSizeRow], int]:
    images = _images_of(source)
    # one image at a time: each inspection is dropped once its proposals are counted
    with forward_slot():
        rows = proposal_size_table(inspect(_loaded.model, [to_tensor(img)], settings) for img in images)
    return rows, len(images)


def table1(loaded: LoadedModel, source: str, settings: ProposalSettings) -> tuple[list[ProposalSizeRow], int]:
    """(rows, number of images) of Table 1 for this model over the image set `source`."""
    key = loaded_model_key(loaded)
    return gated(("table1", key, source, settings), "Table 1 over the image set",
                 lambda: _table1(key, source, settings, loaded))


def table1_frame(rows: list[ProposalSizeRow]) -> pd.DataFrame:
    """Table 1 rows for display: anchor shape, its size, the mean proposal regressed from it, the paper's."""
    return pd.DataFrame([{
        "level": r.level,
        "anchor": f"{r.size}^2, {r.ratio:g}",
        "anchor w x h": f"{r.anchor_wh[0]:.0f} x {r.anchor_wh[1]:.0f}",
        "proposals": r.count,
        "mean proposal w x h": f"{r.mean_wh[0]:.0f} x {r.mean_wh[1]:.0f}" if r.mean_wh else "-",
        "paper (ZF)": f"{r.paper_wh[0]} x {r.paper_wh[1]}" if r.paper_wh else "",
    } for r in rows])


def paper_table1_frame() -> pd.DataFrame:
    """The paper's Table 1 (ZF net, s = 600) as printed: anchor as scale^2 and width:height."""
    shape = {0.5: "2:1", 1.0: "1:1", 2.0: "1:2"}
    return pd.DataFrame([{"anchor": f"{s}^2, {shape[r]}", "proposal w x h (ZF, paper)": f"{w} x {h}"}
                         for (s, r), (w, h) in PAPER_TABLE1.items()])


def detections_frame(det: DetectionTensors, names: list[str]) -> pd.DataFrame:
    """Detections as a table: class, score, box in original pixels."""
    boxes = det.boxes.numpy()
    return pd.DataFrame({"class": names, "score": np.round(det.scores.numpy(), 3),
                         **{c: np.round(boxes[:, i], 1) for i, c in enumerate(("x1", "y1", "x2", "y2"))}})


TIMED_STAGES = (("transform", "transform"), ("backbone", "backbone"), ("rpn_head", "RPN head"),
                ("anchors_decode", "anchors + decoding"), ("proposal_filtering", "proposal filtering"),
                ("roi_heads", "RoI heads"))


def timings_frame(timings: dict[str, float]) -> pd.DataFrame:
    """Milliseconds per stage, in pipeline order."""
    return pd.DataFrame({"stage": [label for _, label in TIMED_STAGES],
                         "ms": [round(1000 * timings[key], 1) for key, _ in TIMED_STAGES]})
