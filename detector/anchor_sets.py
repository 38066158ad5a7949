"""The anchor sets a study compares: the paper's Table 8 in a model's anchor form, k-means-fitted sets
and sets from a JSON file (`choose_sets` reads `--sets`).

Ren et al. (Faster R-CNN, arXiv 1506.01497v3, Table 8) trained the same detector with six anchor
settings and compared mAP on PASCAL VOC 2007 test; `PAPER_TABLE8` holds those rows and
`reference_sizes` / `paper_sets` map them onto a model's own anchors (sizes in the model's resized
input pixels, sqrt of area; ratios height / width, torchvision's AnchorGenerator form). The study
that trains one run per set is `detector.anchor_study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from detector import runs

THREE_RATIOS = (0.5, 1.0, 2.0)  # height / width: the paper's {1:2, 1:1, 2:1}
OCTAVE_THIRDS = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))  # RetinaNet's three sizes per level


class StudyError(RuntimeError):
    """A study that cannot start or go on: a one-line message naming the file or the setting."""


# ---------------------------------------------------------------- the paper's Table 8


@dataclass(frozen=True)
class PaperRow:
    """One row of Table 8: VOC 2007 test mAP (%) of Faster R-CNN (VGG-16, trained on VOC 2007 trainval)."""

    key: str
    settings: str
    scales: str
    ratios: str
    mAP: float
    scale_index: tuple[int, ...]  # which of the paper's three sizes (128, 256, 512) the row uses
    ratios_used: tuple[float, ...]


PAPER_SOURCE = ("Ren et al., Faster R-CNN (arXiv 1506.01497v3), Table 8: PASCAL VOC 2007 test mAP (%), "
                "VGG-16 trained on VOC 2007 trainval, one feature level at stride 16, images 600 px")
PAPER_TABLE8: tuple[PaperRow, ...] = (
    PaperRow("1s1r-128", "1 scale, 1 ratio", "128²", "1:1", 65.8, (0,), (1.0,)),
    PaperRow("1s1r-256", "1 scale, 1 ratio", "256²", "1:1", 66.7, (1,), (1.0,)),
    PaperRow("1s3r-128", "1 scale, 3 ratios", "128²", "{2:1, 1:1, 1:2}", 68.8, (0,), THREE_RATIOS),
    PaperRow("1s3r-256", "1 scale, 3 ratios", "256²", "{2:1, 1:1, 1:2}", 67.9, (1,), THREE_RATIOS),
    PaperRow("3s1r", "3 scales, 1 ratio", "{128², 256², 512²}", "1:1", 69.8, (0, 1, 2), (1.0,)),
    PaperRow("3s3r", "3 scales, 3 ratios", "{128², 256², 512²}", "{2:1, 1:1, 1:2}", 69.9, (0, 1, 2), THREE_RATIOS),
)
PAPER_KEYS = tuple(r.key for r in PAPER_TABLE8)
FITTED = "fitted"


# ---------------------------------------------------------------- anchor sets


@dataclass(frozen=True)
class AnchorSet:
    """One anchor setting of a study: sizes per level (input pixels, sqrt of area) and aspect ratios
    per level (height / width), in the model's AnchorGenerator form."""

    key: str  # letters, digits, '.', '_', '-': part of the run's name
    label: str
    sizes: tuple[tuple[int, ...], ...]
    ratios: tuple[tuple[float, ...], ...]
    origin: str  # how the sizes were derived, one sentence
    paper: PaperRow | None = None

    @property
    def anchors_per_location(self) -> tuple[int, ...]:
        return tuple(len(s) * len(r) for s, r in zip(self.sizes, self.ratios))

    def model_kwargs(self) -> dict[str, Any]:
        """What a run's TrainConfig.model_kwargs gets for this set (the only difference between runs)."""
        return {"anchor_sizes": [list(s) for s in self.sizes], "aspect_ratios": [list(r) for r in self.ratios]}

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "sizes": [list(s) for s in self.sizes],
                "ratios": [list(r) for r in self.ratios], "anchors_per_location": list(self.anchors_per_location),
                "origin": self.origin, "paper": paper_dict(self.paper)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnchorSet":
        paper = next((r for r in PAPER_TABLE8 if d.get("paper") and r.key == d["paper"].get("key")), None)
        return cls(str(d["key"]), str(d["label"]), tuple(tuple(int(s) for s in lv) for lv in d["sizes"]),
                   tuple(tuple(float(r) for r in lv) for lv in d["ratios"]), str(d.get("origin", "")), paper)


def paper_dict(row: PaperRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"key": row.key, "settings": row.settings, "scales": row.scales, "ratios": row.ratios, "mAP": row.mAP}


def reference_sizes(sizes: Sequence[Sequence[int]]) -> tuple[tuple[float, float, float], ...]:
    """The three sizes per level that stand for the paper's 128², 256², 512², from a model's own anchors.

    - Every level holds the same list of sizes (torchvision's MobileNet FPN, 32..512; the demo,
      16..256): that is the paper's own form (one list of sizes at every position), so the paper's
      three octaves are the middle three of the model's sizes (the demo: 32, 64, 128), on every level.
    - Otherwise (one base size b per level, as torchvision's ResNet-50 FPN: 32 at stride 4 .. 512 at
      stride 64): the levels already span the octaves, so "1 scale" is b (the 256² row: 2b, one octave
      up) and "3 scales" is b x 2^0, 2^(1/3), 2^(2/3) as RetinaNet puts three sizes on each level.
    """
    levels = [sorted(int(s) for s in lv) for lv in sizes]
    if len(levels) > 1 and all(lv == levels[0] for lv in levels) and len(levels[0]) >= 3:
        own = levels[0]
        start = (len(own) - 3) // 2
        trio = tuple(float(s) for s in own[start:start + 3])
        return tuple(trio for _ in levels)  # type: ignore[return-value]
    return tuple((float(lv[0]), float(lv[0]) * OCTAVE_THIRDS[1], float(lv[0]) * OCTAVE_THIRDS[2]) for lv in levels)


