"""detector.wording: one way to write a count ("1 class", "3 classes") wherever one is printed."""

from __future__ import annotations

from detector.checkpoints import load_model, save_checkpoint
from detector.models import DEMO_ARCH, build_model
from detector.wording import counted


def test_counted_is_singular_for_one_only():
    assert [counted(n, "class") for n in (0, 1, 2)] == ["0 classes", "1 class", "2 classes"]
    assert [counted(n, "box") for n in (1, 3)] == ["1 box", "3 boxes"]
    assert counted(1, "epoch") == "1 epoch" and counted(5, "epoch") == "5 epochs"
    assert counted(2, "model run") == "2 model runs" and counted(2, "child", "children") == "2 children"


def test_a_one_class_model_is_described_in_the_singular(tmp_path):
    """/rpn and the sidebar show this description (it read "trained on 1 classes (raccoon)")."""
    model = build_model(DEMO_ARCH, ("raccoon",), weights="none")
    path = save_checkpoint(tmp_path / "raccoon.pt", model, DEMO_ARCH, ("raccoon",))
    description = load_model(str(path), "cpu").description
    assert "trained on 1 class (raccoon)" in description, description
