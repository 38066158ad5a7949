"""detector.inspect against torchvision's own forward: bit-identical detections and proposals, every stage."""

from __future__ import annotations

import math

import pytest
import torch

from detector.frames import ImageFrame
from detector.inspect import inspect, proposal_size_table, run_heads, run_rpn_stage, trace_proposal
from detector.models import DEMO_ARCH, build_model
from detector.proposals import FUNNEL_STAGES, ProposalSettings, proposal_recall


BUILDERS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn", DEMO_ARCH)


@pytest.fixture(scope="session")
def models():
    out = {}
    for name in BUILDERS:
        torch.manual_seed(1)
        out[name] = build_model(name, ("circle", "square"), min_size=128, max_size=160, box_score_thresh=0.0).eval()
    return out


@pytest.fixture(scope="session")
def images():
    g = torch.Generator().manual_seed(7)
    return [torch.rand(3, 96, 128, generator=g), torch.rand(3, 150, 110, generator=g)]


@pytest.fixture(scope="session")
def reference(models, images):
    """What torchvision itself returns: detections from model(images), proposals from model.rpn."""
    out = {}
    with torch.no_grad():
        for name, model in models.items():
            detections = model(images)
            image_list, _ = model.transform(images)
            proposals, _ = model.rpn(image_list, model.backbone(image_list.tensors))
            out[name] = (detections, proposals)
    return out


@pytest.fixture(scope="session")
def inspections(models, images):
    return {name: inspect(model, images) for name, model in models.items()}


@pytest.mark.parametrize("name", BUILDERS)
def test_detections_are_bit_identical_to_model_forward(name, reference, inspections):
    detections, _ = reference[name]
    result = inspections[name]
    assert len(result.raw_detections) == 2
    for ref, ours, mine in zip(detections, result.raw_detections, result.detections):
        assert len(ref["boxes"]) > 0
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(ref[key], ours[key]), key
        assert torch.equal(ref["boxes"], mine.boxes)


@pytest.mark.parametrize("name", BUILDERS)
def test_post_nms_proposals_equal_model_rpn(name, reference, inspections):
    _, proposals = reference[name]
    result = inspections[name]
    for ref, ours in zip(proposals, result.proposals):
        assert len(ref) > 0
        assert torch.equal(ref, ours.boxes)
    assert torch.equal(torch.cat(proposals), result.roi_boxes)