def paper_sets(model_sizes: Sequence[Sequence[int]], keys: Sequence[str] = PAPER_KEYS) -> tuple[AnchorSet, ...]:
    """Table 8's rows in the model's anchor form (`reference_sizes` says how)."""
    refs = reference_sizes(model_sizes)
    shared = len(model_sizes) > 1 and all(sorted(lv) == sorted(model_sizes[0]) for lv in model_sizes)
    out = []
    for row in PAPER_TABLE8:
        if row.key not in keys:
            continue
        if shared or len(row.scale_index) == 3:
            sizes = tuple(tuple(int(round(ref[i])) for i in row.scale_index) for ref in refs)
        else:  # one base size per level: the 256² row is one octave above the base
            sizes = tuple((int(round(ref[0] * (2 ** row.scale_index[0]))),) for ref in refs)
        how = ("the middle three of the model's own sizes on every level" if shared else
               "each level's base size" + (" x 2^0, 2^(1/3), 2^(2/3)" if len(row.scale_index) == 3 else
                                          (" x 2" if row.scale_index[0] == 1 else "")))
        out.append(AnchorSet(row.key, f"{row.settings} ({row.scales})", sizes, tuple(row.ratios_used for _ in sizes),
                             f"Table 8 row '{row.settings}, {row.scales}': {how}", row))
    return tuple(out)


def fitted_set(fit: Any, source: Any) -> AnchorSet:
    """The sizes and ratios `anchor_fitness` fits to the dataset (k-means, as the Anchors page and
    `anchors --dataset` suggest), in the model's own form: as many per location as its own anchors."""
    from detector.anchor_fitness import suggest_anchor_sets

    sizes, ratios = suggest_anchor_sets(fit, source)
    return AnchorSet(FITTED, "fitted to the dataset (k-means)", tuple(tuple(int(s) for s in lv) for lv in sizes),
                     tuple(tuple(float(r) for r in ratios) for _ in sizes),
                     "anchor_fitness.suggest_anchor_sets on the dataset's boxes, the model's own counts")


def sets_from_file(path: Path, levels: int) -> tuple[AnchorSet, ...]:
    """Anchor sets from a JSON file: a list (or {"sets": [...]}) of {key, label?, sizes, ratios}; sizes
    one list per level or one list for every level, ratios one list (every level) or one per level."""
    data = runs.read_json_strict(Path(path), StudyError)
    items = data.get("sets") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise StudyError(f"{path}: expected a list of anchor sets (or {{\"sets\": [...]}})")
    out = []
    for i, item in enumerate(items):
        where = f"{path}: set {i + 1}"
        if not isinstance(item, dict) or "key" not in item or "sizes" not in item:
            raise StudyError(f"{where}: needs at least key and sizes")
        key = str(item["key"])
        if runs.run_name_problem(key, new=False):
            raise StudyError(f"{where}: key {key!r}: letters, digits, '.', '_' and '-' only")
        try:
            sizes = [[int(s) for s in lv] for lv in (item["sizes"] if isinstance(item["sizes"][0], list) else [item["sizes"]])]
            raw = item.get("ratios", [1.0])
            ratios = [[float(r) for r in lv] for lv in (raw if isinstance(raw[0], list) else [raw])]
        except (TypeError, ValueError, IndexError):
            raise StudyError(f"{where}: sizes and ratios must be lists of numbers") from None
        sizes = sizes * levels if len(sizes) == 1 else sizes
        ratios = ratios * len(sizes) if len(ratios) == 1 else ratios
        if len(sizes) != levels or len(ratios) != levels:
            raise StudyError(f"{where}: {len(sizes)} levels of sizes, {len(ratios)} of ratios; the model has {levels}")
        if any(s <= 0 for lv in sizes for s in lv) or any(not r > 0 for lv in ratios for r in lv):
            raise StudyError(f"{where}: sizes and ratios must be positive")
        out.append(AnchorSet(key, str(item.get("label", key)), tuple(map(tuple, sizes)), tuple(map(tuple, ratios)),
                             f"from {Path(path).name}"))
    return tuple(out)


def choose_sets(spec: str, model_sizes: Sequence[Sequence[int]], fitted: Callable[[], AnchorSet]) -> tuple[AnchorSet, ...]:
    """`--sets`: a comma list of paper (Table 8's six rows), row keys (1s1r-128, ..., 3s3r), fitted,
    and FILE.json; in that order, each key once."""
    out: list[AnchorSet] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part == "paper":
            out += paper_sets(model_sizes)
        elif part in PAPER_KEYS:
            out += paper_sets(model_sizes, (part,))
        elif part == FITTED:
            out.append(fitted())
        elif part.endswith(".json"):
            out += sets_from_file(Path(part), len(model_sizes))
        else:
            raise StudyError(f"--sets {part!r}: expected paper, {', '.join(PAPER_KEYS)}, fitted or a FILE.json")
    keys = [s.key for s in out]
    if not out:
        raise StudyError("--sets: no anchor set chosen")
    if len(set(keys)) != len(keys):
        raise StudyError(f"--sets: a set key appears twice ({', '.join(k for k in keys if keys.count(k) > 1)})")
    return tuple(out)
