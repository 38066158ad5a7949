"""Pascal VOC layout: `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/*.txt` (CVAT adds
`labelmap.txt`; Label Studio writes `images/`; Roboflow puts XML beside the images in split folders).

Coordinates: the VOC devkit stores 1-based inclusive pixel indices, so [xmin - 1, ymin - 1, xmax,
ymax] are the pixel edges. Other writers store zero-based or fractional edges (CVAT/Datumaro write
`str(float)`: `<xmin>0.0</xmin>`; Label Studio writes `int()` of its zero-based pixels; LabelImg
writes `int()` of its zero-based canvas points, xmin and ymin first raised to 1 so that a devkit
reader's - 1 stays >= 0: whole numbers >= 1 that are not 1-based), which are the edges as they
stand. The convention is decided once per dataset (`decide_coordinates`): Label Studio's or
LabelImg's signature (`writer`), or any coordinate that cannot be a 1-based index (below 1, or a
fraction), means zero-based; otherwise the devkit's one-based. It can be forced, and the report
says which was used and why.

Negatives: an image with no objects often has no XML at all. An image listed in ImageSets/Main (or,
without ImageSets, present in JPEGImages/) that has no XML is kept as a negative, and counted.

Class order is sorted by name unless a label map (`labelmap.txt`, `classes.txt`) gives it.
XML is parsed with defusedxml: no DTD entity expansion, no external entities.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from detector.data.coco import SPLIT_ALIASES
from detector.data.records import DatasetRefused, ImageRecord, Parsed, Problem
from detector.data.tree import IMAGE_EXTENSIONS, FileTree, read_header
from detector.data.validation import box_problem, parse_number
from detector.wording import counted

MAX_XML_BYTES = 10 * 1024**2  # one image's annotation; anything bigger is not a VOC file


class _LineElement(ET.Element):
    sourceline: int | None = None


class _LineTreeBuilder(ET.TreeBuilder):
    """Records the source line of every element (`elem.sourceline`) for problem locations."""

    def __init__(self):
        super().__init__(element_factory=_LineElement)
        self.parser = None

    def start(self, tag, attrs):
        elem = super().start(tag, attrs)
        elem.sourceline = self.parser.parser.CurrentLineNumber if self.parser else None  # type: ignore[attr-defined]
        return elem


def parse_xml(data: bytes) -> ET.Element:
    """Parse XML safely (defusedxml): entity declarations and external references are refused."""
    builder = _LineTreeBuilder()
    parser = DefusedXMLParser(target=builder)
    builder.parser = parser
    parser.feed(data)
    return parser.close()


def _is_voc_xml(tree: FileTree, rel: str) -> bool:
    try:
        with open(tree.root / rel, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"<annotation" in head


def find_annotation_files(tree: FileTree) -> list[str]:
    return [rel for rel in tree.with_suffix(".xml") if _is_voc_xml(tree, rel)]


def _label_map(tree: FileTree) -> tuple[list[str] | None, str | None]:
    """Class order from CVAT's labelmap.txt (`name:color:parts:actions`) or a classes.txt."""
    for rel in tree.files:
        base = posixpath.basename(rel).lower()
        if base == "labelmap.txt":
            names = []
            for line in (tree.root / rel).read_text(errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name = line.split(":")[0].strip()
                if name and name.lower() != "background" and name not in names:
                    names.append(name)
            return names, rel
    for rel in tree.files:
        if posixpath.basename(rel).lower() in ("classes.txt", "obj.names", "labels.txt"):
            names = [l.strip() for l in (tree.root / rel).read_text(errors="replace").splitlines() if l.strip()]
            return names, rel
    return None, None


def _text(elem: ET.Element | None, tag: str) -> str | None:
    child = elem.find(tag) if elem is not None else None
    return child.text.strip() if child is not None and child.text else None


def _parse_one(tree: FileTree, rel: str, problems: list[Problem]):
    """(image file, width, height, [(box, name, line)]) for one XML file, or None if unusable."""
    path = tree.root / rel
    if path.stat().st_size > MAX_XML_BYTES:
        problems.append(Problem("warning", rel, None, None, f"XML file over {MAX_XML_BYTES // 1024**2} MiB", "file left out"))
        return None
    try:
        root = parse_xml(path.read_bytes())
    except DefusedXmlException as exc:  # hostile input: refuse the whole dataset
        raise DatasetRefused(
            f"{rel}: XML declares entities or references external ones ({type(exc).__name__}); dataset refused") from None
    except ET.ParseError as exc:
        problems.append(Problem("warning", rel, exc.position[0], None, f"not well-formed XML: {exc}", "file left out"))
        return None
    if root.tag != "annotation":
        return None
    stem = posixpath.splitext(posixpath.basename(rel))[0]
    folder = posixpath.dirname(rel)
    parent = posixpath.dirname(folder)
    filename = _text(root, "filename") or _text(root, "path") or ""
    bases = [posixpath.join(parent, "JPEGImages"), posixpath.join(parent, "images"), folder, "JPEGImages", "images", parent, ""]
    found = tree.locate(filename, bases) if filename else None
    if found is None:  # the XML's own name with an image extension
        for ext in IMAGE_EXTENSIONS:
            found = tree.locate(stem + ext, bases)
            if found:
                break
    if found is None:
        problems.append(Problem("warning", rel, getattr(root.find("filename"), "sourceline", None), stem,
                                f"image file not found: {filename or stem}", "image left out"))
        return None
    header = read_header(tree.root, found, stem)
    if isinstance(header, Problem):
        problems.append(header)
        return None
    size = root.find("size")
    aw, ah = parse_number(_text(size, "width")), parse_number(_text(size, "height"))
    if aw and ah and (int(aw), int(ah)) != (header.width, header.height):
        problems.append(Problem("warning", rel, getattr(size, "sourceline", None), stem,
                                f"annotation says {int(aw)}x{int(ah)}, {found} is {header.width}x{header.height}",
                                "the file's size is used; boxes are checked against it"))
    objects = []
    for obj in root.findall("object"):
        line = getattr(obj, "sourceline", None)
        name = _text(obj, "name")
        bnd = obj.find("bndbox")
        raw = [_text(bnd, k) for k in ("xmin", "ymin", "xmax", "ymax")]
        values = [parse_number(v) for v in raw]
        if not name:
            problems.append(Problem("warning", rel, line, stem, "object without a <name>", "box left out"))
            continue
        if bnd is None or any(v is None for v in values):
            problems.append(Problem("warning", rel, line, stem, f"{name}: bndbox is not four finite numbers: {raw}", "box left out"))
            continue
        objects.append((tuple(values), name, line))  # as written; the convention is decided per dataset
    return found, header.width, header.height, objects, writer(root)


# the writers whose whole-number coordinates are zero-based, as `writer` names them
ZERO_BASED_WRITERS = {
    "Label Studio": "which stores int() of its zero-based pixels",
    "LabelImg": "which stores int() of its zero-based canvas points, xmin and ymin raised to at least 1",
}


def writer(root: ET.Element) -> str | None:
    """The tool that wrote an annotation, where its layout says so: "Label Studio" (`<owner><name>`),
    "LabelImg" (libs/pascal_voc_io.py's layout: an absolute `<path>` to the image on the annotator's
    machine and a `<source>` holding only `<database>Unknown</database>`, no `<owner>`), else None."""
    if _text(root.find("owner"), "name") == "Label Studio":
        return "Label Studio"
    source, path = root.find("source"), _text(root, "path") or ""
    absolute = path.startswith("/") or re.match(r"[A-Za-z]:[\\/]|\\\\", path) is not None
    if (absolute and root.find("owner") is None and source is not None
            and [child.tag for child in source] == ["database"] and _text(source, "database") == "Unknown"):
        return "LabelImg"
    return None


def decide_coordinates(parsed: list, forced: str = "auto") -> tuple[str, str]:
    """(convention, why) for a whole dataset: 'one-based' (the devkit's) or 'zero-based'."""
    if forced != "auto":
        return forced, f"{forced}, as asked (--voc-coordinates {forced})"
    for rel, (_, _, _, objects, tool) in parsed:
        if tool in ZERO_BASED_WRITERS:
            return "zero-based", f"zero-based: {rel} was written by {tool}, {ZERO_BASED_WRITERS[tool]}"
    for rel, (_, _, _, objects, _) in parsed:
        for values, name, line in objects:
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), values):
                if v < 1 or v != int(v):
                    where = f"{rel}:{line}" if line else rel
                    return "zero-based", (f"zero-based: {where} has {tag} {v:g}, which cannot be a 1-based pixel "
                                          "index (a writer of zero-based or fractional coordinates)")
    return "one-based", ("one-based (the VOC devkit's convention: xmin - 1 and ymin - 1 are the pixel edges): every "
                         "coordinate is a whole number of at least 1")


