"""The post-processing tuner: the seven inference knobs re-evaluated from the pass's RoI candidates.

Each setting re-runs only the proposal filtering and the box post-processing on every batch's
candidate pool (`detector.diagnosis.candidates`: the box head's outputs for every box a setting
could keep, computed once in the pass): neither the backbone nor the head reruns. Exact (equal
to a model rebuilt with the knobs) for every value of every knob, except rpn_pre_nms_top_n_test
above the pool's top_n per level, which is refused with the reason; the module docstring of
`candidates` states the two sub-bit limits. The knobs are torchvision's `FasterRCNN` keyword names; a chosen setting is saved as a new checkpoint with the
same weights and the knobs in `model_kwargs`, so every page and the CLI can load it.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN

from detector.diagnosis.matching import greedy_match
from detector.diagnosis.candidates import setting_detections
from detector.diagnosis.trail import TrailSet
from detector.evaluation import CocoEvaluator
from detector.proposals import ProposalSettings

# FasterRCNN keyword -> (where it acts, attribute / ProposalSettings field, type)
KNOBS: dict[str, tuple[str, str, type]] = {
    "rpn_pre_nms_top_n_test": ("rpn", "pre_nms_top_n", int),
    "rpn_post_nms_top_n_test": ("rpn", "post_nms_top_n", int),
    "rpn_nms_thresh": ("rpn", "nms_thresh", float),
    "rpn_score_thresh": ("rpn", "score_thresh", float),
    "box_score_thresh": ("box", "score_thresh", float),
    "box_nms_thresh": ("box", "nms_thresh", float),
    "box_detections_per_img": ("box", "detections_per_img", int),
}


def parse_knob(text: str) -> tuple[str, float | int]:
    """'NAME=VALUE' -> (name, typed value); ValueError naming the problem."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or name not in KNOBS:
        raise ValueError(f"--knob {text!r}: expected NAME=VALUE with NAME one of {', '.join(KNOBS)}")
    return name, _typed(name, raw)


def parse_sweep(text: str) -> tuple[str, list[float | int]]:
    """'NAME=V1,V2,...' -> (name, values)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or name not in KNOBS:
        raise ValueError(f"--sweep {text!r}: expected NAME=V1,V2,... with NAME one of {', '.join(KNOBS)}")
    values = [_typed(name, v) for v in raw.split(",") if v.strip()]
    if not values:
        raise ValueError(f"--sweep {text!r}: no values")
    return name, values


def _typed(name: str, raw: str) -> float | int:
    kind = KNOBS[name][2]
    try:
        value = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: not a{'n integer' if kind is int else ' number'}") from None
    if kind is int and value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    if kind is float and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], not {value}")
    return value


def current_knobs(model: FasterRCNN) -> dict[str, float | int]:
    """The model's own value of each knob (eval mode)."""
    settings = ProposalSettings.from_rpn(model.rpn)
    out: dict[str, float | int] = {}
    for name, (where, attr, kind) in KNOBS.items():
        out[name] = kind(getattr(settings, attr) if where == "rpn" else getattr(model.roi_heads, attr))
    return out


def with_knobs(model: FasterRCNN, knobs: dict[str, Any]) -> tuple[FasterRCNN, ProposalSettings]:
    """A view of `model` with the box-head knobs changed (shared weights; the model itself is
    untouched, so a cached model shared by other users is safe), and the RPN settings."""
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}")
    settings = ProposalSettings.from_rpn(model.rpn)
    rpn = {KNOBS[k][1]: KNOBS[k][2](v) for k, v in knobs.items() if KNOBS[k][0] == "rpn"}
    box = {KNOBS[k][1]: KNOBS[k][2](v) for k, v in knobs.items() if KNOBS[k][0] == "box"}
    settings = settings.with_(**rpn) if rpn else settings
    if not box:
        return model, settings
    heads = copy.copy(model.roi_heads)  # own attribute dict, same submodules and parameters
    for attr, value in box.items():
        object.__setattr__(heads, attr, value)
    view = copy.copy(model)
    view._modules = OrderedDict(model._modules)
    view._modules["roi_heads"] = heads
    return view, settings


