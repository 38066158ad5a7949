"""A synthetic dataset written in COCO, Pascal VOC or YOLO layout, from detector.scenes.

Deterministic by seed: image i is `make_scene(seed * 100_003 + i)`. Several classes, varied sizes
and aspect ratios, some empty images. Written exactly as annotation tools export: COCO
`images/` + `annotations.json`; VOC `JPEGImages/`, `Annotations/` (1-based pixel indices),
`ImageSets/Main/{train,val}.txt`; YOLO `images/` + `labels/` + `data.yaml` (normalised centres).
"""

from __future__ import annotations

import json
from pathlib import Path

from detector.scenes import CLASS_NAMES, make_scene

FORMATS = ("coco", "voc", "yolo")


def _scenes(images: int, seed: int, width: int, height: int):
    for i in range(images):
        # every 10th image is empty, so negatives are always present (make_scene adds a few more)
        yield i, make_scene(seed * 100_003 + i, width, height, empty_fraction=1.0 if i % 10 == 9 else 0.08)


def write_synthetic(
    out_dir: str | Path,
    images: int = 50,
    seed: int = 0,
    format: str = "coco",
    width: int = 320,
    height: int = 240,
    val_fraction: float = 0.2,
) -> Path:
    """Write `images` synthetic scenes to `out_dir` in the given layout; return `out_dir`."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: use coco, voc or yolo")
    if images < 1:
        raise ValueError("images must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_val = int(round(images * val_fraction)) if images > 1 else 0
    names = [f"synth_{i:05d}.jpg" for i in range(images)]
    split_of = ["val" if i >= images - n_val else "train" for i in range(images)]
    if format == "coco":
        _write_coco(out, images, seed, width, height, names)
    elif format == "voc":
        _write_voc(out, images, seed, width, height, names, split_of)
    else:
        _write_yolo(out, images, seed, width, height, names)
    return out


def _save(scene, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.image.save(path, format="JPEG", quality=90)


def _write_coco(out: Path, images: int, seed: int, width: int, height: int, names: list[str]) -> None:
    doc = {
        "info": {"description": f"detector synthetic dataset, seed {seed}"},
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)],
    }
    ann_id = 1
    for i, scene in _scenes(images, seed, width, height):
        _save(scene, out / "images" / names[i])
        doc["images"].append({"id": i + 1, "file_name": names[i], "width": width, "height": height})
        for (x1, y1, x2, y2), label in zip(scene.boxes, scene.labels):
            doc["annotations"].append({
                "id": ann_id, "image_id": i + 1, "category_id": label,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
            ann_id += 1
    (out / "annotations.json").write_text(json.dumps(doc))


def _write_voc(out: Path, images: int, seed: int, width: int, height: int, names: list[str], split_of: list[str]) -> None:
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    for i, scene in _scenes(images, seed, width, height):
        _save(scene, out / "JPEGImages" / names[i])
        objects = "".join(
            f"  <object>\n    <name>{CLASS_NAMES[label - 1]}</name>\n    <pose>Unspecified</pose>\n"
            f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
            f"      <xmin>{int(x1) + 1}</xmin>\n      <ymin>{int(y1) + 1}</ymin>\n"
            f"      <xmax>{int(x2)}</xmax>\n      <ymax>{int(y2)}</ymax>\n    </bndbox>\n  </object>\n"
            for (x1, y1, x2, y2), label in zip(scene.boxes, scene.labels)
        )
        xml = (
            f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{names[i]}</filename>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
            f"  <segmented>0</segmented>\n{objects}</annotation>\n"
        )
        (out / "Annotations" / (Path(names[i]).stem + ".xml")).write_text(xml)
    sets = out / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        stems = [Path(n).stem for n, s in zip(names, split_of) if s == split]
        (sets / f"{split}.txt").write_text("".join(s + "\n" for s in stems))


def _write_yolo(out: Path, images: int, seed: int, width: int, height: int, names: list[str]) -> None:
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for i, scene in _scenes(images, seed, width, height):
        _save(scene, out / "images" / names[i])
        lines = []
        for (x1, y1, x2, y2), label in zip(scene.boxes, scene.labels):
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            w, h = (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{label - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        (out / "labels" / (Path(names[i]).stem + ".txt")).write_text("".join(lines))
    yaml_names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES))
    (out / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\nnames:\n{yaml_names}\n")
