"""`validate` and `synth`: check a dataset before training; write a synthetic one.

validate exits 0 when the dataset is usable, 1 when it is not, 2 when the input is refused
(unreadable, not a dataset, or hostile: an unsafe or oversized archive).
"""

from __future__ import annotations

import json
import sys

from detector.wording import counted


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate", help="check a dataset (folder or zip; COCO, VOC or YOLO) and print the report",
        description="Parse a dataset, report every problem with its file and line or id, say what training "
                    "will do about each. Exit 0 usable, 1 not usable, 2 refused.",
    )
    p.add_argument("dataset", metavar="DATASET", help="a folder or zip archive, or a stored dataset name")
    p.add_argument("--format", default="auto", choices=("auto", "coco", "voc", "yolo"))
    p.add_argument("--voc-coordinates", default="auto", choices=("auto", "one-based", "zero-based"),
                   help="Pascal VOC boxes: one-based pixel indices (the devkit's), zero-based/fractional edges "
                        "(CVAT, Label Studio), or auto: decided from the files, and the report says why")
    p.add_argument("--decode", action="store_true", help="also decode every image fully (slower)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=validate)

    s = subparsers.add_parser(
        "synth", help="write a synthetic dataset (shapes with exact boxes)",
        description="Write a deterministic synthetic dataset: circles, rectangles and triangles of varied "
                    "sizes and aspect ratios, some empty images.",
    )
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--images", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", default="coco", choices=("coco", "voc", "yolo"))
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--height", type=int, default=240)
    s.set_defaults(func=synth)


def validate(args) -> int:
    from pathlib import Path

    import dataclasses

    from detector.cli import CliError

    from detector.data import DatasetError, DatasetRefused, load_dataset, load_folder, open_dataset
    from detector.data.validation import decode_problems

    try:
        if Path(args.dataset).exists():
            dataset = load_dataset(args.dataset, args.format, voc_coordinates=args.voc_coordinates)
        else:
            try:
                stored = open_dataset(args.dataset)
            except DatasetRefused:
                raise  # a registration no longer allowed: its own message
            except DatasetError:
                raise CliError(f"{args.dataset}: no such file or folder, and no stored dataset by that name", 2) from None
            dataset = stored.dataset
            if args.voc_coordinates != "auto" or args.format != "auto":  # read its files again as asked
                dataset = load_folder(stored.root, args.format if args.format != "auto" else dataset.format,
                                      args.voc_coordinates)
    except DatasetError as exc:
        raise CliError(str(exc), 2) from None
    if args.decode:
        extra = decode_problems(dataset)
        dataset = dataclasses.replace(dataset, problems=dataset.problems + tuple(extra))
    report = dataset.report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0 if report["usable"] else 1


def format_report(report: dict) -> str:
    lines = [
        f"format: {report['format']}",
        f"images: {report['images']}  boxes: {report['boxes']}  empty images (kept as negatives): {report['empty_images']}",
        f"classes ({len(report['classes'])}): {', '.join(report['classes'])}",
    ]
    if report.get("splits"):
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()))
    if report.get("voc_coordinates"):
        lines.append(f"VOC coordinates: {report['voc_coordinates']['reason']}")
    for note in report.get("notes") or ():
        lines.append(f"note: {note}")
    for f in report.get("ignored_files") or ():
        lines.append(f"ignored: {f['file']}: {f['reason']}")
    problems = report["problems"]
    errors = sum(p["severity"] == "error" for p in problems)
    lines.append(f"problems: {len(problems)} ({counted(errors, 'error')}, {counted(len(problems) - errors, 'warning')})")
    for p in problems:
        where = p["file"] or "dataset"
        if p["line"] is not None:
            where += f":{p['line']}"
        if p["id"] is not None:
            where += f" (id {p['id']})"
        lines.append(f"  {p['severity']}: {where}: {p['message']} -> {p['action']}")
    lines.append("usable: yes" if report["usable"] else "usable: NO (fix the errors above)")
    return "\n".join(lines)


def synth(args) -> int:
    from detector.cli import CliError
    from detector.data.synthetic import write_synthetic

    if args.images < 1:
        raise CliError("--images must be at least 1", 2)
    if not (16 <= args.width <= 4096 and 16 <= args.height <= 4096):
        raise CliError("--width and --height must be between 16 and 4096", 2)
    try:
        out = write_synthetic(args.out_dir, images=args.images, seed=args.seed, format=args.format,
                              width=args.width, height=args.height)
    except OSError as exc:
        raise CliError(f"{args.out_dir}: cannot write ({exc.strerror or exc})", 1) from None
    print(f"wrote {counted(args.images, 'image')} ({args.format}) to {out}", file=sys.stdout)
    return 0