@pytest.mark.parametrize("name", BUILDERS)
def test_frames_shapes_and_strides(name, models, images, inspections):
    model, result = models[name], inspections[name]
    assert [f.original_size for f in result.frames] == [(128, 96), (110, 150)]  # (W, H)
    for frame in result.frames:
        assert max(frame.resized_size) <= 160 and min(frame.resized_size) <= 128
        assert frame.padded_size[0] % 32 == 0 and frame.padded_size[1] % 32 == 0
        assert frame.padded_size[0] >= frame.resized_size[0] and frame.padded_size[1] >= frame.resized_size[1]
    per_location = model.rpn.anchor_generator.num_anchors_per_location()
    for level, logits, anchors, a in zip(result.stage.levels, result.stage.objectness, result.stage.anchors,
                                         per_location):
        assert logits.shape == (2, a, level.grid[1], level.grid[0])  # grid is (columns, rows)
        assert level.anchors_per_location == a
        assert anchors.shape == (level.num_anchors, 4)
        assert level.stride == (result.frames[0].padded_size[0] // level.grid[0],
                                result.frames[0].padded_size[1] // level.grid[1])
    assert result.stage.proposals.shape == (2, sum(result.stage.num_anchors_per_level), 4)
    # RoIAlign output per RoI, and class logits per RoI
    rois = result.roi_boxes.shape[0]
    assert result.pooled.shape[0] == rois and result.class_logits.shape == (rois, 3)
    for image in range(2):
        assert sum(result.roi_level_counts(image).values()) == len(result.proposals[image])


def test_box_frames_round_trip_and_match_postprocess(inspections):
    result = inspections["fasterrcnn_resnet50_fpn"]
    frame = result.frames[1]
    boxes = torch.tensor([[10.0, 20.0, 50.0, 90.0], [0.0, 0.0, 110.0, 150.0]])
    assert torch.allclose(frame.to_original(frame.to_input(boxes)), boxes, atol=1e-4)
    assert torch.allclose(frame.to_input(torch.tensor([[0.0, 0.0, 110.0, 150.0]])),
                          torch.tensor([[0.0, 0.0, frame.resized_size[0], frame.resized_size[1]]], dtype=torch.float32))
    # a detection in the input frame, mapped with the helper, is the detection torchvision returns
    assert isinstance(frame, ImageFrame) and frame.scale[1] == pytest.approx(frame.resized_size[1] / 150)


@pytest.mark.parametrize("name", BUILDERS)
def test_funnel_counts_add_up(name, models, inspections):
    model, result = models[name], inspections[name]
    settings = result.settings
    assert settings == ProposalSettings.from_rpn(model.rpn)
    for image, funnel in enumerate(result.funnels):
        counts = result.counts(image)
        assert counts["anchors"] == sum(result.stage.num_anchors_per_level)
        assert counts["top_k"] == sum(min(n, settings.pre_nms_top_n) for n in result.stage.num_anchors_per_level)
        assert counts["clipped"] == counts["top_k"]
        order = ["anchors"] + [s for s, _ in FUNNEL_STAGES]
        assert all(counts[a] >= counts[b] for a, b in zip(order, order[1:]))
        assert counts["post_nms"] == min(counts["after_nms"], settings.post_nms_top_n)
        assert counts["rois"] == counts["post_nms"]
        assert counts["detections"] <= model.roi_heads.detections_per_img
        # every stage's boxes lie inside the image after clipping, and scores are sigmoid(logit) of their anchor
        w, h = result.frames[image].resized_size
        boxes = funnel.after_nms.boxes
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        logits = result.stage.objectness_flat.reshape(2, -1)[image]
        assert torch.allclose(torch.sigmoid(logits[funnel.post_nms.anchor_index]), funnel.post_nms.scores, atol=1e-6)
        # proposals keep the level of their anchor
        bounds = torch.tensor(result.stage.num_anchors_per_level).cumsum(0)
        assert torch.equal(torch.bucketize(funnel.top_k.anchor_index, bounds, right=True), funnel.top_k.levels)


def test_knobs_rerun_only_the_cheap_part_and_change_what_they_should(models, images):
    model = models["fasterrcnn_mobilenet_v3_large_320_fpn"]
    calls = []
    hook = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        stage = run_rpn_stage(model, images[:1])
        assert len(calls) == 1
        base = ProposalSettings.from_rpn(model.rpn).with_(pre_nms_top_n=60, post_nms_top_n=40, nms_thresh=0.7)
        ref = run_heads(model, stage, base).funnels[0]
        fewer = run_heads(model, stage, base.with_(post_nms_top_n=10)).funnels[0]
        looser = run_heads(model, stage, base.with_(nms_thresh=0.95)).funnels[0]
        stricter = run_heads(model, stage, base.with_(score_thresh=0.5)).funnels[0]
        smaller_k = run_heads(model, stage, base.with_(pre_nms_top_n=5)).funnels[0]
        assert len(calls) == 1, "the backbone ran again"
    finally:
        hook.remove()

    def same(a, b):
        return torch.equal(a.boxes, b.boxes) and torch.equal(a.anchor_index, b.anchor_index)

    # post_nms_top_n only truncates the final list
    for stage_name in ("top_k", "after_score_thresh", "after_nms"):
        assert same(getattr(ref, stage_name), getattr(fewer, stage_name))
    assert len(fewer.post_nms) == 10 and torch.equal(fewer.post_nms.boxes, ref.post_nms.boxes[:10])
    # nms_thresh changes nothing before NMS; a looser threshold keeps at least as many
    assert same(ref.pre_nms, looser.pre_nms) and len(looser.after_nms) >= len(ref.after_nms)
    # score_thresh drops exactly the pre-NMS boxes whose objectness is below it
    assert same(ref.after_min_size, stricter.after_min_size)
    expected = ref.after_min_size.take(torch.where(ref.after_min_size.scores >= 0.5)[0])
    assert same(stricter.after_score_thresh, expected)
    # pre_nms_top_n keeps the k best of each level
    assert len(smaller_k.top_k) == 5 * len(stage.levels)
    for level in range(len(stage.levels)):
        ours = smaller_k.top_k.scores[smaller_k.top_k.levels == level]
        theirs = ref.top_k.scores[ref.top_k.levels == level]
        assert torch.equal(ours, theirs[:5])


def test_proposal_traces_back_to_its_anchor(models, inspections):
    model = models["fasterrcnn_resnet50_fpn"]
    result = inspections["fasterrcnn_resnet50_fpn"]
    stage = result.stage
    for rank in (0, 5, len(result.proposals[1]) - 1):
        trace = trace_proposal(result, 1, rank)
        loc = trace.location
        level = stage.levels[loc.level_index]
        sx, sy = level.stride
        # the anchor is the level's cell anchor a, shifted to the cell's centre (x * stride, y * stride)
        expected_anchor = level.cell_anchors[loc.shape] + torch.tensor([loc.column * sx, loc.row * sy, loc.column * sx, loc.row * sy])
        assert torch.equal(trace.anchor, expected_anchor)
        assert (level.cell_anchors[loc.shape][2] - level.cell_anchors[loc.shape][0]).item() == pytest.approx(
            loc.size / math.sqrt(loc.ratio), abs=1.0)
        # decoding the head's deltas at (level, a, y, x) gives the regressed box
        deltas = stage.bbox_deltas[loc.level_index][1, 4 * loc.shape: 4 * loc.shape + 4, loc.row, loc.column]
        decoded = model.rpn.box_coder.decode_single(deltas[None], trace.anchor[None])[0]
        assert torch.allclose(decoded, trace.regressed, atol=1e-4)
        # the score is the sigmoid of that cell's logit, and the proposal is the regressed box clipped
        logit = stage.objectness[loc.level_index][1, loc.shape, loc.row, loc.column]
        assert trace.score == pytest.approx(torch.sigmoid(logit).item())
        w, h = result.frames[1].resized_size
        clipped = torch.stack([trace.regressed[0].clamp(0, w), trace.regressed[1].clamp(0, h),
                               trace.regressed[2].clamp(0, w), trace.regressed[3].clamp(0, h)])
        assert torch.equal(clipped, trace.proposal)
    with pytest.raises(IndexError):
        trace_proposal(result, 1, 10_000)


def test_table1_counts_every_proposal(inspections):
    result = inspections["fasterrcnn_resnet50_fpn"]
    rows = proposal_size_table([result])
    assert len(rows) == sum(level.anchors_per_location for level in result.stage.levels)
    assert sum(r.count for r in rows) == sum(len(p) for p in result.proposals)
    listed = {(r.size, r.ratio): r.paper_wh for r in rows if r.paper_wh}
    assert listed[(128, 1.0)] == (113, 114) and listed[(512, 0.5)] == (768, 437)
    for r in rows:
        assert (r.mean_wh is None) == (r.count == 0)
        if r.ratio == 1.0:
            assert r.anchor_wh == (float(r.size), float(r.size))


def test_eval_mode_is_required(models, images):
    model = models["fasterrcnn_mobilenet_v3_large_320_fpn"]
    model.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            run_rpn_stage(model, images)
    finally:
        model.eval()


def test_trained_demo_model_objectness_peaks_on_objects():
    from detector.images import to_tensor
    from detector.checkpoints import DEMO, DEMO_CHECKPOINT, load_model
    from detector.scenes import make_scene

    if not DEMO_CHECKPOINT.is_file():
        pytest.skip("the demo checkpoint is not shipped in this checkout")
    model = load_model(DEMO).model
    scene = make_scene(10_001, 320, 240)
    image = to_tensor(scene.image)
    result = inspect(model, [image])
    with torch.no_grad():
        reference = model([image])[0]
    assert torch.equal(reference["boxes"], result.detections[0].boxes)
    frame, stage = result.frames[0], result.stage
    gt = torch.tensor(scene.boxes)
    # cells whose anchor centre lies on an object score higher than cells on the background
    level = stage.levels[0]
    heat = stage.objectness_prob(0, 0).amax(0)
    ys, xs = torch.meshgrid(torch.arange(level.grid[1]), torch.arange(level.grid[0]), indexing="ij")
    centres = torch.stack([xs * level.stride[0], ys * level.stride[1]], -1).float().reshape(-1, 2)
    centres = centres / torch.tensor([frame.scale[0], frame.scale[1]])
    inside = ((centres[:, None, 0] >= gt[:, 0]) & (centres[:, None, 0] <= gt[:, 2])
              & (centres[:, None, 1] >= gt[:, 1]) & (centres[:, None, 1] <= gt[:, 3])).any(1)
    assert inside.any() and (~inside).any()
    assert heat.reshape(-1)[inside].mean() > 2 * heat.reshape(-1)[~inside].mean()
    # and its best proposals find the objects
    recall = proposal_recall(result.proposals[0].boxes, frame.to_input(gt), [10])
    assert recall[0.5][0] >= 0.5


@pytest.mark.parametrize("name", BUILDERS)
def test_heads_reuse_per_roi_work_with_the_same_bits(name, models, images):
    # a knob sequence on one stage: RoIs the stage has seen skip RoIAlign and the box head, and every
    # output equals a run without reuse (itself bit-identical to model(images) at the model's settings)
    model = models[name]
    stage = run_rpn_stage(model, images)
    base = ProposalSettings.from_rpn(model.rpn)
    sequence = [base, base.with_(nms_thresh=0.6), base.with_(nms_thresh=0.6, post_nms_top_n=50), base,
                base.with_(score_thresh=0.3), base.with_(nms_thresh=0.5)]
    ran = []
    for settings in sequence:
        before = stage.head_memo.head_rows_run
        ours, cold = run_heads(model, stage, settings), run_heads(model, stage, settings, reuse=False)
        ran.append(stage.head_memo.head_rows_run - before)
        for key in ("roi_boxes", "roi_level", "pooled", "class_logits", "box_regression"):
            assert torch.equal(getattr(ours, key), getattr(cold, key)), (settings, key)
        for a, b in zip(ours.raw_detections, cold.raw_detections):
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(a[key], b[key]), (settings, key)
    # the first run pools every RoI; fewer post-NMS RoIs and the model's settings again are all known
    assert ran[0] > 0 and ran[2] == 0 and ran[3] == 0, ran
