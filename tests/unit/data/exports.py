"""Datasets written the way real annotation tools write them, with the records they must load into.

Each builder writes one export into a folder and returns an `Export`: the folder and what a correct
loader must find (images, empty images, classes in order, every box in original xyxy pixels).
The layouts follow the tools' own writers:
- Datumaro's COCO exporter with all tasks (what CVAT uses): `images/<subset>/`, and per subset
  `annotations/{image_info,instances,captions,person_keypoints,labels,panoptic}_<subset>.json`,
  every file with licenses/info/categories/images/annotations; image_info has no annotations and no
  categories, captions have `caption` and category_id 0, keypoints carry the instance's bbox, panoptic
  has `segments_info` and PNGs under `annotations/panoptic_<subset>/`; bboxes rounded to 2 digits.
- CVAT's COCO 1.0: `annotations/instances_default.json`, `images/default/`, annotation `attributes`
  {occluded, rotation}, categories from 1 with an empty supercategory.
- Roboflow's COCO: `train/ valid/ test/`, each with `_annotations.coco.json` beside its images;
  category 0 is the project's parent (supercategory "none") and has no boxes; the others name it
  as their supercategory; README.dataset.txt and README.roboflow.txt at the top.
- Label Studio's COCO: `result.json` + `images/`, file_name "images/<name>", categories from 0
  sorted by name, float bboxes (percent of the size times the size), `ignore: 0`.
- Pascal VOC devkit: `VOCdevkit/VOC2007/{Annotations,JPEGImages,ImageSets/Main}`, 1-based integer
  boxes; negative images have no XML but are listed in ImageSets/Main/{train,val,trainval}.txt and
  in the per-class lists with -1.
- CVAT's Pascal VOC 1.1 (Datumaro's VOC exporter): `str(x)` of float zero-based coordinates
  (`<xmin>0.0</xmin>`), `labelmap.txt`, `ImageSets/Main/default.txt` and `<label>_default.txt`,
  an XML with no object for a negative, empty SegmentationClass/ SegmentationObject/.
- Label Studio's VOC: `Annotations/` + `images/`, `int(x)` zero-based pixel coordinates, filename
  without extension, `<owner><name>Label Studio</name></owner>`.
- LabelImg's Pascal VOC (libs/pascal_voc_io.py PascalVocWriter, through label_file.py
  save_pascal_voc_format): each XML beside its image (LabelImg's default save folder), `<folder>` the
  image folder's name, `<filename>` with its extension, `<path>` the image's absolute path on the
  annotator's machine, `<source><database>Unknown</database></source>`, depth 3, `<segmented>0`,
  objects with `<pose>Unspecified</pose>`, `<truncated>` by its own rule (1 when ymax == height or
  ymin == 1, or xmax == width or xmin == 1) and `<difficult>`; `<annotation verified="yes">` for a
  verified image; lxml's pretty print with tabs, no XML declaration. Coordinates are `int()` of its
  canvas points, which are zero-based and kept within 0..width - 1 and 0..height - 1, xmin and ymin
  first raised to 1 (convert_points_to_bnd_box: "0-valued coordinates ... caused an error while
  training faster-rcnn"): zero-based whole numbers that are all >= 1.
- Ultralytics YOLO: `data.yaml` with `path:`, `train: images/train`, `val: images/val`, `test:`
  empty, names as a dict; an image without a label file and one with an empty label file (negatives).
- Roboflow's YOLOv8: `train/images`, `train/labels`, `valid/...`, `test/...`, data.yaml with
  `../train/images`, `nc`, names as a list and a `roboflow:` block.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

Box = tuple[float, float, float, float]


@dataclass
class Export:
    root: Path
    format: str
    classes: tuple[str, ...]
    boxes: dict[str, list[tuple[str, Box]]]  # image file (relative to the dataset root) -> (class, xyxy)
    splits: dict[str, int] = field(default_factory=dict)
    empty_images: int = 0
    base: str = ""  # the folder inside `root` that image files are relative to (VOCdevkit/VOC2007)


def image(path: Path, size: tuple[int, int], color=(90, 140, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def zip_folder(folder: Path, out: Path, top: str = "") -> Path:
    """The folder as a zip (DEFLATED, as the tools' download buttons give it), optionally under `top/`."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, (f"{top}/" if top else "") + p.relative_to(folder).as_posix())
    return out


def _json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))


