"""Training throughput: `python -m detector train` with and without mixed precision, side by side.

    python bench/train_speed.py --data DATASET --out FOLDER [--model NAME ...] [--batch-size B] [--epochs N]

For each model, trains the same data twice in the same session (AMP on, then off; on CPU only
float32), and prints one line per run: images/s (median over the iterations after the first
epoch, data loading included), the last validation losses and mAP, and the AMP speed-up as a
ratio. `--json` prints the rows as JSON. Only the CLI and detector.runs are used, as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detector import runs  # noqa: E402


def run_once(data: str, out: Path, model: str, amp: bool, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "detector", "train", "--out", str(out), "--data", data, "--model", model,
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--device", args.device, "--amp" if amp else "--no-amp", "--set", "snapshot_images=2"]
    if args.min_size:
        cmd += ["--min-size", str(args.min_size), "--max-size", str(args.max_size or args.min_size)]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        return {"model": model, "amp": amp, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    train, val = runs.read_metrics(out)
    later = [r["images_per_s"] for r in train if r["epoch"] > 1] or [r["images_per_s"] for r in train]
    last = val[-1] if val else {}
    return {
        "model": model, "amp": amp, "batch_size": args.batch_size, "steps": len(train),
        "images_per_s": statistics.median(later), "wall_s": wall,
        "val_loss": last.get("val_loss"), "mAP": last.get("mAP"), "mAP50": last.get("mAP50"),
        "device": runs.read_status(out).extra.get("device"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--min-size", type=int, default=None)
    parser.add_argument("--max-size", type=int, default=None)
    parser.add_argument("--no-fp32", action="store_true", help="skip the float32 baseline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for model in args.model or ["fasterrcnn_resnet50_fpn"]:
        for amp in ([True] if args.no_fp32 else [True, False]):
            out = args.out / f"{model}-{'amp' if amp else 'fp32'}"
            row = run_once(args.data, out, model, amp, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"\n{'model':<40} {'amp':<5} {'batch':>5} {'img/s':>8} {'mAP':>7} {'speed-up':>9}")
        for row in rows:
            if "error" in row:
                print(f"{row['model']:<40} {str(row['amp']):<5} error: {row['error']}")
                continue
            base = next((r for r in rows if r["model"] == row["model"] and not r["amp"] and "error" not in r), None)
            ratio = f"{row['images_per_s'] / base['images_per_s']:.2f}x" if base and row["amp"] else ""
            m = f"{row['mAP']:.3f}" if row.get("mAP") is not None else "n/a"
            print(f"{row['model']:<40} {str(row['amp']):<5} {row['batch_size']:>5} {row['images_per_s']:>8.1f} {m:>7} {ratio:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
