"""ui.data.report: the validation report's problem table and its filter, over the YOLO export of
conftest.py."""

from __future__ import annotations

from ui.data.report import filter_problems, problems_table


def test_filter_problems_by_severity_kind_and_text(yolo):
    ds, _ = yolo
    table = problems_table(ds.problems)
    assert list(table.columns) == ["severity", "file", "line", "id", "message", "action"] and len(table) == 2
    every = filter_problems(table, ["error", "warning"], ["line left out", "box clipped to the image"], "")
    assert list(every["line"]) == [1, 2] and str(every["line"].dtype) == "Int64" and str(every["id"].dtype) == "string"
    left_out = filter_problems(table, ["warning"], ["line left out"], "")
    assert list(left_out["message"]) == ["expected 5 fields (class cx cy w h), found 4"]
    assert list(filter_problems(table, ["warning"], ["line left out", "box clipped to the image"], "OUTSIDE")["line"]) == [2]
    assert list(filter_problems(table, ["warning"], ["line left out"], "b.TXT")["line"]) == [1]  # file names too
    assert filter_problems(table, ["error"], ["line left out", "box clipped to the image"], "").empty
