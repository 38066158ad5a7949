"""Rounding-level border crossings are not reported; real ones are."""

from __future__ import annotations

from detector.data.validation import box_problem


def test_sub_hundredth_pixel_crossing_is_rounding_not_a_problem():
    assert box_problem((-0.00016, 58, 121, 179), 320, 240, file="labels/a.txt", line=1) is None


def test_a_real_crossing_is_reported_with_its_location_and_fix():
    p = box_problem((-3.0, 58, 121, 179), 320, 240, file="labels/a.txt", line=4)
    assert p is not None and p.line == 4 and p.file == "labels/a.txt"
    assert "outside the 320x240 image" in p.message and p.action.startswith("box clipped")
