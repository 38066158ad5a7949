"""detector.evaluation: COCO mAP through pycocotools, as an accumulator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pycocotools")

from detector.evaluation import CocoEvaluator, EvalResult, evaluate_model  # noqa: E402

NAMES = ("circle", "rectangle", "triangle")
GT = [
    (np.array([[10, 10, 50, 60], [70, 20, 120, 90]], float), np.array([1, 2])),
    (np.array([[5, 5, 30, 30]], float), np.array([3])),
    (np.zeros((0, 4)), np.zeros((0,), int)),  # a negative image
]


def _fill(ev: CocoEvaluator, predict) -> None:
    for boxes, labels in GT:
        pb, ps, pl = predict(boxes, labels)
        ev.process(128, 96, boxes, labels, pb, ps, pl)


def test_perfect_predictions_give_ap_one():
    ev = CocoEvaluator(NAMES)
    _fill(ev, lambda b, l: (b, np.full(len(b), 0.9), l))
    result = ev.evaluate()
    assert result.mAP == pytest.approx(1.0) and result.mAP50 == pytest.approx(1.0)
    assert result.mAP75 == pytest.approx(1.0)
    assert result.per_class == {n: pytest.approx(1.0) for n in NAMES}
    assert (result.images, result.ground_truth, result.detections) == (3, 3, 3)
    # plain floats: JSON- and torch.load(weights_only=True)-safe
    assert all(type(v) is float for v in (result.mAP, result.mAP50, result.mAP75))
    json.dumps(result.as_dict())


def test_no_predictions_give_zero_and_wrong_class_gives_zero():
    ev = CocoEvaluator(NAMES)
    _fill(ev, lambda b, l: (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)))
    result = ev.evaluate()
    assert (result.mAP, result.mAP50, result.mAP75) == (0.0, 0.0, 0.0)
    ev.reset()
    assert ev.images == 0
    _fill(ev, lambda b, l: (b, np.full(len(b), 0.9), l % 3 + 1))  # right boxes, wrong classes
    assert ev.evaluate().mAP == 0.0


def test_loose_boxes_pass_at_50_not_at_75():
    ev = CocoEvaluator(NAMES)

    def shifted(boxes, labels):  # IoU about 0.6 with the truth
        w = boxes[:, 2] - boxes[:, 0]
        out = boxes.copy()
        out[:, [0, 2]] += (w * 0.25)[:, None]
        return out, np.full(len(boxes), 0.8), labels

    _fill(ev, shifted)
    result = ev.evaluate()
    assert result.mAP50 == pytest.approx(1.0)
    assert result.mAP75 == 0.0
    assert 0.0 < result.mAP < 0.6


def test_no_ground_truth_is_undefined_not_zero():
    ev = CocoEvaluator(NAMES)
    ev.process(64, 64, np.zeros((0, 4)), [], [[1, 1, 10, 10]], [0.5], [1])
    result = ev.evaluate()
    assert result.mAP is None and result.per_class["circle"] is None


class _Oracle(torch.nn.Module):
    """Returns the boxes it is told to: lets evaluate_model be checked end to end."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)

    def forward(self, images):
        out = []
        for _ in images:
            boxes, labels = self.answers.pop(0)
            out.append({"boxes": torch.as_tensor(boxes, dtype=torch.float32),
                        "labels": torch.as_tensor(labels), "scores": torch.ones(len(labels))})
        return out


def test_evaluate_model_runs_batches_in_eval_mode_and_restores_mode():
    batches = [([torch.zeros(3, 96, 128)] * 2, [{"boxes": torch.as_tensor(b), "labels": torch.as_tensor(l)}
                                               for b, l in GT[:2]])]
    model = _Oracle(GT[:2]).train()
    result = evaluate_model(model, batches, NAMES)
    assert isinstance(result, EvalResult) and result.mAP == pytest.approx(1.0) and result.images == 2
    assert model.training


def test_relabel_by_name_leaves_out_unknown_classes_and_refuses_none_shared():
    from detector.data.records import ImageRecord, relabel_by_name

    records = [ImageRecord("a.png", 10, 10, ((0, 0, 5, 5), (1, 1, 6, 6), (2, 2, 8, 8)), (1, 2, 3), 1),
               ImageRecord("b.png", 10, 10, ((0, 0, 4, 4),), (2,), 2)]
    out, missing = relabel_by_name(records, ("cat", "emu", "dog"), ("dog", "cat"))
    assert missing == ("emu",)
    assert out[0].labels == (2, 1) and out[0].boxes == ((0, 0, 5, 5), (2, 2, 8, 8))
    assert out[1].labels == () and out[1].file == "b.png"  # kept as a background image
    with pytest.raises(ValueError, match="none of its classes"):
        relabel_by_name(records, ("emu",), ("dog",), "val.zip")