# ------------------------------------------------------------------------------------------- COCO

def _datumaro_header() -> dict:
    return {"licenses": [{"name": "", "id": 0, "url": ""}],
            "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""}}


def _datumaro_image(i: int, name: str, size) -> dict:
    return {"id": i, "width": size[0], "height": size[1], "file_name": name, "license": 0, "flickr_url": "",
            "coco_url": "", "date_captured": 0}


def coco_all_tasks(root: Path) -> Export:
    """Datumaro's `coco` export with every task, two subsets; one negative image in train."""
    labels = ["person", "bicycle"]
    subsets = {
        "train": [("a.jpg", (80, 60), [("person", (0.0, 0.0, 20.25, 30.5)), ("bicycle", (30.5, 10.0, 49.5, 50.0))]),
                  ("b.jpg", (64, 48), [("bicycle", (10.0, 5.0, 54.0, 48.0))]),
                  ("c.jpg", (64, 48), [])],
        "val": [("d.jpg", (80, 60), [("person", (40.0, 12.0, 80.0, 60.0))])],
    }
    cats = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(labels)]
    boxes: dict[str, list] = {}
    image_id = 0
    for subset, items in subsets.items():
        docs = {task: dict(_datumaro_header(), categories=[], images=[], annotations=[])
                for task in ("image_info", "instances", "captions", "person_keypoints", "labels", "panoptic")}
        docs["instances"]["categories"] = [dict(c) for c in cats]
        docs["labels"]["categories"] = [dict(c) for c in cats]
        docs["person_keypoints"]["categories"] = [dict(c, keypoints=["nose", "tail"], skeleton=[[1, 2]]) for c in cats]
        docs["panoptic"]["categories"] = [dict(c, isthing=0) for c in cats]
        ann_id = 0
        for name, size, objs in items:
            image_id += 1
            image(root / "images" / subset / name, size)
            boxes[f"images/{subset}/{name}"] = objs
            for doc in docs.values():
                doc["images"].append(_datumaro_image(image_id, name, size))
            docs["captions"]["annotations"].append(
                {"id": image_id, "image_id": image_id, "category_id": 0, "caption": f"a photo {name}"})
            docs["labels"]["annotations"].append({"id": image_id, "image_id": image_id, "category_id": 1})
            segments = []
            for cls, (x1, y1, x2, y2) in objs:
                ann_id += 1
                bbox = [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
                docs["instances"]["annotations"].append({
                    "id": ann_id, "image_id": image_id, "category_id": labels.index(cls) + 1, "segmentation": [],
                    "area": bbox[2] * bbox[3], "bbox": bbox, "iscrowd": 0})
                if cls == "person":
                    docs["person_keypoints"]["annotations"].append({
                        "id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": [],
                        "area": bbox[2] * bbox[3], "bbox": bbox, "iscrowd": 0,
                        "keypoints": [x1 + 1, y1 + 1, 2, x2 - 1, y2 - 1, 2], "num_keypoints": 2})
                segments.append({"id": ann_id, "category_id": labels.index(cls) + 1, "area": bbox[2] * bbox[3],
                                 "bbox": bbox, "iscrowd": 0})
            if segments:
                stem = name.rsplit(".", 1)[0]
                mask = root / "annotations" / f"panoptic_{subset}" / f"{stem}.png"
                mask.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, (0, 0, 0)).save(mask)
                docs["panoptic"]["annotations"].append(
                    {"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
        for task, doc in docs.items():
            if task != "image_info" and not doc["annotations"]:
                continue  # datumaro skips a task with nothing in it (image_info is always written)
            _json(root / "annotations" / f"{task}_{subset}.json", doc)
    return Export(root, "coco", tuple(labels), boxes, {"train": 3, "val": 1}, empty_images=1)


def cvat_coco(root: Path) -> Export:
    """CVAT's COCO 1.0 export of one task (subset `default`), a negative frame listed without annotations."""
    labels = ["car", "pedestrian"]
    items = [("frame_000000.png", (96, 64), [("car", (0.0, 0.0, 40.37, 22.81)), ("pedestrian", (70.12, 30.0, 96.0, 64.0))]),
             ("frame_000001.png", (96, 64), [])]
    doc = dict(_datumaro_header(), categories=[{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(labels)],
               images=[], annotations=[])
    boxes = {}
    for i, (name, size, objs) in enumerate(items, start=1):
        image(root / "images" / "default" / name, size)
        doc["images"].append(_datumaro_image(i, name, size))
        boxes[f"images/default/{name}"] = objs
        for cls, (x1, y1, x2, y2) in objs:
            bbox = [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i,
                                       "category_id": labels.index(cls) + 1, "segmentation": [],
                                       "area": bbox[2] * bbox[3], "bbox": bbox, "iscrowd": 0,
                                       "attributes": {"occluded": False, "rotation": 0.0}})
    _json(root / "annotations" / "instances_default.json", doc)
    return Export(root, "coco", tuple(labels), boxes, {}, empty_images=1)


def roboflow_coco(root: Path) -> Export:
    """Roboflow's COCO export: split folders, `_annotations.coco.json`, parent category 0 without boxes."""
    cats = [{"id": 0, "name": "cells", "supercategory": "none"}, {"id": 1, "name": "Platelets", "supercategory": "cells"},
            {"id": 2, "name": "RBC", "supercategory": "cells"}, {"id": 3, "name": "WBC", "supercategory": "cells"}]
    splits = {
        "train": [("BloodImage_00001_jpg.rf.1a2b.jpg", [("RBC", (0.0, 10.0, 40.0, 50.0)), ("WBC", (50.0, 0.0, 96.0, 40.0))]),
                  ("BloodImage_00002_jpg.rf.3c4d.jpg", [("Platelets", (5.0, 5.0, 15.0, 15.0))]),
                  ("BloodImage_00003_jpg.rf.5e6f.jpg", [])],
        "valid": [("BloodImage_00010_jpg.rf.7a8b.jpg", [("RBC", (20.0, 20.0, 60.0, 60.0))])],
        "test": [("BloodImage_00020_jpg.rf.9c0d.jpg", [("WBC", (1.0, 2.0, 30.0, 40.0))])],
    }
    (root / "README.dataset.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "README.dataset.txt").write_text("# BCCD > 2020-01-01\nhttps://public.roboflow.ai/object-detection/bccd\n")
    (root / "README.roboflow.txt").write_text("This dataset was exported via roboflow.com\n")
    boxes = {}
    names = [c["name"] for c in cats]
    for split, items in splits.items():
        doc = {"info": {"year": "2020", "version": "1", "description": "Exported from roboflow.ai",
                        "contributor": "", "url": "https://public.roboflow.ai/datasets/bccd", "date_created": "2020-01-01T00:00:00+00:00"},
               "licenses": [{"id": 1, "url": "https://creativecommons.org/publicdomain/zero/1.0/", "name": "Public Domain"}],
               "categories": cats, "images": [], "annotations": []}
        for i, (name, objs) in enumerate(items):
            image(root / split / name, (96, 72))
            doc["images"].append({"id": i, "license": 1, "file_name": name, "height": 72, "width": 96,
                                  "date_captured": "2020-01-01T00:00:00+00:00"})
            boxes[f"{split}/{name}"] = objs
            for cls, (x1, y1, x2, y2) in objs:
                doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": names.index(cls),
                                           "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                           "segmentation": [], "iscrowd": 0})
        _json(root / split / "_annotations.coco.json", doc)
    return Export(root, "coco", ("Platelets", "RBC", "WBC"), boxes, {"train": 3, "val": 1, "test": 1}, empty_images=1)


def label_studio_coco(root: Path) -> Export:
    """Label Studio's COCO export: result.json, images/, categories from 0, percent-derived float boxes."""
    labels = ["Airplane", "Car"]  # sorted by name, ids 0 and 1
    items = [("images/5c0b1f2e-sky.jpg", (120, 90), [("Airplane", 12.5, 10.0, 40.0, 33.3333), ("Car", 0.0, 60.0, 25.0, 40.0)]),
             ("images/9d3a77e1-road.jpg", (100, 80), [("Car", 62.37, 51.11, 37.63, 48.89)])]
    doc = {"images": [], "categories": [{"id": i, "name": n} for i, n in enumerate(labels)], "annotations": [],
           "info": {"year": 2024, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "",
                    "date_created": "2024-05-01 10:00:00.000000"}}
    boxes = {}
    for i, (name, (w, h), objs) in enumerate(items):
        image(root / name, (w, h))
        doc["images"].append({"width": w, "height": h, "id": i, "file_name": name})
        boxes[name] = []
        for cls, px, py, pw, ph in objs:  # percent of the image, as Label Studio stores rectangles
            x, y, bw, bh = px / 100 * w, py / 100 * h, pw / 100 * w, ph / 100 * h
            doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": labels.index(cls),
                                       "segmentation": [], "bbox": [x, y, bw, bh], "ignore": 0, "iscrowd": 0,
                                       "area": bw * bh})
            boxes[name].append((cls, (x, y, x + bw, y + bh)))
    _json(root / "result.json", doc)
    return Export(root, "coco", tuple(labels), boxes, {})


# -------------------------------------------------------------------------------------------- VOC

def _voc_xml(filename: str, size, objs, coords, folder="VOC2007", extra_source="", owner="", attributes="") -> str:
    objects = "".join(
        f"\t<object>\n\t\t<name>{cls}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{coords(b[0], 'min')}</xmin>\n"
        f"\t\t\t<ymin>{coords(b[1], 'min')}</ymin>\n\t\t\t<xmax>{coords(b[2], 'max')}</xmax>\n"
        f"\t\t\t<ymax>{coords(b[3], 'max')}</ymax>\n\t\t</bndbox>\n{attributes}\t</object>\n"
        for cls, b in objs)
    return (f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{filename}</filename>\n"
            f"\t<source>\n\t\t<database>The VOC2007 Database</database>{extra_source}\n\t</source>\n{owner}"
            f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objects}</annotation>\n")


def voc_devkit_negatives(root: Path) -> Export:
    """VOC devkit layout; two negatives have no XML, listed in ImageSets/Main and the per-class lists."""
    base = root / "VOCdevkit" / "VOC2007"
    labels = ["cat", "dog"]
    items = {  # stem -> (size, objects as pixel edges, split)
        "000001": ((80, 60), [("dog", (0.0, 0.0, 40.0, 30.0)), ("cat", (50.0, 20.0, 80.0, 60.0))], "train"),
        "000002": ((64, 48), [("cat", (10.0, 10.0, 30.0, 40.0))], "train"),
        "000003": ((64, 48), [], "train"),  # negative: no XML
        "000004": ((80, 60), [("dog", (5.0, 6.0, 70.0, 50.0))], "val"),
        "000005": ((80, 60), [], "val"),  # negative: no XML
    }
    one_based = lambda v, kind: int(v) + 1 if kind == "min" else int(v)  # devkit: 1-based inclusive indices
    boxes = {}
    for stem, (size, objs, split) in items.items():
        image(base / "JPEGImages" / f"{stem}.jpg", size)
        boxes[f"JPEGImages/{stem}.jpg"] = objs
        if objs:
            xml = _voc_xml(f"{stem}.jpg", size, objs, one_based,
                           extra_source="\n\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>flickr</image>",
                           owner="\t<owner>\n\t\t<flickrid>NULL</flickrid>\n\t\t<name>NULL</name>\n\t</owner>\n")
            (base / "Annotations").mkdir(parents=True, exist_ok=True)
            (base / "Annotations" / f"{stem}.xml").write_text(xml)
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split in ("train", "val"):
        (main / f"{split}.txt").write_text("".join(f"{s}\n" for s, v in items.items() if v[2] == split))
    (main / "trainval.txt").write_text("".join(f"{s}\n" for s in items))
    for cls in labels:
        for split in ("train", "val", "trainval"):
            lines = [f"{s} {' 1' if any(c == cls for c, _ in v[1]) else '-1'}\n" for s, v in items.items()
                     if split == "trainval" or v[2] == split]
            (main / f"{cls}_{split}.txt").write_text("".join(lines))
    return Export(root, "voc", tuple(labels), boxes, {"train": 3, "val": 2}, empty_images=2, base="VOCdevkit/VOC2007")


def cvat_voc(root: Path) -> Export:
    """CVAT's Pascal VOC 1.1 export (Datumaro's exporter): zero-based float coordinates, str(float)."""
    labels = ["zebra", "apple"]  # label map order, not sorted
    items = [("img_0.jpg", (100, 75), [("zebra", (0.0, 0.0, 33.5, 20.25)), ("apple", (60.0, 40.5, 100.0, 75.0))]),
             ("img_1.jpg", (100, 75), [("apple", (12.0, 13.0, 50.0, 60.0))]),
             ("img_2.jpg", (100, 75), [])]
    attrs = "\t\t<attributes>\n\t\t\t<attribute>\n\t\t\t\t<name>rotation</name>\n\t\t\t\t<value>0.0</value>\n" \
            "\t\t\t</attribute>\n\t\t</attributes>\n"
    boxes = {}
    for name, size, objs in items:
        image(root / "JPEGImages" / name, size)
        boxes[f"JPEGImages/{name}"] = objs
        xml = _voc_xml(name, size, objs, lambda v, kind: str(float(v)), folder="", attributes=attrs,
                       extra_source="\n\t\t<annotation>Unknown</annotation>\n\t\t<image>Unknown</image>")
        xml = xml.replace("The VOC2007 Database", "Unknown")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name[:-4]}.xml").write_text(xml)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "default.txt").write_text("".join(f"{n[:-4]}\n" for n, _, _ in items))
    for cls in labels:
        (main / f"{cls}_default.txt").write_text("".join(
            f"{n[:-4]} {' 1' if any(c == cls for c, _ in objs) else '-1'}\n" for n, _, objs in items))
    for extra in ("Layout", "Action", "Segmentation"):
        (root / "ImageSets" / extra).mkdir(parents=True)
        (root / "ImageSets" / extra / "default.txt").write_text("")
    (root / "SegmentationClass").mkdir()
    (root / "SegmentationObject").mkdir()
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\nzebra:250,50,83::\n"
                                       "apple:51,221,255::\n")
    return Export(root, "voc", tuple(labels), boxes, {"default": 3}, empty_images=1)


