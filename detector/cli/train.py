"""`python -m detector train` and `python -m detector evaluate` (the CLI contract, README).

train: RUN_DIR/config.json is read when present (the training page writes it), flags override it,
the merged config is written back, and the engine trains in this process (also under torchrun).
evaluate: COCO mAP of a checkpoint, a run folder, `demo` or a builder on a dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable

from detector.cli import CliError, add_run_options, model_command
from detector.train_config import AUTO, TrainConfig
from detector.wording import counted


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a Faster R-CNN, writing a run folder",
        description="Fine-tune a Faster R-CNN on DATASET, writing RUN_DIR (config.json, status.json, metrics.jsonl, "
                    "checkpoints/, snapshots/, train.log). RUN_DIR/config.json is read when present; flags "
                    "override it. Runs under `torchrun --nproc_per_node=N` too (DistributedDataParallel).",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder (created if missing)")
    add_config_flags(p)
    # not config fields: the model's resize targets go into model_kwargs, and how this process runs
    p.add_argument("--min-size", type=int, metavar="PX", help="the model's resize target for the short side")
    p.add_argument("--max-size", type=int, metavar="PX", help="the model's limit for the long side")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="any config field, e.g. --set model_kwargs='{\"min_size\": 128}' (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from checkpoints/last.pt")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="lower this process's CPU priority by N (os.nice, and its session's autogroup when it "
                        "leads one) before training; the Train page starts runs with 10, so pages stay responsive "
                        "while the CPU trains (default 0)")
    p.set_defaults(func=cmd_train)

    e = model_command(subparsers, "evaluate", "COCO mAP of a model on a dataset", cmd_evaluate, dataset=True)
    add_run_options(e, batch_size=2)
    e.add_argument("--json", action="store_true", help="print the result as JSON")


# ---------------------------------------------------------------- train


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--batch-size` for batch_size), generated from the field's type and
    metadata as the Train form's widgets are (ui/train/form.py): its help, choices, `auto`, metavar.
    Every flag defaults to None (not given: config.json's value, else the field's default)."""
    for f in fields(TrainConfig):
        if f.name in NOT_FLAGS:
            continue
        meta, kind = f.metadata, str(f.type)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        helptext = (meta.get("help", "") + (f" (default {default})" if default not in (None, "") else "")).replace("%", "%%")
        if kind.startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif "choices" in meta:
            p.add_argument(flag, choices=meta["choices"], help=helptext)
        else:
            p.add_argument(flag, type=_flag_type(kind, bool(meta.get("auto"))), help=helptext,
                           metavar=meta.get("metavar") or _metavar(kind, bool(meta.get("auto"))))


NOT_FLAGS = ("model_kwargs",)  # a JSON object: --set model_kwargs=..., or --min-size / --max-size


