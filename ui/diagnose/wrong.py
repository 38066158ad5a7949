"""/diagnose's false positives and confusions, each linked to its explanation on /rpn (ui.links.detection_url)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from detector.diagnosis.report import wrong_detections_in
from detector.diagnosis.trail import TrailSet
from ui.links import detection_url

LINK_COLUMN = "explain in /rpn"


def wrong_frame(trails: TrailSet, iou: float, score_threshold: float, dataset_name: str | None,
                source: Any) -> pd.DataFrame:
    """One row per false positive or confusion: image, class, score, what it sits on, box, its /rpn link
    (None when the images are not a stored dataset, which a link cannot name)."""
    rows = []
    for w in wrong_detections_in(trails, iou, score_threshold):
        try:
            link = None if dataset_name is None else detection_url(
                source, w.detection, box=w.box, dataset=dataset_name, image=w.file)
        except ValueError:
            link = None
        rows.append({"image": w.file, "detection": w.detection, "class": w.label, "score": round(w.score, 3),
                     "sits on": w.confused_with or "background", "box": ", ".join(f"{v:.0f}" for v in w.box),
                     LINK_COLUMN: link})
    return pd.DataFrame(rows, columns=["image", "detection", "class", "score", "sits on", "box", LINK_COLUMN])
