"""`python -m detector detect`: detections on image files, per the CLI contract (README, Command line)."""

from __future__ import annotations

import argparse
import json
import sys

from detector.cli import CliError, add_run_options, load_model_source, model_command
from detector.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    p = model_command(subparsers, "detect", "detect objects in image files", run)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP, BMP, ...)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this (0.5)")
    add_run_options(p, batch_size=4)
    p.add_argument("--json", action="store_true", help="print JSON (one entry per image, in order)")


def run(args: argparse.Namespace) -> int:
    """Run a detector on images. Default model: COCO weights if cached, else the demo model. A file
    that cannot be read gets its error; the others still run (exit 1 if any failed).
    """
    from detector.detection import detect
    from detector.images import ImageError, load_image

    if not 0.0 <= args.score_threshold <= 1.0:
        raise CliError("--score-threshold must be between 0 and 1", 2)
    loaded = load_model_source(args)

    entries: list[dict] = []
    images, names, slots = [], [], []
    for path in args.images:
        try:
            img = load_image(path)
        except ImageError as exc:
            entries.append({"image": path, "width": None, "height": None, "error": exc.problem, "detections": []})
            continue
        slots.append(len(entries))
        entries.append({"image": path, "width": img.width, "height": img.height, "error": None, "detections": []})
        images.append(img)
        names.append(path)
    for slot, det in zip(slots, detect(loaded, images, names, batch_size=args.batch_size)):
        entries[slot]["detections"] = det.above(args.score_threshold).to_json()

    failed = [e for e in entries if e["error"]]
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        print(f"model: {loaded.description}")
        for e in entries:
            if e["error"]:
                print(f"{e['image']}: ERROR {e['error']}")
                continue
            print(f"{e['image']} ({e['width']}x{e['height']}): {counted(len(e['detections']), 'detection')}")
            for d in e["detections"]:
                x1, y1, x2, y2 = d["box"]
                print(f"  {d['label']:<16} {d['score']:.3f}  [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    for e in failed:
        print(f"error: {e['image']}: {e['error']}", file=sys.stderr)
    return 1 if failed else 0
