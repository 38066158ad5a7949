"""`python -m detector export`: a model as TorchScript or ONNX, checked against PyTorch when made."""

from __future__ import annotations

import argparse
import json

from detector.cli import CliError, model_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = model_command(subparsers, "export", "export a model to TorchScript or ONNX (checked when made)", run,
                      default=False)
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="ONNX input size and check image size (default 640 480)")
    p.add_argument("--sample", metavar="IMAGE", help="check on this image (resized to W x H; default: a synthetic scene)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Export a model to TorchScript (torch.jit.script) or ONNX (fixed input size, opset 17). The
    export is run on a sample image (onnxruntime or torch.jit.load) and refused if its boxes, labels
    and scores differ from the PyTorch model's. Class names travel with it: ONNX metadata, or a JSON
    file beside the TorchScript file.
    """
    from detector import checkpoints, weights
    from detector.export import DEFAULT_IMAGE_SIZE, ExportError, export_model
    from detector.images import ImageError, load_image

    if not args.checkpoint and not args.model:
        raise CliError("give --checkpoint RUN_DIR|FILE|demo or --model NAME", 2)
    try:
        sample = load_image(args.sample) if args.sample else None
    except ImageError as exc:
        raise CliError(str(exc), 2) from None
    try:
        loaded = checkpoints.load_chosen(args.checkpoint, args.model, args.classes, "cpu")
    except (ValueError, checkpoints.CheckpointError, weights.WeightsUnavailable) as exc:
        raise CliError(str(exc), 2) from None
    try:
        result = export_model(loaded, args.format, args.out, tuple(args.image_size or DEFAULT_IMAGE_SIZE), sample)
    except ExportError as exc:
        raise CliError(str(exc), 1) from None
    if args.json:
        check = result.check
        print(json.dumps({
            "path": str(result.path), "format": result.format, "size_bytes": result.size_bytes,
            "image_size": list(result.image_size), "class_names": list(result.class_names),
            "sidecar": str(result.sidecar) if result.sidecar else None,
            "check": {"detections": check.detections, "matched": check.matched, "max_box_diff": check.max_box_diff,
                      "max_score_diff": check.max_score_diff, "message": check.message},
        }, indent=2))
    else:
        print(f"model: {loaded.description}")
        print(f"wrote {result.path} ({result.format}, {result.size_bytes / 1e6:.1f} MB"
              f"{', input ' + 'x'.join(map(str, result.image_size)) if result.format == 'onnx' else ''})")
        if result.sidecar:
            print(f"class names: {result.sidecar}")
        print(f"check: {result.check.message}")
    return 0
