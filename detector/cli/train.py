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
from pathlib import Path
from typing import Any

from detector.cli import CliError, add_run_options, model_command
from detector.train_config import AUGMENTATIONS, BEST_METRICS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune a Faster R-CNN, writing a run folder",
        description="Fine-tune a Faster R-CNN on DATASET, writing RUN_DIR (config.json, status.json, metrics.jsonl, "
                    "checkpoints/, snapshots/, train.log). RUN_DIR/config.json is read when present; flags "
                    "override it. Runs under `torchrun --nproc_per_node=N` too (DistributedDataParallel).",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder (created if missing)")
    p.add_argument("--data", metavar="DATASET", help="a dataset folder or zip, or a stored dataset's name")
    p.add_argument("--val-data", metavar="DATASET", help="a separate validation dataset (default: DATASET's val split)")
    p.add_argument("--model", metavar="NAME", help="architecture (default: the --init checkpoint's, else "
                                                    "DEFAULT_ARCH of detector/models.py)")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from a checkpoint file, a run folder, or demo")
    p.add_argument("--weights", choices=("coco", "none"), help="coco: start from cached COCO weights (default none)")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--batch-size", type=_count_or_auto, metavar="B|auto",
                   help="images per step per process (default 4); auto: the largest that fits the GPU, with headroom")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default: 0.02 x total batch / 16 for SGD)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"))
    p.add_argument("--schedule", choices=("step", "cosine"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA)")
    p.add_argument("--workers", type=_count_or_auto, metavar="N|auto",
                   help="DataLoader worker processes (default auto: the CPU cores less one, at most 12)")
    p.add_argument("--amp-dtype", choices=("auto", "bfloat16", "float16"),
                   help="mixed-precision type (default auto: bfloat16 where supported, else float16 with loss scaling)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="backbone in channels-last memory order (default off)")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=None,
                   help="cuDNN autotuning per input shape (default off)")
    p.add_argument("--fused-optimizer", action=argparse.BooleanOptionalAction, default=None,
                   help="fused SGD / AdamW kernels (default on for CUDA)")
    p.add_argument("--compile-backbone", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the backbone (default off)")
    p.add_argument("--min-size", type=int, metavar="PX", help="the model's resize target for the short side")
    p.add_argument("--max-size", type=int, metavar="PX", help="the model's limit for the long side")
    p.add_argument("--trainable-backbone-layers", type=int, metavar="N",
                   help="backbone stages that train, from the top (torchvision's meaning: 0 to 5 for ResNet, 6 for "
                        "MobileNet); the rest are frozen")
    p.add_argument("--multi-scale", metavar="S1,S2,...", help="short-side sizes drawn per training batch, e.g. 480,512,544")
    p.add_argument("--augmentation", choices=AUGMENTATIONS,
                   help="torchvision references' augmentation set (default none; flips are --set hflip=false to turn off)")
    p.add_argument("--best-metric", choices=BEST_METRICS, help="what best.pt is the best of (default mAP)")
    p.add_argument("--patience", type=int, metavar="N", help="stop after N validations without a better best metric")
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


def _count_or_auto(text: str) -> int | str:
    """A whole number or "auto" (--batch-size, --workers)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, not {text!r}") from None


def _config_from(args: argparse.Namespace, run_dir: Path) -> Any:
    from detector import runs
    from detector.train_config import TrainConfig

    try:
        stored = runs.read_config(run_dir)
    except runs.RunError as exc:
        raise CliError(str(exc)) from None
    changes: dict[str, Any] = {}
    for flag, field in (("data", "data"), ("val_data", "val_data"), ("model", "model"), ("init", "init"),
                        ("weights", "weights"), ("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                        ("optimizer", "optimizer"), ("schedule", "schedule"), ("device", "device"), ("amp", "amp"),
                        ("workers", "workers"), ("amp_dtype", "amp_dtype"), ("channels_last", "channels_last"),
                        ("cudnn_benchmark", "cudnn_benchmark"), ("fused_optimizer", "fused_optimizer"),
                        ("compile_backbone", "compile_backbone"),
                        ("trainable_backbone_layers", "trainable_backbone_layers"),
                        ("multi_scale", "multi_scale"), ("augmentation", "augmentation"),
                        ("best_metric", "best_metric"), ("patience", "patience")):
        value = getattr(args, flag)
        if value is not None:
            changes[field] = value
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CliError(f"--set {item!r}: expected FIELD=JSON")
        try:
            changes[key.strip()] = json.loads(raw)
        except ValueError:
            changes[key.strip()] = raw  # a bare string
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
        print(f"{result.state}: {result.epoch} epoch(s), {result.step} steps{best}; run folder {run_dir}")
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
