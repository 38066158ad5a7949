"""`python -m detector anchors`: anchor counts for an image size, or anchor fitness for a dataset.

    python -m detector anchors --image-size W H [--model NAME | --sizes S --ratios R --strides T] [--json]
    python -m detector anchors --dataset DATASET [--model NAME | --sizes S --ratios R --strides T] [--json]

`--sizes` uses `/` between levels and `,` within one (one group applies to every level), `--ratios`
are height / width, `--strides` one per level. A custom set pads to a multiple of the largest
stride and is not resized unless `--min-size` is given.
"""

from __future__ import annotations

import argparse
import json
import sys

from detector.cli import CliError
from detector.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "anchors",
        help="anchor counts per level for an image size, or anchor fitness (best IoU, recall) for a dataset",
        description="Anchors of a model (after its own resize and padding) or of a custom set: counts per "
        "level and inside the image for --image-size; best anchor IoU and recall of every ground-truth "
        "box for --dataset.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--image-size", nargs=2, type=int, metavar=("W", "H"), help="original image width and height")
    what.add_argument("--dataset", metavar="DATASET", help="a dataset folder or zip (COCO, VOC or YOLO), or a stored dataset name")
    p.add_argument("--model", metavar="NAME",
                   help="builder name, demo, checkpoint file or run folder (default: the default model)")
    p.add_argument("--sizes", help="custom anchor sizes: '/' between levels, ',' within one, e.g. 32/64/128/256/512")
    p.add_argument("--ratios", help="custom aspect ratios height/width, e.g. 0.5,1,2 (default 0.5,1,2)")
    p.add_argument("--strides", help="custom strides, one per level, e.g. 4,8,16,32,64")
    p.add_argument("--min-size", type=int, help="custom set only: resize the short side to this (default: no resize)")
    p.add_argument("--max-size", type=int, help="custom set only: cap the long side (default 1000/600 x min-size)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _source(args: argparse.Namespace):
    from detector import anchor_fitness, anchor_grids
    custom = any(v is not None for v in (args.sizes, args.ratios, args.strides))
    if custom and args.model:
        raise CliError("give either --model or a custom set (--sizes/--ratios/--strides), not both", 2)
    if custom:
        if not args.sizes or not args.strides:
            raise CliError("a custom anchor set needs --sizes and --strides (and optionally --ratios)", 2)
        try:
            sizes = anchor_grids.parse_sizes(args.sizes, "--sizes")
            ratios = anchor_grids.parse_numbers(args.ratios, "--ratios") if args.ratios else [0.5, 1.0, 2.0]
            strides = anchor_grids.parse_numbers(args.strides, "--strides", int)
            return anchor_grids.custom_source(sizes, ratios, strides, args.min_size, args.max_size), "as asked"
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
    if args.min_size is not None or args.max_size is not None:
        raise CliError("--min-size/--max-size apply to a custom set; a model uses its own resize", 2)
    from detector import checkpoints, models

    source = args.model
    why = "as asked"
    if not source:  # the model every command defaults to (checkpoints.default_model: a cached COCO MobileNet, else demo)
        source, why = checkpoints.default_model("cpu")
    try:
        if source in models.ARCHITECTURES:  # anchors need no weights: build with random ones
            model = models.build_model(source, weights="none").eval()
        else:
            model = checkpoints.load_model(source, "cpu").model
    except (checkpoints.CheckpointError, ValueError) as exc:
        raise CliError(str(exc), 2) from None
    return anchor_grids.model_source(model, str(source)), why


def _print_grid(grid) -> None:
    print(f"anchors of {grid.source_name}: image {grid.image_size[0]}x{grid.image_size[1]} -> resized "
          f"{grid.resized_size[0]}x{grid.resized_size[1]} -> padded {grid.padded_size[0]}x{grid.padded_size[1]}")
    print(f"{'level':>10} {'stride':>8} {'grid':>9} {'per loc':>7} {'count':>9} {'inside':>9}   (stride, grid: x by y)")
    for lv in grid.levels:
        stride = f"{lv.stride[0]}" if lv.stride[0] == lv.stride[1] else f"{lv.stride[0]}x{lv.stride[1]}"
        print(f"{lv.name:>10} {stride:>8} {lv.grid[0]:>4}x{lv.grid[1]:<4} {lv.anchors_per_location:>7} "
              f"{lv.count:>9,} {lv.inside_image:>9,}")
    print(f"{'total':>10} {'':>8} {'':>9} {'':>7} {grid.total:>9,} {grid.inside_image:>9,}")


def _fitness_images(spec: str):
    """Records of a dataset folder/zip or a stored dataset name, as FitnessImages (original frame)."""
    from detector.anchor_fitness import FitnessImage
    from detector.data import DatasetError, resolve_dataset

    try:
        dataset, _, _ = resolve_dataset(spec)
    except DatasetError as exc:
        raise CliError(str(exc), 2) from None
    images = [FitnessImage(r.width, r.height, _boxes(r.boxes)) for r in dataset.records]
    return dataset, images


def _boxes(boxes):
    import numpy as np

    return np.asarray(boxes, dtype=float).reshape(-1, 4)


def run(args: argparse.Namespace) -> int:
    from detector import anchor_fitness, anchor_grids
    source, why = _source(args)
    if args.image_size is not None:
        w, h = args.image_size
        if w <= 0 or h <= 0:
            raise CliError(f"--image-size: width and height must be positive, got {w} {h}", 2)
        grid = anchor_grids.anchor_grid(source, (w, h))
        if args.json:
            print(json.dumps(grid.to_dict(), indent=2))
        else:
            if why != "as asked":
                print(f"model: {source.name} ({why})")
            _print_grid(grid)
        return 0

    dataset, images = _fitness_images(args.dataset)
    fit = anchor_fitness.fitness(source, images)
    if fit.boxes == 0:
        raise CliError(f"{args.dataset}: no ground-truth boxes to measure anchors against", 1)
    sugg = anchor_fitness.suggestions(fit, source, images)
    if args.json:
        out = fit.to_dict()
        out["dataset"] = str(args.dataset)
        out["suggestions"] = [s.to_dict() for s in sugg]
        print(json.dumps(out, indent=2))
        return 0
    print(f"anchor fitness of {source.name} ({why}) on {args.dataset}: {counted(fit.images, 'image')}, {counted(fit.boxes, 'box')}")
    print("recall (share of boxes whose best anchor IoU reaches t): "
          + ", ".join(f"{t}: {r:.1%}" for t, r in fit.recall.items()))
    print(f"mean best IoU {fit.best_iou.mean():.3f}")
    for group, buckets in (("by COCO size (original pixels)", fit.by_size), ("by aspect ratio h/w", fit.by_ratio)):
        print(group + ":")
        for b in buckets:
            if b.boxes:
                print(f"  {b.name:<24} {b.boxes:>6} boxes  recall@0.7 {b.recall['0.7']:.1%}  @0.5 {b.recall['0.5']:.1%}")
    print("what-if anchor sets (same grids; recall@0.7 / @0.5):")
    for s in sugg:
        note = "" if s.fits_pretrained_head else "  (anchors per location change: the RPN head no longer fits)"
        print(f"  {s.name:<24} sizes {'/'.join(','.join(map(str, lv)) for lv in s.sizes)}  ratios "
              f"{','.join(f'{r:g}' for r in s.ratios[0])}  {s.recall['0.7']:.1%} / {s.recall['0.5']:.1%}{note}")
    sys.stdout.flush()
    return 0
