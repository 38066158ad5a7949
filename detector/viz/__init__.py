"""Plotly figure builders shared by the pages: the only plotly code in the project.

`boxes` holds the one overlay path (image figure + boxes by style); each topic has its module
(anchors, rpn, data, training).
"""

from detector.viz.boxes import STYLES, add_boxes, class_color, draw_boxes_on_image, image_figure

__all__ = ["STYLES", "add_boxes", "class_color", "draw_boxes_on_image", "image_figure"]
