"""`python -m detector anchor-study`: the paper's anchor experiment (Table 8) on a dataset.

One ordinary training run per anchor set, in sequence, through the one launcher (`runs.start_training`);
the study folder and its figures are `detector.anchor_study`'s, its anchor sets `detector.anchor_sets`'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from detector.cli import CliError
from detector.cli.train import set_values
from detector.wording import counted

DESCRIPTION = """\
The anchor experiment of Ren et al. (Faster R-CNN, Table 8) on DATASET: one ordinary training run per
anchor set, one after another, all with the same data, split, seed, schedule, initial weights and knobs;
they differ only in model_kwargs anchor_sizes / aspect_ratios. Each run re-initialises the RPN head's
last layers (rpn.head.cls_logits and rpn.head.bbox_pred) when its anchors per location differ from the
initial weights' (the backbone, the head's 3x3 conv and the box head keep theirs; with random initial
weights everything starts random anyway); study.json lists them per set.

Sets (--sets, a comma list): paper = Table 8's six rows (1s1r-128, 1s1r-256, 1s3r-128, 1s3r-256, 3s1r,
3s3r) in the model's anchor form: "3 ratios" are 0.5, 1, 2 (height / width); a model whose levels all
hold the same sizes (the demo, MobileNet FPN) gets the middle three of its sizes for the paper's 128,
256, 512; a model with one base size b per level (ResNet-50 FPN) gets b for "1 scale" (2b for the 256
row) and b x 2^0, 2^(1/3), 2^(2/3) for "3 scales", as RetinaNet. fitted = the sizes and ratios
anchor_fitness fits to the dataset (k-means; as `anchors --dataset` suggests). FILE.json = a list of
{key, label, sizes, ratios}.

DIR/study.json gets, per set: anchors per location, anchors for the dataset's median image, anchor
recall at IoU 0.5 / 0.7, proposal recall at 300 proposals on the validation split (the paper's Fig. 4
measure), mAP, mAP50 and training time; and the paper's Table 8 beside it. Runs are RUNS_IN/<DIR
name>-<set key>/. Run the same command again to continue a stopped study: finished runs are kept,
a stopped one resumes from its last.pt."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("anchor-study", help="the paper's anchor experiment (Table 8): one run per anchor set",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", metavar="DATASET", help="a dataset folder or zip, or a stored dataset's name "
                                                     "(optional when DIR holds a study: it continues)")
    p.add_argument("--out", required=True, metavar="DIR", help="the study folder (study.json)")
    p.add_argument("--model", metavar="NAME", help="architecture (default: the --init checkpoint's)")
    p.add_argument("--init", metavar="CHECKPOINT", help="every run starts from this checkpoint file, run folder "
                                                        "or demo (default: demo, unless --model or --weights)")
    p.add_argument("--weights", choices=("coco", "none"), help="coco: every run starts from cached COCO weights")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs per run (default 4)")
    p.add_argument("--sets", default="paper,fitted", metavar="paper|fitted|KEY|FILE.json,...",
                   help="the anchor sets, comma-separated (default paper,fitted)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="any TrainConfig field for every run, e.g. --set batch_size=2 (repeatable)")
    p.add_argument("--runs-in", metavar="FOLDER", help="where the run folders go (default DIR; the page uses the "
                                                      "workspace's runs/, so /train lists them)")
    p.add_argument("--nice", type=int, default=0, metavar="N", help="each run's `train --nice N` (default 0)")
    p.add_argument("--json", action="store_true", help="print study.json at the end")
    p.set_defaults(func=cmd_anchor_study)


DEFAULT_EPOCHS = 4


def base_config(args: argparse.Namespace) -> Any:
    """The TrainConfig every run shares (no anchors): the flags, then --set FIELD=JSON."""
    from detector.models import DEMO_ARCH
    from detector.train_config import TrainConfig

    values: dict[str, Any] = {"data": args.data, "epochs": args.epochs or DEFAULT_EPOCHS}
    for flag in ("model", "init", "weights", "device"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if not args.init and args.weights != "coco" and args.model in (None, DEMO_ARCH):
        values["init"] = "demo"  # the best start offline: the shipped demo model (as the Train page's)
    for flag in ("data", "init"):  # the runs start in the project's folder: paths made absolute
        if values.get(flag) and Path(values[flag]).exists():
            values[flag] = str(Path(values[flag]).resolve())
    values.update(set_values(args.set))
    kwargs = values.get("model_kwargs") or {}
    if isinstance(kwargs, dict) and ({"anchor_sizes", "aspect_ratios"} & set(kwargs)):
        raise CliError("--set model_kwargs: anchors are what the study varies; choose them with --sets")
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None


def cmd_anchor_study(args: argparse.Namespace) -> int:
    from detector import anchor_study
    from detector.checkpoints import CheckpointError
    from detector.data import DatasetError
    from detector.weights import WeightsUnavailable

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: not a folder")
    try:
        existing = anchor_study.read_study(out)
    except anchor_study.StudyError as exc:
        raise CliError(str(exc)) from None
    if existing is not None and args.data is None:  # continue it with its own settings
        spec = anchor_study.StudySpec.from_dict(existing["spec"])
    elif args.data is None:
        raise CliError("no dataset: pass --data DATASET")
    else:
        spec = anchor_study.StudySpec(base_config(args), args.sets, args.nice)
    runs_in = Path(args.runs_in) if args.runs_in else None
    print(f"anchor study {out}: {spec.base.data}, {counted(spec.base.epochs, 'epoch')} per run, "
          f"start {spec.base.init or spec.base.model or 'default'}")
    try:
        study = anchor_study.prepare(out, spec, runs_in)
        state = anchor_study.run(out, study)
    except (anchor_study.StudyError, DatasetError, CheckpointError, WeightsUnavailable, ValueError) as exc:
        raise CliError(str(exc)) from None
    study = anchor_study.read_study(out) or {}
    if args.json:
        print(json.dumps(study, indent=2))
    else:
        print_table(study)
    return 0 if state == "done" else 1


def _f(value: Any, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def print_table(study: dict[str, Any]) -> None:
    """The study's table: one row per set, ours beside the paper's mAP."""
    print(f"{'set':<10} {'per loc':>7} {'anchors':>8} {'AR@.5':>6} {'AR@.7':>6} {'PR300@.5':>8} {'PR300@.7':>8} "
          f"{'mAP':>6} {'mAP50':>6} {'time s':>7}  {'paper mAP (VOC07)':>17}  state")
    for s in study.get("sets", []):
        f = s.get("figures") or {}
        pr = (f.get("proposal_recall") or {}).get("iou") or {}
        ar = f.get("anchor_recall") or {}
        paper = (s.get("paper") or {}).get("mAP")
        print(f"{s['key']:<10} {f.get('anchors_per_location', ['-'])[0]:>7} {f.get('anchors_median_image', '-'):>8} "
              f"{_f(ar.get('0.5'), '{:.2f}'):>6} {_f(ar.get('0.7'), '{:.2f}'):>6} {_f(pr.get('0.5'), '{:.2f}'):>8} "
              f"{_f(pr.get('0.7'), '{:.2f}'):>8} {_f(f.get('mAP')):>6} {_f(f.get('mAP50')):>6} "
              f"{_f(f.get('train_time_s'), '{:.0f}'):>7}  {_f(paper, '{:.1f}'):>17}  {s.get('run_state')}")
    print(f"paper: {study.get('paper_source', '')}")
