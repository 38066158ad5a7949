"""Per-epoch RPN snapshots: what the RPN sees on a few fixed validation images as training goes.

Built with `detector.inspect`'s stage functions (`run_rpn_stage`, `run_heads`), the one way this
project runs the stages, so a snapshot's proposals and detections are what `/rpn` shows for the
same weights. The result is a `runs.RpnSnapshot`; `runs.write_snapshot` stores it and
`runs.read_snapshot` reads it back (`detector/runs/snapshot_file.py`, the file format's one home).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from detector.runs.snapshot_file import RpnSnapshot, SnapshotImage

SNAPSHOT_MAP_SIDE = 64  # objectness maps are max-pooled down to at most this many cells a side
SNAPSHOT_PROPOSALS = 50  # top proposals kept per snapshot image


@torch.inference_mode()
def rpn_snapshot(model: nn.Module, dataset: Any, indices: Sequence[int], device: torch.device,
                 class_names: Sequence[str], epoch: int) -> RpnSnapshot:
    """The RPN's state on a few fixed images (eval mode): objectness, top proposals, detections.

    Each image goes through `inspect.run_rpn_stage` and `inspect.run_heads` with the model's own
    settings (bit-identical to `model(images)`). Objectness per level is the best anchor shape per
    cell, the cells whose centre lies in the padding dropped, max-pooled in whole blocks to at most
    SNAPSHOT_MAP_SIDE cells a side, as the RPN page pools; each level's cell placement (original
    pixels, `frames.cell_placement`) goes into the meta as `cells`, so the map is drawn exactly where
    `/rpn` draws it. Boxes in original image pixels.
    """
    from detector import frames
    from detector.inspect import run_heads, run_rpn_stage

    was_training = model.training
    model.eval()
    images = []
    try:
        for idx in indices:
            image, target = dataset[idx]
            stage = run_rpn_stage(model, [image.to(device)])
            inspection = run_heads(model, stage)
            frame = stage.frames[0]
            objectness, placements = [], []
            for k, level in enumerate(stage.levels):
                prob = stage.objectness[k][0].float().sigmoid().amax(0).cpu().numpy()  # (rows, columns): best shape per cell
                valid = frames.visible_cells(prob, level.stride, frame.resized_size)
                factor = frames.pool_factor(valid.shape, SNAPSHOT_MAP_SIDE)
                objectness.append(frames.max_pool_cells(valid, factor).astype(np.float16))
                placements.append(frames.cell_placement(level.stride, frame.scale, factor))
            post = inspection.funnels[0].post_nms
            detections = inspection.detections[0]
            images.append(SnapshotImage(
                file=dataset.records[idx].file, width=frame.original_size[0], height=frame.original_size[1],
                gt_boxes=target["boxes"].numpy().astype(np.float32),
                gt_labels=target["labels"].numpy().astype(np.int64),
                objectness=tuple(objectness), level_names=tuple(level.name for level in stage.levels),
                proposals=frame.to_original(post.boxes[:SNAPSHOT_PROPOSALS]).float().numpy(),
                proposal_scores=post.scores[:SNAPSHOT_PROPOSALS].float().numpy(),
                boxes=detections.boxes.float().numpy(), scores=detections.scores.float().numpy(),
                labels=detections.labels.numpy().astype(np.int64),
                cells=tuple(placements), resized=tuple(frame.resized_size), padded=tuple(frame.padded_size),
            ))
    finally:
        model.train(was_training)
    return RpnSnapshot(epoch, tuple(class_names), tuple(images), {"map_side": SNAPSHOT_MAP_SIDE})
