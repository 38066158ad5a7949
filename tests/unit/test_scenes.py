"""The synthetic scene generator: deterministic, boxes tight around what was drawn."""

from __future__ import annotations

import numpy as np

from detector.scenes import CLASS_NAMES, make_scene, sample_scenes


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = make_scene(7), make_scene(7), make_scene(8)
    assert a.boxes == b.boxes and a.labels == b.labels
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_boxes_inside_image_with_valid_labels_and_varied_shapes():
    ratios, labels, empty = [], set(), 0
    for seed in range(200):
        s = make_scene(seed, 160, 120)
        empty += not s.boxes
        for (x1, y1, x2, y2), lab in zip(s.boxes, s.labels):
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
            ratios.append((y2 - y1) / (x2 - x1))
            labels.add(lab)
    assert labels == {1, 2, 3} and len(CLASS_NAMES) == 3
    assert min(ratios) < 0.5 and max(ratios) > 2.0  # elongated shapes both ways
    assert 0 < empty < 40  # some negatives, mostly positives


def test_box_is_tight_around_the_drawn_shape():
    # rectangles fill their box: the pixels just inside differ from those just outside
    for seed in range(50):
        s = make_scene(seed)
        arr = np.asarray(s.image).astype(int)
        for (x1, y1, x2, y2), lab in zip(s.boxes, s.labels):
            if lab != 2 or x1 < 1 or y1 < 1 or x2 > 318 or y2 > 238:
                continue
            inside = arr[int(y1):int(y2), int(x1):int(x2)]
            centre = arr[int((y1 + y2) // 2), int((x1 + x2) // 2)]
            # the rectangle's own colour covers its top-left and bottom-right pixels (unless blurred or overlapped)
            assert np.abs(inside[0, 0] - centre).sum() < 60 or np.abs(inside[-1, -1] - centre).sum() < 60
            return
    raise AssertionError("no clear rectangle found in 50 seeds")


def test_sample_scenes_all_have_objects():
    samples = sample_scenes(3)
    assert len(samples) == 3 and all(s.boxes for s in samples)
