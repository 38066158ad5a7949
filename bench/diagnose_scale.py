"""One size of the diagnose scale benchmark, in a process of its own (so its peak RSS is its own):

    python bench/diagnose_scale.py --what pass|evaluate --images N --data DIR --checkpoint FILE --out FILE

resnet50-FPN with random weights as a bare state_dict (3 classes), synthetic 1066x800 images
(resized to 800 px by the model). `pass`: the tuner-ready pass into its folder
(detector.diagnosis.passes, as `diagnose --sweep` runs it), then one box-knob and one RPN-knob
tuner setting; `evaluate`: `evaluate` over the same images. Figures: seconds, peak RSS, and for the
pass the bytes held in memory and written to disk per image.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ARCH = "fasterrcnn_resnet50_fpn"
CLASSES = ("circle", "rectangle", "triangle")
BATCH = 2


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", choices=("pass", "evaluate"), required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from detector import checkpoints
    from detector.data import DetectionDataset, collate
    from detector.evaluation import evaluate_model, evaluation_images

    torch.set_num_threads(args.threads)
    loaded = checkpoints.load_model(args.checkpoint, "cpu", arch=ARCH, class_names=CLASSES)
    chosen = evaluation_images(args.data, "all", loaded.class_names)
    records = list(chosen.records[: args.images])
    figures: dict = {"images": len(records), "rss_after_load_mb": peak_rss_mb()}
    if args.what == "evaluate":
        loader = torch.utils.data.DataLoader(DetectionDataset(records, chosen.root, train=False), batch_size=BATCH,
                                             collate_fn=collate)
        start, cpu = time.perf_counter(), cpu_s()
        evaluate_model(loaded.model, loader, loaded.class_names)
        figures["evaluate_s"], figures["evaluate_cpu_s"] = time.perf_counter() - start, cpu_s() - cpu
    else:
        from detector.diagnosis import diagnosis_report, evaluate_setting, passes

        top_n = int(loaded.model.rpn._pre_nms_top_n["testing"])
        identity = passes.pass_identity(loaded.model, "bench", args.data, "all", records, BATCH, top_n)
        folder = Path(args.out).parent / f"pass-{args.images}"
        start = time.perf_counter()
        plan = passes.plan_pass(loaded.model, records, chosen.root, loaded.class_names, folder, BATCH, top_n)
        figures["plan_s"] = time.perf_counter() - start
        figures["plan"] = {"memory_needed_mb": plan.memory_needed / 2**20, "disk_needed_mb": plan.disk_needed / 2**20,
                           "seconds": plan.seconds}
        start, cpu = time.perf_counter(), cpu_s()
        trails = passes.run_pass(loaded.model, records, chosen.root, loaded.class_names, folder, identity)
        figures["pass_s"], figures["pass_cpu_s"] = time.perf_counter() - start, cpu_s() - cpu
        figures["rss_after_pass_mb"] = peak_rss_mb()
        diagnosis_report(trails)
        figures["held_bytes_per_image"] = trails.held_bytes() / len(trails)
        figures["disk_bytes_per_image"] = trails.pool_bytes() / len(trails)
        figures["pool_rows_per_image"] = trails.pools[0].boxes.shape[1]
        for name, knobs in (("box", {"box_score_thresh": 0.3}), ("rpn", {"rpn_post_nms_top_n_test": 300})):
            times = []
            for _ in range(2):
                start, cpu = time.perf_counter(), cpu_s()
                evaluate_setting(loaded.model, trails, knobs)
                times.append((time.perf_counter() - start, cpu_s() - cpu))
            figures[f"setting_{name}_s"], figures[f"setting_{name}_cpu_s"] = min(times)
    figures["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
