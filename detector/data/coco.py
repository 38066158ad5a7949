"""COCO detection layout: `images/` + `annotations.json`, CVAT's `annotations/instances_*.json`,
Roboflow's split folders with `_annotations.coco.json`.

COCO boxes are [x, y, width, height] in absolute pixels; they become [x1, y1, x2, y2] once, here.
Categories are ordered by id; label id = position + 1. Roboflow's parent category (the one that is
only a supercategory of the others and has no annotations) is not a class.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from detector.data.records import IgnoredFile, ImageRecord, Parsed, Problem
from detector.data.tree import FileTree, read_header
from detector.data.validation import box_problem, parse_number

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def _peek_is_coco(path: Path) -> bool:
    """A cheap look at the start of a JSON file: does it mention COCO's top-level keys?"""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return b'"images"' in head or b'"annotations"' in head or b'"categories"' in head


def find_annotation_files(tree: FileTree) -> list[str]:
    """JSON files that look like COCO annotations (content checked, not only the name)."""
    found = []
    for rel in tree.with_suffix(".json"):
        name = posixpath.basename(rel).lower()
        if name in ("notes.json", "package.json", "labelmap.json") or name.endswith(".schema.json"):
            continue
        if _peek_is_coco(tree.root / rel):
            found.append(rel)
    return found


def _task_stem(rel: str) -> str:
    """The file's stem without its COCO task prefix: instances_val2017.json -> val2017."""
    stem = posixpath.basename(rel).split(".")[0].lower()
    for prefix in [t + "_" for t in TASKS] + ["annotations_"]:
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def split_name(rel: str) -> str | None:
    """The split a COCO file belongs to: instances_val.json -> val, train/_annotations.coco.json -> train."""
    stem = _task_stem(rel)
    if stem.rstrip("0123456789") in SPLIT_ALIASES:
        return SPLIT_ALIASES[stem.rstrip("0123456789")]
    parent = posixpath.basename(posixpath.dirname(rel)).lower()
    if parent in SPLIT_ALIASES:
        return SPLIT_ALIASES[parent]
    return stem or None


def _class_names(categories: list, used: set, rel: str, problems: list[Problem]) -> tuple[list[str], dict]:
    """Class names in category-id order and a map category id -> name."""
    cats = []
    for c in categories:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            problems.append(Problem("warning", rel, None, None, f"category entry without id or name: {str(c)[:80]}", "category left out"))
            continue
        cats.append(c)
    def roboflow_parent(c: dict) -> bool:
        """Roboflow's project category: never annotated, every other category names it as its supercategory
        (COCO's own "person" has supercategory "person" too, but is a class)."""
        others = [o for o in cats if o is not c]
        return (c["id"] not in used and bool(others)
                and all(str(o.get("supercategory")) == str(c["name"]) for o in others))

    names_by_id: dict = {}
    order: list[str] = []
    for c in sorted(cats, key=lambda c: (parse_number(c["id"]) is None, parse_number(c["id"]) or 0, str(c["id"]))):
        name = str(c["name"])
        if roboflow_parent(c):
            continue
        if c["id"] in names_by_id:
            problems.append(Problem("warning", rel, None, c["id"], f"duplicate category id {c['id']}", "first definition kept"))
            continue
        names_by_id[c["id"]] = name
        if name not in order:
            order.append(name)
    return order, names_by_id


