"""detector.data.torchdata: the training Dataset; a horizontal flip keeps boxes on the object."""

from __future__ import annotations

import torch
from PIL import Image

from detector.data import DetectionDataset


def test_flip_keeps_boxes_on_the_object(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (5, 2, 15, 12))  # white block covering columns 5..14, rows 2..11
    img.save(tmp_path / "a.png")
    from detector.data import ImageRecord

    record = ImageRecord("a.png", 40, 20, ((5.0, 2.0, 15.0, 12.0),), (1,), 1)
    plain_img, plain = DetectionDataset([record], tmp_path, train=False)[0]
    flip_img, flipped = DetectionDataset([record], tmp_path, train=True, flip_p=1.0)[0]
    assert plain_img.shape == (3, 20, 40) and plain_img.dtype == torch.float32 and float(plain_img.max()) == 1.0
    assert plain["boxes"].tolist() == [[5.0, 2.0, 15.0, 12.0]] and plain["labels"].dtype == torch.int64
    assert flipped["boxes"].tolist() == [[25.0, 2.0, 35.0, 12.0]]
    x1, y1, x2, y2 = (int(v) for v in flipped["boxes"][0])
    assert float(flip_img[:, y1:y2, x1:x2].min()) == 1.0  # the box still covers the white block
    assert float(flip_img[:, :, :x1].max()) == 0.0 and float(flip_img[:, :, x2:].max()) == 0.0
    assert DetectionDataset([record], tmp_path).aspect_ratio(0) == 2.0
