"""Synthetic scenes: shapes of a few classes on varied backgrounds, with exact ground truth.

Deterministic by seed, so every page has sample images offline, tests have data with known boxes,
and the demo model has something to learn. Boxes are absolute [x1, y1, x2, y2] pixels in the
scene's own frame, pixel edges (a shape covering columns 10..19 has x1 = 10, x2 = 20).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from detector.frames import iou_matrix

CLASS_NAMES: tuple[str, ...] = ("circle", "rectangle", "triangle")


@dataclass(frozen=True)
class Scene:
    """One synthetic image and its ground truth (labels are 1-based indices into class_names)."""

    image: Image.Image
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...] = CLASS_NAMES
    seed: int = 0


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth two-colour gradient with stripes and noise: cluttered enough to need learning."""
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs * math.cos(angle) + ys * math.sin(angle)) / max(width, height)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    arr = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    if rng.random() < 0.5:  # faint stripes
        period = rng.uniform(8, 40)
        arr += 18 * np.sin(2 * math.pi * (xs if rng.random() < 0.5 else ys) / period)[..., None]
    arr += rng.normal(0, 8, arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), mode="RGB")


def _shape_colour(rng: np.random.Generator, bg: Image.Image, box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """A colour that stands out from the background under the shape."""
    x1, y1, x2, y2 = box
    under = np.asarray(bg.crop((x1, y1, x2, y2)), dtype=np.float32).reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - under).sum() > 200:
            break
    return tuple(int(c) for c in colour)  # type: ignore[return-value]


def make_scene(
    seed: int,
    width: int = 320,
    height: int = 240,
    max_objects: int = 5,
    empty_fraction: float = 0.08,
) -> Scene:
    """Draw a scene: 0..max_objects shapes (circles/ellipses, rectangles, triangles), little overlap.

    Shapes span about 8% to 60% of the shorter side, rectangles and ellipses with aspect ratios
    from 1:3 to 3:1, so anchors of several sizes and ratios matter. About `empty_fraction` of
    seeds give an image with no object (a negative).
    """
    rng = np.random.default_rng(seed)
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    n = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_objects + 1))
    short = min(width, height)
    for _ in range(n):
        for _attempt in range(30):
            label = int(rng.integers(1, len(CLASS_NAMES) + 1))
            size = rng.uniform(0.08, 0.6) * short
            aspect = 1.0 if label == 3 else float(np.exp(rng.uniform(math.log(1 / 3), math.log(3))))
            if label == 1 and rng.random() < 0.5:
                aspect = 1.0  # half of the circles are round
            w = max(6, int(round(size * math.sqrt(aspect))))
            h = max(6, int(round(size / math.sqrt(aspect))))
            if w >= width - 2 or h >= height - 2:
                continue
            x1 = int(rng.integers(0, width - w))
            y1 = int(rng.integers(0, height - h))
            box = (float(x1), float(y1), float(x1 + w), float(y1 + h))
            if not boxes or iou_matrix([box], boxes).max() < 0.15:
                break
        else:
            continue
        colour = _shape_colour(rng, image, (x1, y1, x1 + w, y1 + h))
        corners = [x1, y1, x1 + w - 1, y1 + h - 1]  # PIL's inclusive pixel corners
        if label == 1:
            draw.ellipse(corners, fill=colour)
        elif label == 2:
            draw.rectangle(corners, fill=colour)
        else:
            apex = x1 + int(rng.integers(0, w))
            draw.polygon([(apex, y1), (x1, y1 + h - 1), (x1 + w - 1, y1 + h - 1)], fill=colour)
        boxes.append(box)
        labels.append(label)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    return Scene(image=image, boxes=tuple(boxes), labels=tuple(labels), seed=seed)


def sample_scenes(count: int = 4, start_seed: int = 10_000, width: int = 320, height: int = 240) -> list[Scene]:
    """The fixed sample images every page offers offline (seeds chosen to have objects)."""
    scenes = []
    seed = start_seed
    while len(scenes) < count:
        scene = make_scene(seed, width, height)
        if scene.boxes:
            scenes.append(scene)
        seed += 1
    return scenes
