"""bench/load.py --upload-images: the server's memory per uploaded MB, one zip of synthetic images
uploaded on /data in one browser."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from bench.harness import ROOT, launch_options, new_context_async, wait_for_app_async
from bench.procfs import rss_mb

def make_dataset_zip(tmp: Path, images: int, width: int, height: int) -> Path:
    """A synthetic COCO dataset of `images` images, zipped (stored, not deflated: PNGs do not shrink)."""
    folder = tmp / f"upload-{images}"
    subprocess.run([sys.executable, "-m", "detector", "synth", str(folder), "--images", str(images), "--width",
                    str(width), "--height", str(height)], cwd=ROOT, check=True, capture_output=True)
    out = tmp / f"upload-{images}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder))
    return out


async def upload_phase(url: str, archive: Path, server_pid: int, timeout_s: float) -> dict:
    """Upload `archive` on /data in one browser; the server's RSS before, at its peak, and after."""
    from playwright.async_api import async_playwright

    peak, done = [0.0], asyncio.Event()

    async def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(server_pid))
            await asyncio.sleep(0.1)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(**launch_options())
        task = asyncio.create_task(watch())
        try:
            page = await (await new_context_async(browser)).new_page()
            await page.goto(f"{url}/data", timeout=timeout_s * 1000)
            await wait_for_app_async(page, timeout_s)
            await asyncio.sleep(2)
            before = rss_mb(server_pid)  # the page loaded (torch and the app imported): only the upload is left
            peak[0] = before
            start = time.monotonic()
            await page.get_by_test_id("stMainBlockContainer").locator(  # the page body's, not the sidebar's model-file uploader
                "[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(archive))
            await asyncio.sleep(1.0)
            await wait_for_app_async(page, timeout_s)
            seconds = time.monotonic() - start
            exc = await page.locator("[data-testid='stException']").count()
        finally:
            done.set()
            await task
            await browser.close()
    await asyncio.sleep(2)
    mb = archive.stat().st_size / 2**20
    after = rss_mb(server_pid)
    return {"archive_mb": mb, "rss_before_mb": before, "rss_peak_mb": peak[0], "rss_after_mb": after,
            "peak_mb_per_uploaded_mb": (peak[0] - before) / mb, "kept_mb_per_uploaded_mb": (after - before) / mb,
            "seconds": seconds, "exception": bool(exc)}
