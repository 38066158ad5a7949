"""Reproduce the shipped demo model: synthetic data, training with the project's engine, evaluation
on freshly generated images, export as fp16 to detector/demo_model/demo.pt with a model card.

    python scripts/train_demo.py --device cuda                       # about 5 minutes on one H100
    python scripts/train_demo.py --device cpu --images 1200 --epochs 12 --batch-size 4   # CPU, slow

Everything is seeded: training images seed 1, validation seed 2, the held-out test set seed 3
(never seen in training). The model card (demo_card.json) records the configuration, the
per-epoch validation curve and the held-out mAP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detector import checkpoints, models, runs  # noqa: E402


def sh(*args: str) -> str:
    print("+", " ".join(args), flush=True)
    out = subprocess.run([sys.executable, "-m", "detector", *args], cwd=ROOT, check=True, stdout=subprocess.PIPE,
                         text=True)
    print(out.stdout[-3000:], flush=True)
    return out.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "workspace" / "demo-build"), help="where data and the run go")
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--export", default=str(checkpoints.DEMO_CHECKPOINT), help="where demo.pt is written")
    args = p.parse_args()

    work = Path(args.work)
    train, val, test, run = work / "synth-train", work / "synth-val", work / "synth-test", work / "run"
    started = time.time()
    for folder, n, seed in ((train, args.images, 1), (val, 300, 2), (test, 300, 3)):
        if not (folder / "annotations.json").exists():
            sh("synth", str(folder), "--images", str(n), "--seed", str(seed), "--format", "coco")
    config = {
        "model": models.DEMO_ARCH, "weights": "none", "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": "adamw", "lr": args.lr, "weight_decay": 0.0001, "schedule": "cosine",
        "warmup_iters": 300, "grad_clip": 10.0, "workers": args.workers, "seed": 0,
    }
    sh("train", "--out", str(run), "--data", str(train), "--val-data", str(val), "--model", config["model"],
       "--weights", "none", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--optimizer",
       "adamw", "--lr", str(args.lr), "--schedule", "cosine", "--device", args.device, "--workers",
       str(args.workers), "--set", "warmup_iters=300", "--set", "grad_clip=10.0", "--set", "weight_decay=0.0001")
    train_s = time.time() - started
    report = json.loads(sh("evaluate", "--checkpoint", str(run), "--data", str(test), "--device", args.device, "--json"))

    best = checkpoints.read_checkpoint(runs.checkpoint_path(run, "best"))
    model = checkpoints.model_from_checkpoint(best, "best.pt")
    export = Path(args.export)
    checkpoints.save_checkpoint(export, model, best["model"], best["class_names"], best.get("model_kwargs", {}),
                           epoch=best.get("epoch", 0), half=True)
    train_lines, val_lines = runs.read_metrics(run)
    card = {
        "architecture": best["model"],
        "class_names": best["class_names"],
        "trained_with": "python scripts/train_demo.py " + " ".join(sys.argv[1:]),
        "data": {"train": f"synth --images {args.images} --seed 1", "val": "synth --images 300 --seed 2",
                 "held_out_test": "synth --images 300 --seed 3"},
        "config": config,
        "best_epoch": best.get("epoch"),
        "held_out_test": {k: report[k] for k in ("mAP", "mAP50", "mAP75", "per_class", "images") if k in report},
        "val_curve": [{k: v for k, v in line.items() if k != "kind"} for line in val_lines],
        "train_loss_last_step": {k: train_lines[-1][k] for k in ("step", "loss", "loss_classifier", "loss_box_reg",
                                                                 "loss_objectness", "loss_rpn_box_reg")} if train_lines else None,
        "images_per_s_median": sorted(t["images_per_s"] for t in train_lines)[len(train_lines) // 2] if train_lines else None,
        "device": args.device,
        "wall_time_s": round(train_s, 1),
        "file_mb": round(export.stat().st_size / 1e6, 2),
    }
    (export.parent / "demo_card.json").write_text(json.dumps(card, indent=2))
    print(json.dumps({k: card[k] for k in ("held_out_test", "best_epoch", "wall_time_s", "file_mb")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