def to_edges(values: tuple, convention: str) -> tuple[float, float, float, float]:
    """The pixel edges [x1, y1, x2, y2] of a VOC bndbox in the given convention."""
    xmin, ymin, xmax, ymax = values
    if convention == "one-based":
        return (xmin - 1.0, ymin - 1.0, xmax, ymax)
    return (xmin, ymin, xmax, ymax)


def load_voc(tree: FileTree, voc_coordinates: str = "auto") -> Parsed:
    """Records, problems and splits for every VOC XML file in the tree, plus the negatives without XML."""
    problems: list[Problem] = []
    parsed = []
    for rel in find_annotation_files(tree):
        one = _parse_one(tree, rel, problems)
        if one:
            parsed.append((rel, one))
    convention, why = decide_coordinates(parsed, voc_coordinates)
    names, map_file = _label_map(tree)
    seen_names = sorted({name for _, (_, _, _, objs, _) in parsed for _, name, _ in objs})
    class_names = list(names) if names else seen_names
    records: list[ImageRecord] = []
    seen_files: dict[str, str] = {}
    for rel, (file, width, height, objects, _) in parsed:
        stem = posixpath.splitext(posixpath.basename(rel))[0]
        if file in seen_files:
            problems.append(Problem("warning", rel, None, stem, f"{file} is already annotated by {seen_files[file]}", "first annotation kept"))
            continue
        seen_files[file] = rel
        boxes, labels = [], []
        for values, name, line in objects:
            if name not in class_names:
                problems.append(Problem("warning", rel, line, stem, f"unknown class {name!r} (not in {map_file})", "box left out"))
                continue
            box = to_edges(values, convention)
            issue = box_problem(box, width, height, file=rel, line=line, id=stem)
            if issue:
                problems.append(issue)
            boxes.append(box)
            labels.append(class_names.index(name) + 1)
        records.append(ImageRecord(file, width, height, tuple(boxes), tuple(labels), stem))
    negatives, where = _negatives_without_xml(tree, records, problems)
    records.extend(negatives)
    notes = []
    if negatives:
        notes.append(f"{counted(len(negatives), 'image')} without an XML file ({where}) kept as negative images")
    splits = _image_sets(tree, records)
    return Parsed(tuple(class_names), records, problems, splits, notes=tuple(notes), voc_coordinates=(convention, why))


