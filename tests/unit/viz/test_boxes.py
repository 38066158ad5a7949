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


def test_png_drawing_takes_every_box_torchvision_keeps():
    # boxes as the model returns them: decoded, clipped to the image and filtered by torchvision's own
    # remove_small_boxes (1e-2 px), so widths and heights from 0.01 px up, at the edges too
    import numpy as np
    import torch
    from torchvision.ops import boxes as box_ops

    from detector.viz.boxes import draw_boxes_on_image

    image = Image.new("RGB", (64, 48), "black")
    rng = torch.Generator().manual_seed(0)
    x1y1 = torch.rand(400, 2, generator=rng) * torch.tensor([70.0, 54.0]) - 3
    wh = torch.cat([torch.full((100, 2), 0.011), torch.rand(300, 2, generator=rng) * 3])
    raw = torch.cat([x1y1, x1y1 + wh], dim=1)
    boxes = box_ops.clip_boxes_to_image(raw, (48, 64))
    boxes = boxes[box_ops.remove_small_boxes(boxes, 1e-2)]
    assert ((boxes[:, 2] - boxes[:, 0]) < 1).sum() > 50 and ((boxes[:, 3] - boxes[:, 1]) < 1).sum() > 50
    out = draw_boxes_on_image(image, boxes.numpy(), ["cat"] * len(boxes), [0.5] * len(boxes))
    assert out.size == image.size
    # every box leaves its colour at its top-left pixel
    pixels = np.asarray(out)
    for x1, y1 in boxes[:, :2].floor().long().tolist():
        assert pixels[min(y1, 47), min(x1, 63)].any()