def label_studio_voc(root: Path) -> Export:
    """Label Studio's VOC export: Annotations/ + images/, int() zero-based coordinates, filename without extension."""
    items = [("1a2b-street", (90, 60), [("car", (0.0, 30.0, 45.0, 60.0)), ("sign", (70.0, 2.0, 89.0, 20.0))]),
             ("3c4d-park", (90, 60), [("car", (10.0, 10.0, 20.0, 20.0))])]
    boxes = {}
    owner = "<owner>\n<flickrid>NULL</flickrid>\n<name>Label Studio</name>\n</owner>\n"
    for stem, size, objs in items:
        image(root / "images" / f"{stem}.jpg", size)
        boxes[f"images/{stem}.jpg"] = objs
        xml = _voc_xml(stem, size, objs, lambda v, kind: str(int(v)), folder="images", owner=owner,
                       extra_source="\n<annotation>COCO2017</annotation>\n<image>flickr</image>\n<flickrid>NULL</flickrid>")
        xml = xml.replace("The VOC2007 Database", "MyDatabase")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text('<?xml version="1.0" encoding="utf-8"?>' + xml)
    return Export(root, "voc", ("car", "sign"), boxes, {})


def labelimg_bndbox(points) -> tuple[int, int, int, int]:
    """LabelImg's LabelFile.convert_points_to_bnd_box: min and max of the canvas points, xmin and ymin
    raised to 1, then int() (truncation) of each."""
    x_min, y_min = max(min(x for x, _ in points), 1), max(min(y for _, y in points), 1)
    return int(x_min), int(y_min), int(max(x for x, _ in points)), int(max(y for _, y in points))


