"""The architecture registry: each name's builder, its pretrained weights, one default.

Adding an architecture is adding one `Architecture` entry to `ARCHITECTURES`. Builders are always
given `weights_backbone` explicitly so nothing is fetched implicitly; pretrained weights come only
from torchvision's cache (`detector.weights`, which reads this registry). `detector.models.build_model`
builds by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.detection import faster_rcnn as tv_frcnn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead

from detector.wording import counted

DEMO_ARCH = "mobilenet_v3_fpn_lite"
# The one default architecture (training, the model picker, the CLI): fast on CPU, COCO weights exist.
# On a GPU, a model source left unchosen prefers the stronger GPU_DEFAULT_ARCH when its weights are cached.
DEFAULT_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
GPU_DEFAULT_ARCH = "fasterrcnn_resnet50_fpn_v2"

# COCO's 91 ids as torchvision names them; index 0 is background, "N/A" marks unused ids.
COCO_CLASS_NAMES: tuple[str, ...] = tuple(tv_frcnn.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:])

# Keyword arguments that reach FasterRCNN.__init__ (the RPN / RoI knobs and the transform).
MODEL_KNOBS = (
    "min_size", "max_size", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test", "rpn_nms_thresh", "rpn_fg_iou_thresh",
    "rpn_bg_iou_thresh", "rpn_batch_size_per_image", "rpn_positive_fraction", "rpn_score_thresh",
    "box_score_thresh", "box_nms_thresh", "box_detections_per_img", "box_fg_iou_thresh",
    "box_bg_iou_thresh", "box_batch_size_per_image", "box_positive_fraction",
)

# A builder: (its Architecture, class names, pretrained?, FasterRCNN kwargs) -> the model.
Builder = Callable[["Architecture", tuple[str, ...], bool, dict[str, Any]], FasterRCNN]


@dataclass(frozen=True)
class Architecture:
    """A buildable architecture: its builder, its pretrained weights, and a line for the UI."""

    name: str
    description: str
    pretrained: Any  # a torchvision WeightsEnum member, or None
    pretrained_kind: str  # "coco" (whole detector), "imagenet" (backbone only) or "none"
    on_cpu: str  # what to expect on a 2-core CPU
    build: Builder = field(repr=False, compare=False)


def _torchvision(builder: Callable[..., FasterRCNN]) -> Builder:
    """torchvision's own builder: its COCO weights (box predictor replaced for other classes) or none."""

    def build(arch: Architecture, class_names: tuple[str, ...], pretrained: bool, kwargs: dict[str, Any]) -> FasterRCNN:
        num_classes = len(class_names) + 1
        if not pretrained:
            return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
        model = builder(weights=arch.pretrained, weights_backbone=None, **kwargs)
        if tuple(class_names) != COCO_CLASS_NAMES:
            replace_box_predictor(model, num_classes)
        return model

    return build


def _resnet50_custom(arch: Architecture, class_names: tuple[str, ...], pretrained: bool,
                     kwargs: dict[str, Any]) -> FasterRCNN:
    """FasterRCNN over resnet_fpn_backbone('resnet50'): ImageNet backbone weights or none."""
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=arch.pretrained if pretrained else None,
        trainable_layers=3 if pretrained else 5,
    )
    return FasterRCNN(backbone, num_classes=len(class_names) + 1, **kwargs)


def _demo(arch: Architecture, class_names: tuple[str, ...], pretrained: bool, kwargs: dict[str, Any]) -> FasterRCNN:
    """The shipped demo: MobileNetV3 + FPN, a 256-wide box head, 320 px input; trained from scratch here."""
    backbone = mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6, norm_layer=nn.BatchNorm2d
    )
    resolution = 7  # MultiScaleRoIAlign's output size
    defaults = dict(min_size=320, max_size=640, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
                    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, box_batch_size_per_image=128)
    return FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchor_generator([[16, 32, 64, 128, 256]] * 3, None),
        box_head=TwoMLPHead(backbone.out_channels * resolution**2, 256),
        box_predictor=FastRCNNPredictor(256, len(class_names) + 1),
        **{**defaults, **kwargs},
    )


def anchor_generator(sizes: Any, ratios: Any) -> AnchorGenerator:
    """torchvision's AnchorGenerator for per-level `sizes` and aspect `ratios` (height / width; one list
    per level, one list for all, or None for 0.5, 1, 2)."""
    sizes_t = tuple(tuple(int(s) for s in level) for level in sizes)
    if ratios is None:
        ratios = [[0.5, 1.0, 2.0]] * len(sizes_t)
    ratios_t = tuple(tuple(float(r) for r in level) for level in ratios)
    if len(ratios_t) == 1 and len(sizes_t) > 1:
        ratios_t = ratios_t * len(sizes_t)
    if len(ratios_t) != len(sizes_t):
        raise ValueError(f"{counted(len(sizes_t), 'level')} of anchor sizes but {len(ratios_t)} of ratios")
    return AnchorGenerator(sizes_t, ratios_t)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "fasterrcnn_resnet50_fpn",
            "ResNet-50 + FPN (the torchvision classic, 41M parameters)",
            tv_frcnn.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
            "coco",
            "slow on CPU (about 2 s per image)",
            _torchvision(tv_frcnn.fasterrcnn_resnet50_fpn),
        ),
        Architecture(
            "fasterrcnn_resnet50_fpn_v2",
            "ResNet-50 + FPN v2 (improved recipe, 43M parameters)",
            tv_frcnn.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            "coco",
            "slow on CPU (about 3 s per image)",
            _torchvision(tv_frcnn.fasterrcnn_resnet50_fpn_v2),
        ),
        Architecture(
            "fasterrcnn_mobilenet_v3_large_fpn",
            "MobileNetV3-Large + FPN, 800 px input (19M parameters)",
            tv_frcnn.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
            "coco",
            "about 0.5 s per image on CPU",
            _torchvision(tv_frcnn.fasterrcnn_mobilenet_v3_large_fpn),
        ),
        Architecture(
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            "MobileNetV3-Large + FPN, 320 px input (19M parameters)",
            tv_frcnn.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
            "coco",
            "fast on CPU (about 0.1 s per image)",
            _torchvision(tv_frcnn.fasterrcnn_mobilenet_v3_large_320_fpn),
        ),
        Architecture(
            "resnet50_fpn_custom",
            "FasterRCNN(resnet_fpn_backbone('resnet50')): the classic fine-tuning example",
            ResNet50_Weights.IMAGENET1K_V1,
            "imagenet",
            "slow on CPU (about 2 s per image)",
            _resnet50_custom,
        ),
        Architecture(
            DEMO_ARCH,
            "MobileNetV3-Large + FPN with a 256-wide box head, 320 px input: the shipped demo",
            None,
            "none",
            "fast on CPU (about 0.1 s per image)",
            _demo,
        ),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The Architecture called `name`; ValueError listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None


def replace_box_predictor(model: FasterRCNN, num_classes: int) -> None:
    """Replace the final classification/regression layer for `num_classes` (background included)."""
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
