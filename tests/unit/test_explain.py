"""detector.explain against torchvision's own modules: every detection's chain, class distribution and NMS.

Oracles: forward hooks on the model's RPN head, RPN and box predictor during `model(images)`;
torchvision's AnchorGenerator, BoxCoder, clip_boxes_to_image, remove_small_boxes, box_iou and
ops.nms. Two architectures: the shipped demo model and a torchvision builder with random weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from detector import checkpoints
from detector.explain import (
    BACKGROUND, BEYOND_LIMIT, DETECTION, SUPPRESSED, decide_heads, detection_json, explain_image,
)
from detector.images import to_tensor
from detector.inspect import inspect
from detector.models import build_model
from detector.scenes import make_scene

CLASSES = ("circle", "rectangle", "triangle")


@pytest.fixture(scope="module")
def models():
    demo = checkpoints.load_model(checkpoints.DEMO)
    torch.manual_seed(3)
    rand = build_model("fasterrcnn_resnet50_fpn", CLASSES, min_size=128, max_size=160,
                       box_score_thresh=0.01, box_detections_per_img=40).eval()
    return {"demo": (demo.model, demo.class_names), "random": (rand, CLASSES)}


@pytest.fixture(scope="module")
def images():
    return [to_tensor(make_scene(seed).image) for seed in (10_000, 10_003)]


class Hooks:
    """What the model's own modules saw and returned during model(images)."""

    def __init__(self, model):
        self.seen: dict[str, object] = {}
        self.handles = [
            model.rpn.head.register_forward_hook(lambda m, i, o: self.seen.__setitem__("rpn_head", o)),
            model.rpn.register_forward_hook(lambda m, i, o: self.seen.__setitem__("proposals", o[0])),
            model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: self.seen.__setitem__("predictor", o)),
        ]

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def runs(models, images):
    out = {}
    for name, (model, names) in models.items():
        hooks = Hooks(model)
        with torch.no_grad():
            detections = model(images)
            image_list, _ = model.transform(images)
            features = list(model.backbone(image_list.tensors).values())
            anchors = model.rpn.anchor_generator(image_list, features)
        hooks.remove()
        insp = inspect(model, images)
        decisions = decide_heads(model, insp)
        explanations = [explain_image(model, insp, i, names, decisions) for i in range(len(images))]
        out[name] = dict(model=model, detections=detections, seen=hooks.seen, image_list=image_list,
                         anchors=anchors, explanations=explanations, grids=[f.shape[-2:] for f in features])
    return out


NAMES = ("demo", "random")


@pytest.mark.parametrize("name", NAMES)
def test_detections_equal_model_forward_bit_for_bit(name, runs):
    run = runs[name]
    for ref, expl in zip(run["detections"], run["explanations"]):
        assert len(ref["boxes"]) > 0
        d = expl.decisions
        assert torch.equal(ref["boxes"], d.boxes) and torch.equal(ref["scores"], d.scores)
        assert torch.equal(ref["labels"], d.labels)
        assert [e.index for e in expl.detections] == list(range(len(ref["boxes"])))
        assert torch.equal(torch.stack([e.box for e in expl.detections]), ref["boxes"])
        assert [e.score for e in expl.detections] == ref["scores"].tolist()


@pytest.mark.parametrize("name", NAMES)
def test_class_distribution_and_roi_against_hooks(name, runs):
    run = runs[name]
    logits, regression = run["seen"]["predictor"]
    offset = 0
    for i, (expl, proposals) in enumerate(zip(run["explanations"], run["seen"]["proposals"])):
        frame = expl.frame
        hw, orig_hw = list(run["image_list"].image_sizes[i]), [frame.original_size[1], frame.original_size[0]]
        assert expl.class_names[0] == BACKGROUND and len(expl.class_names) == logits.shape[1]
        for det in expl.detections:
            row = offset + det.roi.index
            probs = F.softmax(logits[row], -1)
            assert torch.allclose(probs, det.class_probs, atol=1e-6, rtol=0)
            assert abs(float(probs[det.label]) - det.score) <= 1e-6 and float(det.class_probs[det.label]) == det.score
            assert torch.equal(logits[row], det.class_logits)
            # the RoI is the RPN's proposal at that row, and the rank is its objectness order
            assert torch.equal(proposals[det.roi.index], det.roi.box_input)
            assert torch.equal(resize_boxes(proposals[det.roi.index][None], hw, orig_hw)[0], det.roi.box)
            assert det.roi.rank == det.roi.index
            # the box head's BoxCoder decodes the RoI with the class's deltas; clipped and mapped back: the box
            deltas = regression[row].view(-1, 4)[det.label]
            assert torch.equal(deltas, det.box_deltas)
            coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
            decoded = coder.decode_single(deltas[None], proposals[det.roi.index][None])
            box = resize_boxes(box_ops.clip_boxes_to_image(decoded, tuple(hw)), hw, orig_hw)[0]
            assert torch.allclose(box, det.box, atol=1e-4, rtol=0), (box, det.box)
        offset += len(proposals)


@pytest.mark.parametrize("name", NAMES)
def test_anchor_decodes_to_the_proposal(name, runs):
    run = runs[name]
    model = run["model"]
    objectness, rpn_deltas = run["seen"]["rpn_head"]
    per_level = [int(o.shape[1] * o.shape[2] * o.shape[3]) for o in objectness]
    for i, (expl, proposals) in enumerate(zip(run["explanations"], run["seen"]["proposals"])):
        levels = run["anchors"][i].split(per_level)
        hw = tuple(run["image_list"].image_sizes[i])
        for det in expl.detections:
            a = det.anchor
            num_shapes, rows, cols = objectness[a.level_index].shape[1:]
            anchor = levels[a.level_index][(a.row * cols + a.column) * num_shapes + a.shape]
            assert torch.equal(anchor, a.box_input)
            hooked = rpn_deltas[a.level_index][i].view(num_shapes, 4, rows, cols)[a.shape, :, a.row, a.column]
            assert torch.equal(hooked, a.rpn_deltas)
            decoded = model.rpn.box_coder.decode_single(hooked[None], anchor[None])[0]
            assert torch.allclose(decoded, a.regressed_input, atol=1e-4, rtol=0)
            assert torch.allclose(box_ops.clip_boxes_to_image(decoded, hw), proposals[det.roi.index], atol=1e-4, rtol=0)