def labelimg_voc(root: Path) -> Export:
    """LabelImg's Pascal VOC: XML beside each image, absolute <path>, int() of zero-based canvas points, min 1."""
    folder, home = root / "photos", "/home/annotator/datasets/photos"
    items = [  # image, size, [(class, the rectangle's canvas points as drawn, difficult)], verified
        ("cat_001.jpg", (96, 72), [("cat", [(0.4, 0.0), (40.7, 0.0), (40.7, 33.2), (0.4, 33.2)], 0),
                                   ("dog", [(50.5, 20.25), (95.0, 20.25), (95.0, 71.0), (50.5, 71.0)], 1)], False),
        ("cat_002.jpg", (96, 72), [("cat", [(10.0, 12.9), (60.6, 12.9), (60.6, 50.0), (10.0, 50.0)], 0)], True),
    ]
    boxes = {}
    for name, (w, h), objs, verified in items:
        image(folder / name, (w, h))
        # what LabelImg's own reader (PascalVocReader) draws back: the written numbers as they stand
        boxes[name] = [(cls, tuple(float(v) for v in labelimg_bndbox(points))) for cls, points, _ in objs]
        objects = ""
        for cls, points, difficult in objs:
            x1, y1, x2, y2 = labelimg_bndbox(points)
            truncated = int(y2 == h or y1 == 1 or x2 == w or x1 == 1)
            objects += (f"\t<object>\n\t\t<name>{cls}</name>\n\t\t<pose>Unspecified</pose>\n"
                        f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>{int(bool(difficult))}</difficult>\n"
                        f"\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymin>{y1}</ymin>\n\t\t\t<xmax>{x2}</xmax>\n"
                        f"\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n\t</object>\n")
        top = '<annotation verified="yes">' if verified else "<annotation>"
        xml = (f"{top}\n\t<folder>photos</folder>\n\t<filename>{name}</filename>\n\t<path>{home}/{name}</path>\n"
               f"\t<source>\n\t\t<database>Unknown</database>\n\t</source>\n"
               f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
               f"\t<segmented>0</segmented>\n{objects}</annotation>\n")
        (folder / f"{name[:-4]}.xml").write_text(xml, encoding="utf-8")
    return Export(root, "voc", ("cat", "dog"), boxes, {}, base="photos")  # the one folder is the dataset


