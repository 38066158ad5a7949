"""`python -m detector diagnose`: which classes fail, what kind of error, and at which stage of
Faster R-CNN each missed object is lost (detector.diagnosis), plus the post-processing tuner."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from detector.cli import CliError, add_run_options, model_command
from detector.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    p = model_command(subparsers, "diagnose", "per-class AP, confusion, TIDE error types, where missed objects are "
                      "lost, tuner", run, dataset=True)
    p.add_argument("--iou", type=float, default=0.5, help="IoU of a match (0.5)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="detections kept at the operating point (0.5)")
    p.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="set an inference knob before the run (repeatable): rpn_pre_nms_top_n_test, "
                        "rpn_post_nms_top_n_test, rpn_nms_thresh, rpn_score_thresh, box_score_thresh, "
                        "box_nms_thresh, box_detections_per_img")
    p.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="re-evaluate these values of a knob from the RoI candidates the pass keeps (repeatable: a grid)")
    p.add_argument("--save-checkpoint", metavar="FILE",
                   help="write the model with the --knob values (and, with --sweep, the best setting's) in its "
                        "model_kwargs: same weights, usable as --checkpoint anywhere")
    p.add_argument("--pool-top-n", type=int, metavar="N",
                   help="with --sweep: RoI candidates the pass keeps per FPN level; rpn_pre_nms_top_n_test is exact "
                        "up to N and refused above (default: the model's own pre_nms_top_n)")
    add_run_options(p, batch_size=2)
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.add_argument("--out", metavar="FILE", help="also write the JSON to FILE")


def run(args: argparse.Namespace) -> int:
    """Diagnose a model on DATASET in one pass (one forward per image): per-class COCO AP, PR figures
    and the best-F1 threshold, the confusion matrix, TIDE's error types (AP50 points), and for every
    missed ground-truth box the stage of Faster R-CNN that lost it. --sweep re-evaluates inference
    knobs from the RoI candidates the pass keeps (neither the backbone nor the box head reruns). Same model choice and class
    matching by name as evaluate.
    """
    from detector import checkpoints, models, weights
    from detector.data import DatasetError
    from detector.diagnosis import collect_trails, diagnosis_report
    from detector.diagnosis.tuner import best_point, parse_knob, parse_sweep, run_sweep, save_tuned_checkpoint, sweep_grid
    from detector.evaluation import EvaluationUnavailable, evaluation_images
    from detector.images import ImageError

    if not 0.0 < args.iou <= 1.0:
        raise CliError("--iou must be in (0, 1]", 2)
    if not 0.0 <= args.score_threshold <= 1.0:
        raise CliError("--score-threshold must be between 0 and 1", 2)
    try:
        knobs = dict(parse_knob(k) for k in args.knob)
        sweeps = [parse_sweep(s) for s in args.sweep]
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    try:
        device = models.resolve_device(args.device)
        loaded = checkpoints.load_chosen(args.checkpoint, args.model, args.classes, device, **knobs)
        if args.model and not args.checkpoint and loaded.weights != "coco":
            raise CliError(f"{args.model}: no COCO weights cached, so there is nothing to diagnose "
                           "(download them first, or pass --checkpoint)")
        chosen = evaluation_images(args.data, args.split, loaded.class_names)
    except (checkpoints.CheckpointError, weights.WeightsUnavailable, DatasetError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not chosen.records:
        raise CliError(f"{args.data}: no images in split {args.split}")
    if args.save_checkpoint and loaded.weights not in ("demo", "checkpoint"):
        raise CliError("--save-checkpoint needs a checkpoint (a run folder, a file or demo) to copy the weights from")

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        if sweeps:
            trails = tuner_pass(args, loaded, chosen)
        else:
            trails = collect_trails(loaded.model, chosen.records, chosen.root, loaded.class_names,
                                    batch_size=args.batch_size, progress=progress)
        report = diagnosis_report(trails, args.iou, args.score_threshold)
        points = (run_sweep(loaded.model, trails, sweep_grid(sweeps), iou=args.iou,
                            score_threshold=args.score_threshold) if sweeps else [])
    except (EvaluationUnavailable, ImageError, ValueError) as exc:
        raise CliError(str(exc)) from None
    report.update(model=loaded.description, data=str(args.data), split=args.split, knobs=knobs,
                  classes_not_in_model=list(chosen.classes_not_in_model))
    if sweeps:
        report["sweep"] = [p.as_dict() for p in points]
        report["pass_folder"] = str(trails.pools.folder)
        report["sweep_held_bytes_per_image"] = trails.held_bytes() // max(1, len(trails))
        report["sweep_disk_bytes_per_image"] = trails.pool_bytes() // max(1, len(trails))
    if args.save_checkpoint:
        best = best_point(points)
        tuned = {**knobs, **(best.knobs if best else {})}
        try:
            path = save_tuned_checkpoint(loaded.source, args.save_checkpoint, tuned)
        except (checkpoints.CheckpointError, OSError) as exc:
            raise CliError(f"{args.save_checkpoint}: {exc}") from None
        report["saved_checkpoint"] = {"path": str(path), "knobs": tuned}
    text = json.dumps(report, indent=2)
    if args.out:
        try:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    if args.json:
        print(text)
    else:
        print_report(report)
    sys.stdout.flush()
    return 0


def tuner_pass(args: argparse.Namespace, loaded: Any, chosen: Any) -> Any:
    """The tuner-ready pass in its folder (detector.diagnosis.passes): planned on one image and
    refused when the machine cannot hold it, resumed where a stopped one stopped, progress on stderr."""
    from detector.diagnosis import passes

    model = loaded.model
    top_n = int(args.pool_top_n or model.rpn._pre_nms_top_n["testing"])
    if top_n < 1:
        raise CliError("--pool-top-n must be at least 1", 2)
    model_id = passes.model_version(loaded.source)
    source = Path(str(args.checkpoint)) if args.checkpoint else None
    run_dir = source if source is not None and source.is_dir() else None
    identity = passes.pass_identity(model, model_id, str(Path(chosen.root).resolve()), args.split, chosen.records,
                                    args.batch_size, top_n)
    folder = passes.pass_folder(identity, run_dir)
    if passes.read_status(folder)["state"] != "done":
        plan = passes.plan_pass(model, chosen.records, chosen.root, loaded.class_names, folder, args.batch_size, top_n)
        refusal = plan.refusal()
        if refusal:
            raise CliError(refusal)
        if not args.json:
            print(f"pass: {plan.summary()}; folder {folder}", file=sys.stderr)

        def progress(done: int, total: int, left: float | None) -> None:
            if not args.json and sys.stderr.isatty():
                eta = "" if left is None else f", about {passes.duration(left)} left"
                print(f"\r{done}/{total} images{eta}   ", end="" if done < total else "\n", file=sys.stderr, flush=True)

        try:
            trails = passes.run_pass(model, chosen.records, chosen.root, loaded.class_names, folder, identity, progress)
        except passes.PassBusy as exc:
            raise CliError(str(exc)) from None
        if trails is None:
            raise CliError(f"{folder}: the pass was stopped; run the same command again to resume it")
        return trails
    return passes.load_pass(folder)


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_report(r: dict[str, Any]) -> None:
    """The diagnosis as terminal tables."""
    from detector.diagnosis.stage_blame import STAGE_LABELS

    print(f"model: {r['model']}")
    print(f"data:  {r['data']} ({r['split']}): {counted(r['images'], 'image')}, {counted(r['ground_truth'], 'box')}; "
          f"IoU {r['iou']:g}, score threshold {r['score_threshold']:g}")
    if r.get("classes_not_in_model"):
        print(f"classes the model does not know (left out): {', '.join(r['classes_not_in_model'])}")
    print(f"mAP {_f(r['mAP'], 4)}   mAP50 {_f(r['mAP50'], 4)}   mAP75 {_f(r['mAP75'], 4)}\n")
    print(_table(["class", "gt", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "prec", "recall", "best-F1 thr"],
                 [[c["class"], c["gt"], _f(c["AP"]), _f(c["AP50"]), _f(c["AP75"]), _f(c["AP_small"]),
                   _f(c["AP_medium"]), _f(c["AP_large"]), _f(c["precision"]), _f(c["recall"]),
                   _f(c["best_f1_threshold"], 2)] for c in r["per_class"]]))
    conf = r["confusion"]
    print(f"\nconfusion (rows: ground truth, columns: prediction; IoU {conf['iou']:g}, score >= "
          f"{conf['score_threshold']:g})")
    print(_table(["gt \\ pred"] + conf["labels"], [[lab] + row for lab, row in zip(conf["labels"], conf["matrix"])]))
    e = r["errors"]
    print(f"\nerror types (TIDE, AP50 points gained by fixing each; TIDE AP50 {r['tide_ap50']:.2f})")
    print(_table(["Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg"],
                 [[f"{e[k]:.2f}" for k in ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg")]]))
    m = r["missed"]
    print(f"\nwhere the {m['total']} missed boxes were lost"
          + (f" ({m['no_anchor_fits']} with no anchor of IoU >= 0.3)" if m["no_anchor_fits"] else ""))
    print(_table(["stage", "missed"], [[STAGE_LABELS[s], n] for s, n in m["by_stage"].items()]))
    if r.get("sweep"):
        names = list(r["sweep"][0]["knobs"])
        print("\ntuner (from the RoI candidates; recall at the IoU and score threshold above)")
        print(_table(names + ["mAP", "mAP50", "recall"],
                     [[p["knobs"][n] for n in names] + [_f(p["mAP"], 4), _f(p["mAP50"], 4), _f(p["recall"])]
                      for p in r["sweep"]]))
    if r.get("saved_checkpoint"):
        print(f"\nsaved {r['saved_checkpoint']['path']} with {r['saved_checkpoint']['knobs']}")