@dataclass(frozen=True)
class SweepPoint:
    """One setting's figures over the cached images."""

    knobs: dict[str, float | int]
    mAP: float | None
    mAP50: float | None
    recall: float | None  # ground truth matched at (iou, score_threshold)
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"knobs": dict(self.knobs), "mAP": self.mAP, "mAP50": self.mAP50, "recall": self.recall}


def evaluate_setting(model: FasterRCNN, trails: TrailSet, knobs: dict[str, Any], iou: float = 0.5,
                     score_threshold: float = 0.5) -> SweepPoint:
    """mAP, mAP50 and recall of one knob setting over the candidate pools (never the backbone or the
    head). ValueError with the reason when the setting is beyond the pools (see `candidates`)."""
    import time

    if not trails.pools:
        raise ValueError("the tuner needs the RoI candidates: collect the trails with keep_pool=True")
    start = time.perf_counter()
    view, settings = with_knobs(model, knobs)
    evaluator = CocoEvaluator(trails.class_names)
    hits = total = 0
    with torch.no_grad():
        for pool in trails.pools:
            for index, det in zip(pool.images, setting_detections(view, pool, settings)):
                t = trails.trails[index]
                boxes = det["boxes"].double().cpu().numpy()
                scores, labels = det["scores"].double().cpu().numpy(), det["labels"].cpu().numpy()
                evaluator.process(t.width, t.height, t.gt_boxes, t.gt_labels, boxes, scores, labels)
                match = greedy_match(t.gt_boxes, t.gt_labels, boxes, scores, labels, iou)
                hits += len(set(match[(match >= 0) & (scores >= score_threshold)].tolist()))
                total += len(t.gt_labels)
    result = evaluator.evaluate()
    return SweepPoint(dict(knobs), result.mAP, result.mAP50, hits / total if total else None,
                      time.perf_counter() - start)


def sweep_grid(sweeps: Iterable[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the swept values (several sweeps make a grid)."""
    sweeps = list(sweeps)
    names = [n for n, _ in sweeps]
    return [dict(zip(names, combo)) for combo in itertools.product(*[v for _, v in sweeps])]


def run_sweep(model: FasterRCNN, trails: TrailSet, grid: list[dict[str, Any]], base: dict[str, Any] | None = None,
              iou: float = 0.5, score_threshold: float = 0.5,
              progress: Callable[[int, int], None] | None = None) -> list[SweepPoint]:
    """evaluate_setting for each setting of `grid` (on top of `base` knobs)."""
    out = []
    for i, knobs in enumerate(grid):
        out.append(evaluate_setting(model, trails, {**(base or {}), **knobs}, iou, score_threshold))
        if progress is not None:
            progress(i + 1, len(grid))
    return out


def save_tuned_checkpoint(source: str | Path, out: str | Path, knobs: dict[str, Any]) -> Path:
    """Write a copy of checkpoint `source` (demo, a file or a run folder) with `knobs` in its
    model_kwargs: same weights, same classes; loadable by `checkpoints.load_model(out)`."""
    from detector import checkpoints

    for name in knobs:
        if name not in KNOBS:
            raise ValueError(f"unknown knob {name!r}")
    ckpt = checkpoints.read_checkpoint(checkpoints.checkpoint_path_for(source))
    kwargs = {**ckpt.get("model_kwargs", {}), **{k: KNOBS[k][2](v) for k, v in knobs.items()}}
    tuned = {key: value for key, value in ckpt.items() if key not in ("optimizer", "scheduler", "scaler")}
    tuned["model_kwargs"] = kwargs
    tuned["tuned_from"] = str(source)
    return checkpoints.write_checkpoint(out, tuned)


def knob_table(points: list[SweepPoint]) -> list[dict[str, Any]]:
    """Rows for a table: the knobs, then mAP, mAP50, recall."""
    return [{**p.knobs, "mAP": p.mAP, "mAP50": p.mAP50, "recall": p.recall} for p in points]


def best_point(points: list[SweepPoint]) -> SweepPoint | None:
    """The setting with the highest mAP (ties: higher recall)."""
    scored = [p for p in points if p.mAP is not None]
    return max(scored, key=lambda p: (p.mAP, p.recall or 0.0)) if scored else None