# ------------------------------------------------------------------------------------------- YOLO

def _yolo_line(cls_id: int, box: Box, size) -> str:
    x1, y1, x2, y2 = box
    w, h = size
    return f"{cls_id} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"


def ultralytics_yolo(root: Path) -> Export:
    """Ultralytics layout (as coco8.yaml): path/train/val/test keys, names as a dict, negatives."""
    names = ["person", "bicycle", "car"]
    items = {"train": [("im0.jpg", (96, 64), [("car", (0.0, 0.0, 48.0, 32.0)), ("person", (60.0, 10.0, 96.0, 64.0))]),
                       ("im1.jpg", (96, 64), [("bicycle", (12.0, 8.0, 36.0, 40.0))]),
                       ("im2.jpg", (96, 64), None)],  # negative without a label file
             "val": [("im3.jpg", (96, 64), [("person", (30.0, 20.0, 50.0, 60.0))]),
                     ("im4.jpg", (96, 64), [])]}  # negative with an empty label file
    boxes = {}
    for split, entries in items.items():
        for name, size, objs in entries:
            image(root / "images" / split / name, size)
            boxes[f"images/{split}/{name}"] = objs or []
            if objs is not None:
                label = root / "labels" / split / f"{name[:-4]}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(_yolo_line(names.index(c), b, size) for c, b in objs))
    (root / "data.yaml").write_text(
        "# Ultralytics dataset\npath: ../datasets/mine  # dataset root dir\ntrain: images/train  # train images\n"
        "val: images/val  # val images\ntest:  # test images (optional)\n\n# Classes\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return Export(root, "yolo", tuple(names), boxes, {"train": 3, "val": 2}, empty_images=2)


def roboflow_yolo(root: Path) -> Export:
    """Roboflow's YOLOv8 export: split folders with images/ and labels/, data.yaml names as a list."""
    names = ["helmet", "head", "person"]
    items = {"train": [("hard_hat_001_png.rf.aa.jpg", [("helmet", (10.0, 5.0, 30.0, 25.0)), ("person", (0.0, 0.0, 64.0, 48.0))])],
             "valid": [("hard_hat_002_png.rf.bb.jpg", [("head", (20.0, 10.0, 44.0, 30.0))])],
             "test": [("hard_hat_003_png.rf.cc.jpg", [("helmet", (1.0, 1.0, 9.0, 9.0))])]}
    boxes = {}
    for split, entries in items.items():
        for name, objs in entries:
            image(root / split / "images" / name, (64, 48))
            boxes[f"{split}/images/{name}"] = objs
            label = root / split / "labels" / f"{name[:-4]}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(_yolo_line(names.index(c), b, (64, 48)) for c, b in objs))
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 3\n"
        "names: ['helmet', 'head', 'person']\n\nroboflow:\n  workspace: joseph-nelson\n  project: hard-hat-workers\n"
        "  version: 2\n  license: Public Domain\n  url: https://universe.roboflow.com/joseph-nelson/hard-hat-workers/dataset/2\n")
    (root / "README.roboflow.txt").write_text("This dataset was exported via roboflow.com\n")
    return Export(root, "yolo", tuple(names), boxes, {"train": 1, "val": 1, "test": 1})


