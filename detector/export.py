"""Export a detector to TorchScript or ONNX, each export checked against PyTorch when it is made.

TorchScript is `torch.jit.script` of the whole model (torchvision's detection models are
scriptable); the file takes a list of (3, H, W) float images of any size, like the model itself,
and returns `(losses, detections)` as torchvision's scripted models do. ONNX is
`torch.onnx.export` of the model at one fixed input size (torchvision's documented way for its
detection models), opset ONNX_OPSET, through the TorchScript-based exporter (`dynamo=False`):
the torch.export-based default needs onnxscript and does not export torchvision's data-dependent
detection post-processing, while the TorchScript-based one is what torchvision's own ONNX tests
run. Its input `image` is float32 RGB (3, H, W) in [0, 1] of exactly that size; outputs `boxes`
([x1, y1, x2, y2] pixels of that input), `labels` (1-based ids, 0 is background) and `scores`.

Each export is traced (ONNX) on one synthetic image and checked on another (or on the user's
sample image, resized to the export size): the exported file is loaded back with onnxruntime or
`torch.jit.load`, run on the same input as the PyTorch model, and its detections compared within
BOX_ATOL_PX and SCORE_ATOL (labels equal). A mismatch refuses the export (nothing is written).
Class names travel with the file: ONNX `metadata_props`, and for TorchScript an extra file inside
the archive plus a sidecar JSON beside it.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from detector.atomic_file import atomic_path
from detector.checkpoints import LoadedModel
from detector.images import to_tensor
from detector.wording import counted

EXPORT_FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17  # onnxruntime runs it everywhere; the TorchScript-based exporter goes up to 20
DEFAULT_IMAGE_SIZE = (640, 480)  # (width, height) of the ONNX input
BOX_ATOL_PX = 0.1  # largest allowed box-corner difference, in pixels of the input
SCORE_ATOL = 1e-3  # largest allowed score difference
TORCHSCRIPT_EXTRA_FILE = "detector.json"  # inside the TorchScript archive: the same JSON as the sidecar


class ExportError(ValueError):
    """An export that cannot be made or that does not reproduce the PyTorch model: `str()` says why."""


@dataclass(frozen=True)
class Outputs:
    """Detections of one image as plain arrays: boxes (N, 4) xyxy, labels (N,), scores (N,)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class ExportCheck:
    """How the exported file's detections compare with the PyTorch model's on the check image."""

    detections: int  # PyTorch's detections on the check image
    matched: int  # of those, found in the export's output (same label, within tolerance)
    max_box_diff: float  # pixels, over matched detections
    max_score_diff: float
    ok: bool
    message: str


@dataclass(frozen=True)
class ExportResult:
    """A written export: its file, sidecar (TorchScript), size and the check it passed."""

    path: Path
    format: str
    size_bytes: int
    image_size: tuple[int, int]  # (width, height) checked (and, for ONNX, the fixed input size)
    class_names: tuple[str, ...]
    check: ExportCheck
    sidecar: Path | None


def export_metadata(loaded: LoadedModel, fmt: str, image_size: tuple[int, int]) -> dict[str, str]:
    """What travels with an export (string values: ONNX metadata_props are strings)."""
    width, height = image_size
    meta = {
        "class_names": json.dumps(list(loaded.class_names)),
        "label_ids": "1-based: label i is class_names[i - 1]; 0 is background",
        "architecture": loaded.arch,
        "source": str(loaded.source),
        "input": "float32 RGB (3, H, W) in [0, 1]",
        "boxes": "[x1, y1, x2, y2] pixels of the input image",
        "format": fmt,
    }
    if fmt == "onnx":
        meta.update(input_width=str(width), input_height=str(height),
                    input_note=f"fixed size: resize images to {width}x{height} and scale boxes back")
    else:
        meta["outputs"] = "(losses, detections): detections is a list of dicts with boxes, labels, scores"
    return meta


def export_model(
    loaded: LoadedModel,
    fmt: str,
    out: str | Path,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    sample: Image.Image | None = None,
) -> ExportResult:
    """Export `loaded`'s model to `out` as `fmt`, checked on `sample` (or a synthetic scene).

    image_size is (width, height): the ONNX input size, and the size of the check image for both
    formats (the sample is resized to it). Nothing is written if the check fails (ExportError).
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    width, height = (int(v) for v in image_size)
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ExportError(f"image size {width}x{height} is out of range (16 to 4096 pixels a side)")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent}: no such folder")
    model = _cpu_copy(loaded.model)
    trace_input, check_input = _inputs(width, height, sample)
    reference = _run_pytorch(model, check_input)
    meta = export_metadata(loaded, fmt, (width, height))

    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _write_onnx(model, trace_input, tmp, meta)
            got = _run_onnx(tmp, check_input)
        else:
            _write_torchscript(model, tmp, meta)
            got = _run_torchscript(tmp, check_input)
        check = compare_outputs(reference, got, float(getattr(model.roi_heads, "score_thresh", 0.0)))
        if not check.ok:
            raise ExportError(f"{fmt} export refused: {check.message}")
    sidecar = None
    if fmt == "torchscript":
        sidecar = sidecar_path(out)
        sidecar.write_text(json.dumps(_sidecar(meta), indent=2))
    return ExportResult(out, fmt, out.stat().st_size, (width, height), tuple(loaded.class_names), check, sidecar)


def sidecar_path(path: str | Path) -> Path:
    """The JSON beside a TorchScript export: `model.pt` -> `model.json`."""
    return Path(path).with_suffix(".json")


def _sidecar(meta: dict[str, str]) -> dict[str, Any]:
    return {**meta, "class_names": json.loads(meta["class_names"])}


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX export's metadata_props as a dict (class_names is a JSON list)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def read_torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON stored inside a TorchScript export (the same as its sidecar)."""
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_EXTRA_FILE])


