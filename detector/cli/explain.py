"""`python -m detector explain`: why each detection, per the CLI contract (README, Command line).

JSON (`--json`): a list, one object per image in the order given:
`{"image", "model", "detections": [detector.explain.detection_json ...]}`; an image that cannot be
read has `"error"` (one line) and no detections. Boxes in original-image pixels, [x1, y1, x2, y2].
"""

from __future__ import annotations

import argparse
import json
import sys

from detector.cli import CliError, load_model_source, model_command
from detector.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    p = model_command(subparsers, "explain", "explain each detection: anchor, RoI, class distribution, NMS", run)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP, BMP, ...)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="explain detections scoring at least this (0.5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print JSON (one object per image, in order)")


def run(args: argparse.Namespace) -> int:
    """Explain a detector's detections on images: for each, the anchor and RoI it came from, the box
    head's class distribution (background included), its box deltas and what its per-class NMS
    suppressed. Default model: COCO weights if cached, else the demo model. A file that cannot be
    read gets its error; the others still run (exit 1 if any failed).
    """
    from detector.explain import detection_json, explain_image
    from detector.images import ImageError, load_image, to_tensor
    from detector.inspect import inspect

    if not 0.0 <= args.score_threshold <= 1.0:
        raise CliError("--score-threshold must be between 0 and 1", 2)
    loaded = load_model_source(args)
    device = next(loaded.model.parameters()).device
    entries: list[dict] = []
    if not args.json:
        print(f"model: {loaded.description}")
    for path in args.images:
        entry: dict = {"image": path, "model": loaded.description}
        entries.append(entry)
        try:
            img = load_image(path)
        except ImageError as exc:
            entry.update(error=exc.problem, detections=[])
            print(f"error: {path}: {exc.problem}", file=sys.stderr)
            continue
        explanation = explain_image(loaded.model, inspect(loaded.model, [to_tensor(img).to(device)]), 0,
                                    loaded.class_names)
        kept = [d for d in explanation.detections if d.score >= args.score_threshold]
        entry["detections"] = [detection_json(explanation, d) for d in kept]
        if not args.json:
            print(f"{path} ({img.width}x{img.height}): {counted(len(kept), 'detection')} scoring >= {args.score_threshold:g}")
            for d in entry["detections"]:
                print(human_text(d))
    if args.json:
        print(json.dumps(entries, indent=2))
    return 1 if any("error" in e for e in entries) else 0


def _b(box: list[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in box) + "]"


def _v(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:+.3f}" for v in values) + ")"


def human_text(d: dict) -> str:
    """One detection's JSON entry as indented lines: anchor -> RoI -> head -> NMS, in the paper's terms."""
    a, roi = d["anchor"], d["roi"]
    probs = sorted(d["class_probs"].items(), key=lambda kv: -kv[1])
    lines = [
        f"  {d['label']} {d['score']:.3f} {_b(d['box'])}",
        f"    anchor:    level {a['level']}, row {a['row']}, column {a['column']}, shape {a['shape']}, {_b(a['box'])}; "
        f"RPN deltas (tx, ty, tw, th) {_v(a['rpn_deltas'])}",
        f"    RoI:       #{roi['index']} (rank {roi['rank']} after the RPN's NMS), objectness {roi['objectness']:.3f}, "
        f"{_b(roi['box'])}",
        "    classes:   " + ", ".join(f"{name} {p:.3f}" for name, p in probs[:6])
        + (f", ... ({len(probs) - 6} more)" if len(probs) > 6 else ""),
        f"    box deltas (dx, dy, dw, dh) {_v(d['box_deltas'])}: RoI -> {_b(d['box'])}",
    ]
    if d["suppressed"]:
        lines.append(f"    NMS:       suppressed {len(d['suppressed'])} {d['label']} candidates: " + "; ".join(
            f"{s['score']:.3f} {_b(s['box'])} IoU {s['iou']:.2f}" for s in d["suppressed"][:5])
            + ("; ..." if len(d["suppressed"]) > 5 else ""))
    else:
        lines.append(f"    NMS:       suppressed no {d['label']} candidate")
    return "\n".join(lines)
