"""Dataset statistics and their figures, checked by their data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detector.data import ImageRecord, LoadedDataset
from detector.data.stats import dataset_statistics
from detector.data.validation import problems_by_record
from detector.data import load_dataset
from detector.viz.data import (
    aspect_ratio_figure,
    box_size_figure,
    class_balance_figure,
    record_figure,
    size_bucket_figure,
)


def hand_made() -> LoadedDataset:
    records = (
        ImageRecord("a.png", 200, 100, ((0, 0, 10, 20), (0, 0, 40, 40)), (1, 2), 1),  # 200 px² small, 1600 medium
        ImageRecord("b.png", 200, 100, ((0, 0, 100, 100),), (2,), 2),  # 10000 px² large
        ImageRecord("c.png", 200, 100, (), (), 3),  # a negative
    )
    return LoadedDataset(Path("."), "coco", ("cat", "dog"), records)


def test_statistics_by_hand():
    s = dataset_statistics(hand_made())
    assert (s.images, s.boxes, s.empty_images) == (3, 3, 1)
    assert s.boxes_per_class == (1, 2) and s.images_per_class == (1, 2)
    assert s.size_buckets == {"small": 1, "medium": 1, "large": 1}
    assert np.allclose(s.aspect_ratios, [2.0, 1.0, 1.0])


def test_figures_carry_the_statistics():
    s = dataset_statistics(hand_made())
    bars = class_balance_figure(s)
    assert list(bars.data[0].x) == ["cat", "dog"] and list(bars.data[0].y) == [1, 2]
    assert list(size_bucket_figure(s).data[0].y) == [1, 1, 1]
    sizes = box_size_figure(s)
    assert sorted(float(v) for t in sizes.data for v in t.x) == [10.0, 40.0, 100.0]
    assert sizes.layout.xaxis.type == "log" and sizes.layout.yaxis.title.text.startswith("box height")
    assert np.allclose(sorted(aspect_ratio_figure(s).data[0].x), [0.0, 0.0, 1.0])


def test_record_figure_keeps_original_pixels_for_a_thumbnail():
    thumb = Image.new("RGB", (50, 25))
    fig = record_figure(thumb, [(10, 10, 110, 60)], [1], ("cat",), original_size=(200, 100))
    assert tuple(fig.layout.xaxis.range) == (0, 200) and tuple(fig.layout.yaxis.range) == (100, 0)
    assert fig.data[0].dx * 50 == 200
    box = next(t for t in fig.data if t.type == "scatter" and t.mode == "lines")
    assert max(v for v in box.x if v is not None) == 110


def test_problems_are_matched_to_their_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (20, 20)).save(tmp_path / "images" / f"{name}.png")
    (tmp_path / "labels" / "b.txt").write_text("0 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("x\n")
    ds = load_dataset(tmp_path)
    by_record = problems_by_record(ds)
    assert list(by_record) == [1] and by_record[1][0].line == 1
