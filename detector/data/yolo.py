"""YOLO layout: images with one `.txt` per image (`class cx cy w h`, normalised to [0, 1]).

Layouts: Ultralytics `images/{train,val}` + `labels/{train,val}` + `data.yaml`; Roboflow
`train/images` + `train/labels` + `data.yaml`; CVAT YOLO 1.1 `obj_train_data/` (labels beside
images) + `obj.names`; Label Studio `images/` + `labels/` + `classes.txt`. A label file is found by
replacing the last `images` folder of the image's path with `labels`, or beside the image. An image
without a label file is a negative. Normalised centres become absolute xyxy pixels here, once,
using the image size from its header. Class id c is label c + 1.
"""

from __future__ import annotations

import posixpath

import yaml

from detector.data.coco import SPLIT_ALIASES
from detector.data.records import ImageRecord, Parsed, Problem
from detector.data.tree import FileTree, read_header
from detector.data.validation import box_problem, parse_number
from detector.wording import counted

NAME_FILES = ("data.yaml", "dataset.yaml", "data.yml", "obj.names", "classes.txt", "classes.names")


def looks_like_yolo(tree: FileTree) -> bool:
    if any(posixpath.basename(f).lower() in NAME_FILES for f in tree.files):
        return True
    return any("/labels/" in "/" + f.lower() and f.lower().endswith(".txt") for f in tree.files)


def _names_from_yaml(tree: FileTree, rel: str, problems: list[Problem]) -> list[str] | None:
    try:
        doc = yaml.safe_load((tree.root / rel).read_text(errors="replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem("error", rel, mark.line + 1 if mark else None, None, f"not valid YAML: {exc}".splitlines()[0], "file not used"))
        return None
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            return [str(v) for v in names.values()]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def class_names_for(tree: FileTree, problems: list[Problem]) -> tuple[list[str] | None, str | None]:
    """Class names from data.yaml (names: list or {id: name}), obj.names or classes.txt."""
    by_base = {}
    for f in tree.files:
        by_base.setdefault(posixpath.basename(f).lower(), []).append(f)
    for base in NAME_FILES:
        for rel in sorted(by_base.get(base, []), key=lambda r: r.count("/")):
            if base.endswith((".yaml", ".yml")):
                names = _names_from_yaml(tree, rel, problems)
            else:
                names = [l.strip() for l in (tree.root / rel).read_text(errors="replace").splitlines() if l.strip()]
            if names:
                return names, rel
    return None, None


def label_file_for(tree: FileTree, image: str) -> str | None:
    """The label file of an image: `.../images/x.jpg` -> `.../labels/x.txt`, else `x.txt` beside it."""
    stem = posixpath.splitext(image)[0]
    parts = stem.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i].lower() == "images":
            candidate = "/".join(parts[:i] + ["labels"] + parts[i + 1:]) + ".txt"
            found = tree.exists(candidate)
            if found:
                return found
            break
    return tree.exists(stem + ".txt")


def _split_of(path: str) -> str | None:
    for part in path.lower().split("/")[:-1]:
        part = part.removeprefix("obj_").removesuffix("_data")
        if part in SPLIT_ALIASES:
            return SPLIT_ALIASES[part]
    return None


def parse_label_line(text: str, num_classes: int | None) -> tuple[int, tuple[float, float, float, float]] | str:
    """(class id, (cx, cy, w, h)) for one label line, or the message saying what is wrong."""
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields (class cx cy w h), found {len(fields)}"
    cls = parse_number(fields[0])
    if cls is None or cls != int(cls):
        return f"class id {fields[0]!r} is not a whole number"
    if cls < 0 or (num_classes is not None and cls >= num_classes):
        return f"unknown class id {int(cls)} ({counted(num_classes, 'class')})"
    values = [parse_number(v) for v in fields[1:]]
    if any(v is None for v in values):
        return f"coordinates are not finite numbers: {' '.join(fields[1:])}"
    return int(cls), tuple(values)  # type: ignore[return-value]


def load_yolo(tree: FileTree) -> Parsed:
    """Records, problems and splits of a YOLO layout."""
    problems: list[Problem] = []
    names, names_file = class_names_for(tree, problems)
    if names is None:
        problems.append(Problem("warning", None, None, None, "no data.yaml, obj.names or classes.txt with class names",
                                "classes named class_0, class_1, ... from the ids used"))
    records: list[ImageRecord] = []
    splits: dict[str, list[int]] = {}
    used_labels: set[str] = set()
    max_class = -1
    for image in tree.images():
        label_rel = label_file_for(tree, image)
        header = read_header(tree.root, image, posixpath.splitext(posixpath.basename(image))[0])
        if isinstance(header, Problem):
            problems.append(header)
            if label_rel:
                used_labels.add(label_rel)
            continue
        width, height = header.width, header.height
        boxes, labels = [], []
        if label_rel:
            used_labels.add(label_rel)
            lines = (tree.root / label_rel).read_text(errors="replace").splitlines()
            for n, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                parsed = parse_label_line(text, len(names) if names else None)
                if isinstance(parsed, str):
                    problems.append(Problem("warning", label_rel, n, None, parsed, "line left out"))
                    continue
                cls, (cx, cy, w, h) = parsed
                max_class = max(max_class, cls)
                box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
                issue = box_problem(box, width, height, file=label_rel, line=n)
                if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
                    action = issue.action if issue else "box kept"
                    problems.append(Problem("warning", label_rel, n, None,
                                            f"values outside [0, 1]: {' '.join(text.split()[1:])}", action))
                elif issue:
                    problems.append(issue)
                boxes.append(box)
                labels.append(cls + 1)
        split = _split_of(image)
        if split:
            splits.setdefault(split, []).append(len(records))
        records.append(ImageRecord(image, width, height, tuple(boxes), tuple(labels), posixpath.splitext(image)[0]))
    for rel in tree.with_suffix(".txt"):
        if rel in used_labels or "/labels/" not in "/" + rel.lower():
            continue
        problems.append(Problem("warning", rel, None, None, "label file without a matching image", "file not used"))
    class_names = list(names) if names else [f"class_{i}" for i in range(max_class + 1)]
    out_splits = {k: tuple(v) for k, v in splits.items()} or None
    return Parsed(tuple(class_names), records, problems, out_splits)
