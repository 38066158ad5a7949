"""ui.inputs: widgets that follow a moving default, and plain notes about missing ground truth."""

from __future__ import annotations

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from ui.inputs import PickedImage


def _follow_app() -> None:
    import streamlit as st

    from ui.inputs import follow_default

    options = st.session_state.get("opts", [0, 1])
    follow_default("pick", options[-1], options=None)
    st.select_slider("Epoch", options, key="pick")


def test_follow_default_tracks_the_latest_until_the_user_moves_it():
    at = AppTest.from_function(_follow_app).run()
    assert at.select_slider(key="pick").value == 1
    at.session_state["opts"] = [0, 1, 2]
    at.run()
    assert at.select_slider(key="pick").value == 2  # a new epoch: followed
    at.select_slider(key="pick").set_value(0).run()
    at.session_state["opts"] = [0, 1, 2, 3]
    at.run()
    assert at.select_slider(key="pick").value == 0  # the user's choice sticks
    at.select_slider(key="pick").set_value(3).run()  # back on the latest: following again
    at.session_state["opts"] = [0, 1, 2, 3, 4]
    at.run()
    assert at.select_slider(key="pick").value == 4


def _picked(has_gt: bool, n: int) -> PickedImage:
    return PickedImage(Image.new("RGB", (8, 8)), "valid/empty.jpg", np.zeros((n, 4)), [1] * n, ("a",), has_gt, "d")


def test_no_boxes_note_tells_an_upload_from_an_empty_image():
    assert "upload without ground truth" in _picked(False, 0).no_boxes_note
    empty = _picked(True, 0).no_boxes_note
    assert "valid/empty.jpg has no ground-truth box" in empty and "pick a sample scene" not in empty