def read_coco_json(tree: FileTree, rel: str, problems: list[Problem]) -> dict | None:
    """One COCO JSON file parsed, or None with the error recorded."""
    try:
        with open(tree.root / rel, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        problems.append(Problem("error", rel, exc.lineno, None, f"not valid JSON: {exc.msg} (column {exc.colno})", "file not used"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("error", rel, None, None, f"cannot read the file: {exc}", "file not used"))
        return None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        problems.append(Problem("error", rel, None, None, "not a COCO detection file: no \"images\" list", "file not used"))
        return None
    return data


# COCO's annotation tasks, by the file-name prefix the COCO site and Datumaro (CVAT) give them.
TASKS = ("instances", "person_keypoints", "stuff", "panoptic", "captions", "labels", "image_info")
_TASK_REASONS = {
    "person_keypoints": "person keypoints task: its boxes repeat the instances file's ({used})",
    "stuff": "stuff segmentation task: regions of background classes, not objects ({used} holds the boxes)",
    "panoptic": "panoptic segmentation task (segments_info and PNG masks), not boxes ({used} holds the boxes)",
    "captions": "captions task: text per image, no boxes",
    "labels": "image-level labels task: no boxes",
    "image_info": "lists images only, no annotations (like COCO's image_info test files): not ground truth",
}


def coco_task(rel: str, data: dict) -> str:
    """The COCO task a file holds: from its name (instances_train.json), else from its annotations."""
    stem = posixpath.basename(rel).lower()
    for task in TASKS:
        if stem.startswith(task + "_"):
            return task
    anns = [a for a in data.get("annotations") or () if isinstance(a, dict)] if isinstance(data.get("annotations"), list) else []
    for key, task in (("segments_info", "panoptic"), ("caption", "captions"), ("keypoints", "person_keypoints"),
                      ("bbox", "instances")):
        if any(key in a for a in anns):
            return task
    return "labels" if anns else "image_info"


def load_coco_file(tree: FileTree, rel: str, id_prefix: str = "", data: dict | None = None
                   ) -> tuple[list[str], list[ImageRecord], list[Problem]]:
    """Parse one COCO JSON file: (class names, records, problems).

    Labels in the returned records index into the returned class names (1-based).
    """
    problems: list[Problem] = []
    if data is None:
        data = read_coco_json(tree, rel, problems)
        if data is None:
            return [], [], problems
    annotations = data.get("annotations") if isinstance(data.get("annotations"), list) else []
    if "annotations" not in data:
        problems.append(Problem("warning", rel, None, None, "no \"annotations\" list: every image is empty", "images kept as negatives"))
    categories = data.get("categories") if isinstance(data.get("categories"), list) else []
    used = {a.get("category_id") for a in annotations if isinstance(a, dict)}
    class_names, cat_name = _class_names(categories, used, rel, problems)
    label_of = {cid: class_names.index(name) + 1 for cid, name in cat_name.items()}

    images, order = _coco_images(tree, rel, data["images"], id_prefix, problems)
    _coco_annotations(rel, annotations, images, label_of, problems)

    records = [
        ImageRecord(img[0], img[1], img[2], tuple(img[3]), tuple(img[4]), f"{id_prefix}{iid}" if id_prefix else iid)
        for iid in order
        for img in (images[iid],)
    ]
    return class_names, records, problems


def _coco_images(tree: FileTree, rel: str, entries: list, id_prefix: str,
                 problems: list[Problem]) -> tuple[dict, list]:
    """COCO's "images" of file `rel`: each located, its header read, its size checked against the entry's.
    Returns (image id -> [file, width, height, boxes, labels], or None when left out; ids in order)."""
    folder = posixpath.dirname(rel)
    parent = posixpath.dirname(folder)
    split = split_name(rel) or ""
    raw = _task_stem(rel)  # val2017 in instances_val2017.json: COCO's own image folder name
    bases = [folder, posixpath.join(folder, "images"), posixpath.join(parent, "images"),
             posixpath.join(parent, "images", split), "images", posixpath.join("images", split), "", parent,
             posixpath.join(parent, raw), posixpath.join(parent, "images", raw)]
    images: dict = {}  # id -> [file, width, height, boxes, labels]
    order: list = []
    seen_files: dict[str, object] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry or not entry.get("file_name"):
            problems.append(Problem("warning", rel, None, entry.get("id") if isinstance(entry, dict) else None,
                                    f"image entry without id or file_name: {str(entry)[:80]}", "image left out"))
            continue
        image_id = entry["id"]
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            problems.append(Problem("warning", rel, None, None, f"image id is not a number or text: {str(image_id)[:40]}",
                                    "image left out"))
            continue
        if image_id in images:
            problems.append(Problem("warning", rel, None, image_id, f"duplicate image id {image_id} ({entry['file_name']})",
                                    "first entry kept, this one left out"))
            continue
        found = tree.locate(str(entry["file_name"]), bases)
        if found is None:
            problems.append(Problem("warning", rel, None, image_id, f"image file not found: {entry['file_name']}", "image left out"))
            images[image_id] = None
            continue
        if found in seen_files:
            problems.append(Problem("warning", rel, None, image_id,
                                    f"{found} is listed twice (image ids {seen_files[found]} and {image_id})",
                                    "first entry kept, this one left out"))
            images[image_id] = None
            continue
        header = read_header(tree.root, found, id_prefix + str(image_id) if id_prefix else image_id)
        if isinstance(header, Problem):
            problems.append(header)
            images[image_id] = None
            continue
        seen_files[found] = image_id
        aw, ah = parse_number(entry.get("width")), parse_number(entry.get("height"))
        if (aw is not None and ah is not None) and (int(aw), int(ah)) != (header.width, header.height):
            problems.append(Problem("warning", found, None, image_id,
                                    f"annotation says {int(aw)}x{int(ah)}, the image file is {header.width}x{header.height}",
                                    "the file's size is used; boxes are checked against it"))
        images[image_id] = [found, header.width, header.height, [], []]
        order.append(image_id)

    return images, order



def _coco_annotations(rel: str, annotations: list, images: dict, label_of: dict, problems: list[Problem]) -> None:
    """COCO's "annotations" into `images`' boxes and labels: a known image and category, four finite
    numbers, then the common box checks; crowd regions are left out."""
    seen_ann: set = set()
    for ann in annotations:
        if not isinstance(ann, dict):
            problems.append(Problem("warning", rel, None, None, f"annotation is not an object: {str(ann)[:80]}", "annotation left out"))
            continue
        aid = ann.get("id")
        if isinstance(aid, (int, str)):
            if aid in seen_ann:
                problems.append(Problem("warning", rel, None, aid, f"duplicate annotation id {aid}", "both annotations kept"))
            seen_ann.add(aid)
        iid = ann.get("image_id")
        if not isinstance(iid, (int, str)) or iid not in images:
            problems.append(Problem("warning", rel, None, aid, f"annotation {aid} refers to unknown image id {iid}", "annotation left out"))
            continue
        image = images[iid]
        if image is None:
            continue  # its image was already reported and left out
        cid = ann.get("category_id")
        if not isinstance(cid, (int, str)) or cid not in label_of:
            problems.append(Problem("warning", image[0], None, aid,
                                    f"annotation {aid} has unknown category id {ann.get('category_id')}", "annotation left out"))
            continue
        if ann.get("iscrowd") in (1, True):
            problems.append(Problem("warning", image[0], None, aid,
                                    f"annotation {aid} is a crowd region (iscrowd=1)",
                                    "annotation left out (as torchvision's COCO training does)"))
            continue
        bbox = ann.get("bbox")
        values = [parse_number(v) for v in bbox] if isinstance(bbox, (list, tuple)) else []
        if len(values) != 4 or any(v is None for v in values):
            problems.append(Problem("warning", image[0], None, aid,
                                    f"annotation {aid} bbox is not four finite numbers: {str(bbox)[:80]}", "annotation left out"))
            continue
        x, y, w, h = values  # type: ignore[misc]
        box = (x, y, x + w, y + h)
        issue = box_problem(box, image[1], image[2], file=image[0], id=aid)
        if issue:
            problems.append(issue)
        image[3].append(box)
        image[4].append(label_of[ann["category_id"]])



def choose_files(tasks: dict[str, str]) -> tuple[list[str], list[IgnoredFile]]:
    """The files that give the boxes, and the others with why: instances files when there are any,
    else keypoints, else stuff files (their boxes are the only ones), else the image lists."""
    used: list[str] = []
    for wanted in ("instances", "person_keypoints", "stuff", "labels", "image_info"):
        used = [rel for rel, task in tasks.items() if task == wanted]
        if used:
            break
    names = ", ".join(posixpath.basename(u) for u in used) or "no file"
    ignored = [IgnoredFile(rel, _TASK_REASONS.get(task, f"{task} task").format(used=names))
               for rel, task in tasks.items() if rel not in used]
    return used, ignored


def load_coco(tree: FileTree, files: list[str] | None = None) -> Parsed:
    """Load the COCO files in the tree that hold boxes; name the others (other tasks) as ignored.

    Several files (splits) are merged: classes united by name in first-seen order, image ids
    prefixed with the split name, each image file counted once (a listing with boxes wins over
    one without).
    """
    files = files if files is not None else find_annotation_files(tree)
    problems: list[Problem] = []
    docs: dict[str, dict] = {}
    for rel in files:
        data = read_coco_json(tree, rel, problems)
        if data is not None:
            docs[rel] = data
    used, ignored = choose_files({rel: coco_task(rel, data) for rel, data in docs.items()})
    class_names: list[str] = []
    records: list[ImageRecord] = []
    split_of: list[str] = []
    where: dict[str, int] = {}
    multi = len(used) > 1
    for rel in used:
        split = split_name(rel) or posixpath.splitext(posixpath.basename(rel))[0]
        names, recs, probs = load_coco_file(tree, rel, id_prefix=f"{split}/" if multi else "", data=docs[rel])
        problems.extend(probs)
        for n in names:
            if n not in class_names:
                class_names.append(n)
        remap = {i + 1: class_names.index(n) + 1 for i, n in enumerate(names)}
        for r in recs:
            record = ImageRecord(r.file, r.width, r.height, r.boxes, tuple(remap[l] for l in r.labels), r.image_id)
            if r.file in where:
                earlier = records[where[r.file]]
                if not earlier.boxes and r.boxes:  # the listing that annotates the image wins
                    records[where[r.file]], split_of[where[r.file]] = record, split
                    action = "this listing (with boxes) kept, the earlier one without boxes left out"
                else:
                    action = "first listing kept"
                problems.append(Problem("warning", rel, None, r.image_id,
                                        f"{r.file} is already listed in another annotation file", action))
                continue
            where[r.file] = len(records)
            records.append(record)
            split_of.append(split)
    splits: dict[str, list[int]] = {}
    for i, split in enumerate(split_of):
        splits.setdefault(split, []).append(i)
    out_splits = {k: tuple(v) for k, v in splits.items()} if multi else None
    return Parsed(tuple(class_names), records, problems, out_splits, ignored_files=tuple(ignored))
