"""A checkpoint from elsewhere in headless Chromium: add a torchvision references checkpoint in the
sidebar, see it chosen (named upload:<file> in the URL) and detect with it on /detect."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser


def test_add_a_references_checkpoint_in_the_sidebar_and_detect_with_it(app_url, page, tmp_path, session_tmp):
    torch.manual_seed(5)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3,
                                                  box_score_thresh=0.0)
    path = tmp_path / "model_7.pth"  # as references/detection/train.py names its per-epoch files
    torch.save({"model": model.state_dict(), "optimizer": {}, "lr_scheduler": {},
                "args": argparse.Namespace(model="fasterrcnn_mobilenet_v3_large_320_fpn", rpn_score_thresh=None,
                                           weights=None, weights_backbone=None, epochs=26),
                "epoch": 7}, path)
    page.goto(f"{app_url}/detect?model=demo")
    wait_for_app(page, 180)
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Add a model file").click()
    sidebar.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(path))
    # the upload is the widget's value once the uploader lists it and the rerun it sends has finished:
    # a click before then finds no file ("Choose a file first.")
    sidebar.get_by_text("model_7.pth", exact=True).wait_for(timeout=120_000)
    wait_for_app(page, 180)
    sidebar.get_by_role("button", name="Add checkpoint").click()
    sidebar.get_by_text("Stored as model_7.pt and chosen").wait_for(timeout=120_000)
    wait_for_app(page, 180)
    assert_no_exception(page)
    assert "model=upload%3Amodel_7.pt" in page.url or "model=upload:model_7.pt" in page.url
    # /detect now runs the added model: its numbered classes label the sample images' detections
    page.get_by_text("uploaded model_7.pt").first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"\d+ detections? in")).first.wait_for(timeout=120_000)
    page.screenshot(path=str(session_tmp / "model-files-flow.png"), full_page=True)