def _hand_nms(boxes, scores, thresh):
    """Greedy NMS written out: visit by decreasing score, keep, and note whom each kept box removes."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    removed_by: dict[int, int] = {}
    kept = []
    for i in order:
        if i in removed_by:
            continue
        kept.append(i)
        iou = box_ops.box_iou(boxes[i][None], boxes)[0]
        for j in order:
            if j not in removed_by and j not in kept and iou[j] > thresh:
                removed_by[j] = i
    return kept, removed_by


@pytest.mark.parametrize("name", NAMES)
def test_suppressed_equals_a_hand_run_of_per_class_nms(name, runs):
    run = runs[name]
    model = run["model"]
    heads = model.roi_heads
    logits, regression = run["seen"]["predictor"]
    offset = 0
    checked = 0
    for i, (expl, proposals) in enumerate(zip(run["explanations"], run["seen"]["proposals"])):
        n, num_classes = len(proposals), logits.shape[1]
        hw = tuple(run["image_list"].image_sizes[i])
        boxes = box_ops.clip_boxes_to_image(
            heads.box_coder.decode(regression[offset:offset + n], [proposals]), hw)  # (n, C, 4)
        probs = F.softmax(logits[offset:offset + n], -1)
        d = expl.decisions
        for label in range(1, num_classes):
            cand = torch.where(probs[:, label] > heads.score_thresh)[0]
            cand = cand[box_ops.remove_small_boxes(boxes[cand, label], 1e-2)]
            kept, removed_by = _hand_nms(boxes[cand, label], probs[cand, label], heads.nms_thresh)
            nms_keep = box_ops.nms(boxes[cand, label], probs[cand, label], heads.nms_thresh)
            assert sorted(kept) == sorted(nms_keep.tolist())  # the hand-run is torchvision's NMS
            fates = d.fate[cand, label]
            assert set(torch.where((fates == DETECTION) | (fates == BEYOND_LIMIT))[0].tolist()) == set(kept)
            assert set(torch.where(fates == SUPPRESSED)[0].tolist()) == set(removed_by)
            for det in expl.detections:
                if det.label != label:
                    continue
                mine = next(k for k in kept if int(cand[k]) == det.roi.index)
                expected = sorted(int(cand[j]) for j, by in removed_by.items() if by == mine)
                assert sorted(c.roi for c in det.suppressed) == expected
                for c in det.suppressed:
                    assert c.label == label and c.score == float(probs[c.roi, label])
                    iou = box_ops.box_iou(boxes[c.roi, label][None], boxes[det.roi.index, label][None])[0, 0]
                    assert abs(c.iou - float(iou)) < 1e-6 and c.iou > heads.nms_thresh
                    assert expl.suppressed_by(c.roi, label) == det.index
                checked += len(det.suppressed)
        offset += n
    assert checked > 0  # some detection did suppress something


def test_json_has_exactly_the_issue_keys(runs):
    expl = runs["demo"]["explanations"][0]
    entry = detection_json(expl, expl.detections[0])
    assert set(entry) == {"box", "label", "label_id", "score", "roi", "anchor", "class_probs", "box_deltas",
                          "suppressed"}
    assert set(entry["roi"]) == {"index", "box", "objectness", "rank"}
    assert set(entry["anchor"]) == {"level", "row", "column", "shape", "box", "rpn_deltas"}
    assert list(entry["class_probs"]) == [BACKGROUND, *CLASSES]
    assert abs(sum(entry["class_probs"].values()) - 1) < 1e-5
    assert entry["class_probs"][entry["label"]] == entry["score"]


def test_nearest_candidates_of_a_ground_truth_box(runs):
    from torchvision.ops import box_iou

    from detector.explain import nearest_candidates

    run = runs["demo"]
    model = run["model"]
    scene = make_scene(10_000)
    gt = torch.tensor(scene.boxes[0])
    with torch.no_grad():
        insp = inspect(model, [to_tensor(scene.image)])
    decisions = decide_heads(model, insp)[0]
    missed = nearest_candidates(insp, 0, gt, scene.labels[0], decisions)
    assert [n.stage for n in missed.nearest] == ["anchor", "proposal before NMS", "proposal after NMS", "RoI"]
    frame = insp.frames[0]
    # the best anchor IoU is the RPN matcher's: torchvision's AnchorGenerator and box_iou in the input frame
    image_list, _ = model.transform([to_tensor(scene.image)])
    with torch.no_grad():
        anchors = model.rpn.anchor_generator(image_list, list(model.backbone(image_list.tensors).values()))[0]
    assert missed.nearest[0].iou == pytest.approx(float(box_iou(frame.to_input(gt[None]), anchors).max()), abs=1e-6)
    rois = frame.to_original(insp.funnels[0].post_nms.boxes)
    assert missed.nearest[3].iou == pytest.approx(float(box_iou(gt[None], rois).max()), abs=1e-6)
    assert missed.nearest[1].iou >= missed.nearest[2].iou >= missed.nearest[3].iou  # each stage a subset
    assert torch.equal(missed.class_probs, F.softmax(insp.class_logits[missed.roi], -1))