def _set_lists(tree: FileTree) -> list[str]:
    """ImageSets/Main split lists (train.txt, val.txt, trainval.txt, CVAT's default.txt), not the
    per-class lists (cat_train.txt)."""
    return [rel for rel in tree.files
            if "/imagesets/main/" in "/" + rel.lower() and rel.lower().endswith(".txt")
            and "_" not in posixpath.splitext(posixpath.basename(rel))[0]]


def _negatives_without_xml(tree: FileTree, records: list[ImageRecord], problems: list[Problem]
                           ) -> tuple[list[ImageRecord], str]:
    """Images with no XML: listed in ImageSets/Main, or (no ImageSets) in JPEGImages/; (records, where)."""
    have = {r.file for r in records} | {r.image_id for r in records}
    candidates: dict[str, tuple[str, str, int | None]] = {}  # image file -> (stem, where listed, line)
    lists = _set_lists(tree)
    for rel in lists:
        voc_root = rel[: rel.lower().rindex("imagesets/main/")].rstrip("/")
        for n, line in enumerate((tree.root / rel).read_text(errors="replace").splitlines(), start=1):
            stem = line.strip().split(" ")[0] if line.strip() else ""
            if not stem or stem in have:
                continue
            found = None
            for ext in IMAGE_EXTENSIONS:
                found = tree.exists(posixpath.join(voc_root, "JPEGImages", stem + ext))
                if found:
                    break
            if found is None:
                problems.append(Problem("warning", rel, n, stem, f"{stem} is listed but has no XML and no image in JPEGImages/",
                                        "left out"))
                have.add(stem)  # reported once, whichever lists name it
                continue
            if found not in candidates and found not in have:
                candidates[found] = (stem, rel, n)
    if not lists:
        for rel in tree.images():
            if "/jpegimages/" in "/" + rel.lower() and rel not in have:
                stem = posixpath.splitext(posixpath.basename(rel))[0]
                if stem not in have:
                    candidates[rel] = (stem, "JPEGImages/", None)
    out = []
    for file, (stem, _, _) in candidates.items():
        header = read_header(tree.root, file, stem)
        if isinstance(header, Problem):
            problems.append(header)
            continue
        out.append(ImageRecord(file, header.width, header.height, (), (), stem))
    where = "listed in ImageSets/Main" if lists else "in JPEGImages/"
    return out, where


def _image_sets(tree: FileTree, records: list[ImageRecord]) -> dict | None:
    """Splits from ImageSets/Main/{train,val,test,...}.txt (CVAT: default.txt), by image stem."""
    index = {r.image_id: i for i, r in enumerate(records)}
    splits: dict[str, list[int]] = {}
    assigned: set[int] = set()
    for rel in _set_lists(tree):
        name = posixpath.splitext(posixpath.basename(rel))[0].lower()
        split = SPLIT_ALIASES.get(name, name)
        if split == "trainval":
            continue
        for line in (tree.root / rel).read_text(errors="replace").splitlines():
            stem = line.strip().split(" ")[0] if line.strip() else ""
            i = index.get(stem)
            if i is not None and i not in assigned:
                assigned.add(i)
                splits.setdefault(split, []).append(i)
    if not splits and tree.files:  # Roboflow: split folders (train/, valid/, test/)
        for i, r in enumerate(records):
            top = r.file.split("/")[0].lower()
            if top in SPLIT_ALIASES and "/" in r.file:
                splits.setdefault(SPLIT_ALIASES[top], []).append(i)
    return {k: tuple(v) for k, v in splits.items()} or None
