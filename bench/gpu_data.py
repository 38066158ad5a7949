"""Training sets for bench/gpu.py: the demo's synthetic scenes, and COCO-like JPEGs, at any count.

A pool of distinct scenes is written by `detector.data.synthetic.write_synthetic` (COCO layout),
then repeated under new file names into one COCO set of the size a benchmark needs (every file
is decoded on its own: nothing is cached between names). `coco_like` adds film-grain noise
before encoding, so a 640x480 JPEG at quality 90 weighs about what a COCO photo does (COCO
val2017: about 160 KB at about 580x480 on average) and decodes at about the same cost; the
plain scenes are flat shapes and much smaller. Needs PIL and numpy only (no torch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from detector.data.synthetic import write_synthetic


def texture(pool: Path, seed: int = 0, sigma: float = 18.0) -> None:
    """Give every JPEG of a COCO pool film-grain noise (in place, quality 90): photo-like entropy."""
    rng = np.random.default_rng(seed)
    for path in sorted((pool / "images").glob("*.jpg")):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        grain = rng.normal(0.0, sigma, size=pixels.shape[:2] + (1,)).astype(np.float32)
        noisy = np.clip(pixels + grain + rng.normal(0.0, sigma / 3, size=pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path, format="JPEG", quality=90)


def replicated_set(out: Path, images: int, width: int, height: int, pool: int = 48, seed: int = 7,
                   coco_like: bool = False) -> Path:
    """A COCO folder of `images` JPEGs: `pool` distinct scenes repeated under names of their own.

    Returns `out`; `pool_dir(out)` beside it is the pool itself (a COCO set too, for --val-data).
    Reused when `out` already holds a set of this size.
    """
    out = Path(out)
    marker = out / "annotations.json"
    if marker.is_file() and len(json.loads(marker.read_text())["images"]) == images:
        return out
    for folder in (out, pool_dir(out)):
        if folder.exists():
            shutil.rmtree(folder)
    source = write_synthetic(pool_dir(out), images=min(pool, images), seed=seed, width=width, height=height)
    if coco_like:
        texture(source, seed)
    doc = json.loads((source / "annotations.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    (out / "images").mkdir(parents=True)
    new = {"info": {"description": f"{images} images repeated from a pool of {len(doc['images'])} (bench/gpu_data.py)"},
           "images": [], "annotations": [], "categories": doc["categories"]}
    ann_id = 1
    for k in range(images):
        entry = doc["images"][k % len(doc["images"])]
        name = f"r{k:05d}_{entry['file_name']}"
        shutil.copyfile(source / "images" / entry["file_name"], out / "images" / name)
        new["images"].append({**entry, "id": k + 1, "file_name": name})
        for ann in by_image.get(entry["id"], []):
            new["annotations"].append({**ann, "id": ann_id, "image_id": k + 1})
            ann_id += 1
    marker.write_text(json.dumps(new))
    return out


def pool_dir(out: Path) -> Path:
    """The pool of distinct scenes a replicated set was made from (a COCO folder beside it)."""
    return Path(out).with_name(Path(out).name + "-pool")


def mean_file_kb(root: Path) -> float:
    """Mean JPEG size of a COCO folder's images, KB."""
    sizes = [p.stat().st_size for p in (Path(root) / "images").glob("*.jpg")]
    return sum(sizes) / max(len(sizes), 1) / 1024
