"""ui.data.browser: the image browser's record filter, over the YOLO export of conftest.py."""

from __future__ import annotations

from ui.data.browser import browse_indices


def test_browse_indices_filter_by_class_and_problem(yolo):
    ds, problems_of = yolo
    assert [r.file for r in ds.records] == ["images/a.png", "images/b.png", "images/c.png"]
    assert browse_indices(ds, problems_of, [], "all images") == [0, 1, 2]
    assert browse_indices(ds, problems_of, ["x"], "all images") == [0]
    assert browse_indices(ds, problems_of, ["y"], "all images") == [1]  # its x line was left out
    assert browse_indices(ds, problems_of, ["x", "y"], "all images") == [0, 1]
    assert browse_indices(ds, problems_of, [], "images with problems") == [1]
    assert browse_indices(ds, problems_of, [], "empty images (negatives)") == [2]
    assert browse_indices(ds, problems_of, [], "box clipped to the image") == [1]  # an action kind
    assert browse_indices(ds, problems_of, ["x"], "images with problems") == []