# ---------------------------------------------------------------- the check


def compare_outputs(reference: Outputs, got: Outputs, score_thresh: float = 0.0,
                    box_atol: float = BOX_ATOL_PX, score_atol: float = SCORE_ATOL) -> ExportCheck:
    """Match each PyTorch detection to the export's (same label, closest box) and measure the gaps.

    A detection whose score is within `score_atol` of the model's score threshold may be present
    on one side only (rounding decides it); any other missing or extra detection is a mismatch.
    """
    used = np.zeros(len(got.scores), dtype=bool)
    max_box = max_score = 0.0
    missing = 0
    matched = 0
    for box, label, score in zip(reference.boxes, reference.labels, reference.scores):
        candidates = np.nonzero((got.labels == label) & ~used)[0]
        if len(candidates):
            gaps = np.abs(got.boxes[candidates] - box).max(axis=1) + np.abs(got.scores[candidates] - score)
            j = int(candidates[int(np.argmin(gaps))])
            box_gap = float(np.abs(got.boxes[j] - box).max())
            score_gap = float(abs(got.scores[j] - score))
            if box_gap <= box_atol and score_gap <= score_atol:
                used[j] = True
                matched += 1
                max_box, max_score = max(max_box, box_gap), max(max_score, score_gap)
                continue
        if score > score_thresh + score_atol:
            missing += 1
    extra = int(((got.scores > score_thresh + score_atol) & ~used).sum())
    n = len(reference.scores)
    if missing or extra:
        message = (f"{missing} of {n} PyTorch detections not reproduced and {counted(extra, 'extra detection')} "
                   f"(tolerance: boxes {box_atol} px, scores {score_atol}, labels equal)")
        return ExportCheck(n, matched, max_box, max_score, False, message)
    message = (f"{matched} of {n} detections reproduced: boxes within {max_box:.2g} px, scores within "
               f"{max_score:.2g} (tolerance {box_atol} px, {score_atol})")
    return ExportCheck(n, matched, max_box, max_score, True, message)


# ---------------------------------------------------------------- writers and runners


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode CPU copy (the caller's model stays on its device)."""
    return copy.deepcopy(model).cpu().eval()


def _inputs(width: int, height: int, sample: Image.Image | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(trace input, check input): two different images of the export size."""
    from detector.scenes import sample_scenes

    scenes = sample_scenes(2, width=width, height=height)
    trace = to_tensor(scenes[0].image)
    if sample is not None:
        check = to_tensor(sample.convert("RGB").resize((width, height), Image.BILINEAR))
    else:
        check = to_tensor(scenes[1].image)
    return trace, check


def _as_outputs(boxes: Any, labels: Any, scores: Any) -> Outputs:
    return Outputs(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                   np.asarray(scores, dtype=np.float32))


@torch.inference_mode()
def _run_pytorch(model: torch.nn.Module, image: torch.Tensor) -> Outputs:
    out = model([image])[0]
    return _as_outputs(out["boxes"].numpy(), out["labels"].numpy(), out["scores"].numpy())


def _write_onnx(model: torch.nn.Module, trace_input: torch.Tensor, path: Path, meta: dict[str, str]) -> None:
    import onnx

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        try:
            torch.onnx.export(model, ([trace_input],), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=["boxes", "labels", "scores"],
                              do_constant_folding=True)
        except Exception as exc:
            raise ExportError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _run_onnx(path: Path, image: torch.Tensor) -> Outputs:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    boxes, labels, scores = session.run(["boxes", "labels", "scores"], {"image": image.numpy()})
    return _as_outputs(boxes, labels, scores)


def _write_torchscript(model: torch.nn.Module, path: Path, meta: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation note
        try:
            scripted = torch.jit.script(model)
        except Exception as exc:
            raise ExportError(f"TorchScript export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
        torch.jit.save(scripted, str(path), _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(_sidecar(meta))})


@torch.inference_mode()
def _run_torchscript(path: Path, image: torch.Tensor) -> Outputs:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(path), map_location="cpu")
        _losses, detections = scripted([image])
    out = detections[0]
    return _as_outputs(out["boxes"].numpy(), out["labels"].numpy(), out["scores"].numpy())
