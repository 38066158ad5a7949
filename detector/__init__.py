"""Faster R-CNN Explorer's library: torchvision's Faster R-CNN, opened up stage by stage.

No module in this package imports streamlit or plotly at import time except `detector.viz`
(plotly only); the training engine imports neither.
"""

__version__ = "0.1.0"