def set_values(items: list[str]) -> dict[str, Any]:
    """`--set FIELD=JSON` items as {field: value}: the value parsed as JSON, else kept as a bare string."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CliError(f"--set {item!r}: expected FIELD=JSON")
        try:
            values[key.strip()] = json.loads(raw)
        except ValueError:
            values[key.strip()] = raw  # a bare string
    return values


def _flag_type(kind: str, auto: bool) -> Callable[[str], Any]:
    """The argparse type of a field: whole numbers (or auto), numbers, or text (lists as S1,S2,...,
    which TrainConfig.from_dict reads)."""
    if kind.startswith("int") or auto:
        def number(text: str) -> int | str:
            if auto and text == AUTO:
                return text
            try:
                return int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected a whole number{' or auto' if auto else ''}, not {text!r}") from None
        return number
    return float if kind.startswith("float") else str


def _metavar(kind: str, auto: bool) -> str:
    if auto:
        return "N|auto"
    if kind.startswith("tuple"):
        return "N1,N2,..."
    return {"int": "N", "float": "X"}.get(kind.split(" ")[0], "TEXT")


def _config_from(args: argparse.Namespace, run_dir: Path) -> Any:
    from detector import runs

    try:
        stored = runs.read_config(run_dir)
    except runs.RunError as exc:
        raise CliError(str(exc)) from None
    changes: dict[str, Any] = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            changes[f.name] = value
    changes.update(set_values(args.set))
    try:
        config = TrainConfig.from_dict({**(stored or {}), **changes})
        kwargs = dict(config.model_kwargs)
        if args.min_size is not None:
            kwargs["min_size"] = args.min_size
        if args.max_size is not None:
            kwargs["max_size"] = args.max_size
        config = config.replace(model_kwargs=kwargs)
    except (ValueError, TypeError) as exc:
        where = f"{run_dir / runs.CONFIG}: " if stored else ""
        raise CliError(f"{where}{exc}") from None
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from detector import engine, runs
    from detector.data import DatasetError
    from detector.images import ImageError
    from detector.checkpoints import CheckpointError
    from detector.models import MODEL_NAMES
    from detector.weights import WeightsUnavailable

    if args.nice > 0:  # before torch starts its threads and the DataLoader its workers: they inherit it
        runs.lower_cpu_priority(args.nice)
    run_dir = Path(args.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise CliError(f"{run_dir}: not a folder")
    main_rank = int(os.environ.get("RANK", "0")) == 0
    config = _config_from(args, run_dir)
    status = runs.read_status(run_dir)
    if main_rank and status.state in ("running", "stopping") and not status.interrupted:
        raise CliError(f"{run_dir}: already training (pid {status.pid}); stop it first")
    if args.resume:
        if not runs.checkpoint_path(run_dir, "last").is_file():
            raise CliError(f"{run_dir}: nothing to resume (no checkpoints/last.pt yet)")
    elif runs.has_started(run_dir) and main_rank:
        raise CliError(f"{run_dir}: this folder already holds a run; use --resume to continue it, or a new folder")
    if config.model and config.model not in MODEL_NAMES:
        raise CliError(f"unknown model {config.model!r}; known: {', '.join(MODEL_NAMES)}")
    if not config.data:
        raise CliError("no dataset: pass --data DATASET (or set data in config.json)")
    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_config(run_dir, config.to_dict())
    try:
        result = engine.train(config, run_dir, resume=args.resume)
    except (engine.TrainingFailed, runs.DeviceBusy, WeightsUnavailable, CheckpointError, DatasetError,
            ImageError, runs.RunError) as exc:
        raise CliError(str(exc)) from None
    if main_rank:
        best = f", best mAP {result.best_map:.4f}" if result.best_map is not None else ""
        print(f"{result.state}: {counted(result.epoch, 'epoch')}, {counted(result.step, 'step')}{best}; "
              f"run folder {run_dir}")
    return 0


# ---------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    """COCO mAP (0.5:0.95), mAP50, mAP75 and per-class AP of a model on DATASET (pycocotools).
    Classes are matched by name.
    """
    import torch

    from detector.data import DatasetError, DetectionDataset, collate
    from detector.evaluation import EvaluationUnavailable, evaluate_model, evaluation_images
    from detector.images import ImageError
    from detector.checkpoints import CheckpointError, load_chosen
    from detector.models import resolve_device
    from detector.weights import WeightsUnavailable

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        loaded = load_chosen(args.checkpoint, args.model, args.classes, device)
        if args.model and not args.checkpoint and loaded.weights != "coco":
            raise CliError(f"{args.model}: no COCO weights cached, so there is nothing to evaluate "
                           "(download them first, or pass --checkpoint)")
        chosen = evaluation_images(args.data, args.split, loaded.class_names)
    except (CheckpointError, WeightsUnavailable, DatasetError, ValueError) as exc:
        raise CliError(str(exc)) from None
    model_names = list(loaded.class_names)
    missing = list(chosen.classes_not_in_model)
    mapped = list(chosen.records)
    torch_ds = DetectionDataset(mapped, chosen.root, train=False)
    loader = torch.utils.data.DataLoader(torch_ds, batch_size=max(1, args.batch_size), collate_fn=collate)
    present = sorted({l for r in mapped for l in r.labels})
    try:
        result = evaluate_model(loaded.model, loader, model_names, device)
    except EvaluationUnavailable as exc:
        raise CliError(str(exc)) from None
    except ImageError as exc:
        raise CliError(str(exc)) from None
    per_class = {model_names[l - 1]: result.per_class.get(model_names[l - 1]) for l in present}
    out = {"mAP": result.mAP, "mAP50": result.mAP50, "mAP75": result.mAP75, "per_class": per_class,
           "images": result.images, "model": loaded.description, "data": str(args.data),
           "classes_not_in_model": missing, "fixes": chosen.fixes}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"model: {loaded.description}")
        print(f"data:  {args.data} ({result.images} images, {result.ground_truth} boxes)")
        if missing:
            print(f"classes the model does not know (left out): {', '.join(missing)}")
        print(f"mAP {_f(result.mAP)}   mAP50 {_f(result.mAP50)}   mAP75 {_f(result.mAP75)}")
        for name, ap in per_class.items():
            print(f"  {name:<24} AP {_f(ap)}")
    sys.stdout.flush()
    return 0


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
