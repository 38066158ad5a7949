"""viz.boxes: box captions stay on the image, also for a box touching its top edge."""

from __future__ import annotations

from PIL import Image

from detector.viz.boxes import add_boxes, image_figure


def _caption_positions(fig) -> list[str]:
    texts = [t for t in fig.data if getattr(t, "mode", None) == "text"]
    assert len(texts) == 1
    return list(texts[0].textposition)


def test_caption_goes_inside_a_box_that_touches_the_top_edge():
    fig = image_figure(Image.new("RGB", (640, 480)), height=400)
    boxes = [[10, 0, 100, 80], [200, 2, 300, 90], [300, 200, 400, 300]]
    add_boxes(fig, boxes, "prediction", labels=["cat"] * 3, scores=[0.9, 0.8, 0.7])
    # the first two have no room above them: their caption is drawn below the top-left corner, inside
    assert _caption_positions(fig) == ["bottom right", "bottom right", "top right"]
    texts = [t for t in fig.data if getattr(t, "mode", None) == "text"][0]
    assert list(texts.y) == [0, 2, 200] and list(texts.text) == ["cat 0.90", "cat 0.80", "cat 0.70"]


def test_room_above_scales_with_the_image_frame():
    # a tall image drawn in a short figure: 16 screen pixels are many image pixels
    fig = image_figure(Image.new("RGB", (400, 4000)), height=400)
    add_boxes(fig, [[0, 100, 50, 200], [0, 1000, 50, 1100]], "ground_truth", labels=["a", "b"])
    assert _caption_positions(fig) == ["bottom right", "top right"]
