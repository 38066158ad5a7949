"""Browser: /rpn, /detect and /anchors open with every architecture the sidebar's picker offers
(random weights where none are cached) and show no exception: a random head returns boxes of
any size, down to torchvision's 0.01 px floor, and every drawing path has to take them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from detector import checkpoints, models
from tests.browser.conftest import assert_no_exception, wait_for_app
from ui.inputs import SAMPLE_SEEDS, sample_image

pytestmark = pytest.mark.browser

# the picker's model names, as ui.model.model_choices lists them (runs and uploads aside)
PICKER = [checkpoints.DEMO] + [n for n in models.MODEL_NAMES if n != models.DEMO_ARCH]


@pytest.mark.parametrize("model", PICKER)
def test_rpn_detect_and_anchors_open_with_every_model(app_url, page, session_tmp, model):
    main = page.locator("[data-testid='stMain']")
    # /rpn on its sample image: the Detections view (boxes drawn by plotly) and the RoIAlign view
    # (the chosen RoI cropped from the image)
    page.goto(f"{app_url}/rpn?model={model}&view=Detections")
    wait_for_app(page, 300)
    assert_no_exception(page)
    expect(main.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
    main.locator("[data-testid='stButtonGroup']").get_by_text("RoIAlign", exact=True).click()  # a user's click
    wait_for_app(page, 300)
    assert_no_exception(page)
    expect(main.get_by_text("RoI pooling beside RoIAlign")).to_be_visible(timeout=60_000)

    # /detect on one upload: opened with the demo model (its four sample scenes are cached after the
    # first case), the image uploaded, then the model picked in the sidebar, as a user switches models
    # on one image (opening /detect with the model would cost four forwards at its 800 px: 45 s of the
    # suite for the three resnet50 builders); the gallery's figure, then every detection, in the
    # figure and the PNG
    upload = session_tmp / "every-model-upload.png"
    upload.write_bytes(sample_image(SAMPLE_SEEDS[0])[0])
    page.goto(f"{app_url}/detect?model={checkpoints.DEMO}")
    wait_for_app(page, 300)
    main.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(upload))
    wait_for_app(page, 300)
    if model != checkpoints.DEMO:
        page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
        page.get_by_role("option", name=re.compile(rf"^{re.escape(model)} \(")).click()
        wait_for_app(page, 300)
    expect(main.get_by_text(re.compile(r"\d+ detections? in 1 image(?!s)")).first).to_be_visible(timeout=300_000)
    if model != checkpoints.DEMO:  # the page names the model picked
        expect(main.get_by_text(f"Model: {model} (")).to_be_visible()
    assert_no_exception(page)
    # every detection the model returns (its own box_score_thresh)
    main.locator("[data-testid='stSlider']").filter(has_text="Score threshold").get_by_role("slider").press("Home")
    wait_for_app(page, 300)
    assert_no_exception(page)
    with page.expect_download(timeout=120_000) as download:
        main.get_by_role("button", name="Annotated PNG").first.click()
    png = Path(download.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG"), png[:40]

    page.goto(f"{app_url}/anchors?model={model}")
    wait_for_app(page, 300)
    assert_no_exception(page)
    expect(main.get_by_text("How many anchors")).to_be_visible()