BUILDERS = {
    "coco_all_tasks": coco_all_tasks, "cvat_coco": cvat_coco, "roboflow_coco": roboflow_coco,
    "label_studio_coco": label_studio_coco, "voc_devkit_negatives": voc_devkit_negatives, "cvat_voc": cvat_voc,
    "label_studio_voc": label_studio_voc, "labelimg_voc": labelimg_voc, "ultralytics_yolo": ultralytics_yolo,
    "roboflow_yolo": roboflow_yolo,
}


def coco_2017_layout(root: Path) -> Export:
    """COCO's own download layout: train2017/ val2017/ test2017/ beside annotations/ with
    instances_, captions_ and person_keypoints_ files per split and image_info_test2017.json for the
    unannotated test images (which are not negatives); category ids with gaps, supercategories as COCO
    names them ("person" is its own supercategory)."""
    cats = [{"supercategory": "person", "id": 1, "name": "person"}, {"supercategory": "vehicle", "id": 3, "name": "car"},
            {"supercategory": "animal", "id": 18, "name": "dog"}]
    splits = {"train2017": [("000000000009.jpg", (64, 48), [("dog", (1.5, 2.25, 40.0, 30.0))]),
                            ("000000000025.jpg", (64, 48), [("car", (10.0, 10.0, 64.0, 48.0))])],
              "val2017": [("000000000139.jpg", (80, 60), [("car", (0.0, 0.0, 20.0, 20.0)), ("dog", (30.0, 30.0, 70.0, 55.0))])]}
    boxes = {}
    image_id = 0
    info = {"description": "COCO 2017 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2017,
            "contributor": "COCO Consortium", "date_created": "2017/09/01"}
    licenses = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "Attribution-NonCommercial-ShareAlike License"}]
    for split, items in splits.items():
        inst = {"info": info, "licenses": licenses, "images": [], "annotations": [], "categories": cats}
        caps = {"info": info, "licenses": licenses, "images": [], "annotations": []}
        kps = {"info": info, "licenses": licenses, "images": [], "annotations": [],
               "categories": [dict(cats[0], keypoints=["nose"], skeleton=[])]}
        for name, size, objs in items:
            image_id += 1
            image(root / split / name, size)
            boxes[f"{split}/{name}"] = objs
            entry = {"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}/{name}",
                     "height": size[1], "width": size[0], "date_captured": "2013-11-14 17:02:52", "id": image_id}
            for doc in (inst, caps, kps):
                doc["images"].append(entry)
            caps["annotations"].append({"image_id": image_id, "id": image_id, "caption": "a picture"})
            for cls, (x1, y1, x2, y2) in objs:
                inst["annotations"].append({"segmentation": [[x1, y1, x2, y1, x2, y2]], "area": (x2 - x1) * (y2 - y1) / 2,
                                            "iscrowd": 0, "image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                            "category_id": next(c["id"] for c in cats if c["name"] == cls),
                                            "id": len(inst["annotations"]) + 1})
        for task, doc in (("instances", inst), ("captions", caps), ("person_keypoints", kps)):
            _json(root / "annotations" / f"{task}_{split}.json", doc)
    test = {"info": info, "licenses": licenses, "images": [], "categories": cats}
    for i, name in enumerate(("000000000001.jpg", "000000000016.jpg")):
        image(root / "test2017" / name, (64, 48))
        test["images"].append({"license": 1, "file_name": name, "height": 48, "width": 64, "id": 900 + i,
                               "date_captured": "2013-11-14 17:02:52"})
    _json(root / "annotations" / "image_info_test2017.json", test)
    return Export(root, "coco", ("person", "car", "dog"), boxes, {"train": 2, "val": 1})


BUILDERS["coco_2017_layout"] = coco_2017_layout
