"""`salmap serve` end to end in a real browser: Debian's Chromium driven by Playwright.

The test skips only where no Chromium is installed; with SALMAP_REQUIRE_BROWSER=1 (as CI sets
it) a missing browser is a failure instead. SALMAP_SCREENSHOT=PATH keeps the page's picture."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

# Chromium's own network traffic (updates, sync, QUIC probes) is off: the page needs none
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    explicit = os.environ.get("SALMAP_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def missing(reason: str) -> None:
    if os.environ.get("SALMAP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SALMAP_REQUIRE_BROWSER=1: the browser test must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        missing("no Chromium found (apt-get install chromium, or set SALMAP_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed (pip install playwright)")
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`salmap serve` in its own process on a free port; its address."""
    command = [sys.executable, "-m", "salmap", "serve", "--port", "0", "--curve-steps", "14"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    printed = []
    try:
        while True:
            line = lines.get(timeout=120)
            if line is None:
                pytest.fail("salmap serve stopped:\n" + "".join(printed))
            printed.append(line)
            found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            if found:
                break
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_explore_a_photo_in_chromium(chromium: str, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(photo, quality=92)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            failures: list[str] = []
            page.on("pageerror", lambda error: failures.append(str(error)))
            page.goto(server)
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(page.locator("#model")).to_contain_text("efficientnet_lite0")

            # upload a photo: the prediction and the default method's overlay
            page.set_input_files("#file", str(photo))
            top = page.locator("#top button")
            expect(top).to_have_count(5)
            expect(top.first).to_contain_text(re.compile("tabby|tiger cat|Egyptian cat"))
            expect(page.locator(".card[data-method=gradcam]")).to_have_attribute("data-state", "ready")

            # a second method: two overlays side by side, at the screen copy's size
            page.check("#methods input[value=gradient]")
            ready = page.locator(".card[data-state=ready]")
            expect(ready).to_have_count(2)
            for canvas in page.locator(".card canvas").all():
                assert canvas.evaluate("c => [c.width, c.height]") == [451, 300]
            gradcam = page.locator(".card[data-method=gradcam]")
            gradcam.locator("canvas").hover(position={"x": 150, "y": 80})
            expect(gradcam.locator(".readout")).to_contain_text(re.compile(r"map \d\.\d{3} at pixel"))

            # another class: both maps follow it
            second = top.nth(1)
            wanted = second.get_attribute("data-index")
            second.click()
            expect(second).to_have_class(re.compile("current"))
            for method in ("gradcam", "gradient"):
                card = page.locator(f".card[data-method={method}]")
                expect(card).to_have_attribute("data-target", wanted)
                expect(card).to_have_attribute("data-state", "ready")
            expect(page.locator("#status")).to_contain_text(f"[{wanted}]")

            # deletion and insertion of the Grad-CAM map
            gradcam.locator(".curves-button").click()
            expect(gradcam).to_have_attribute("data-curves", "ready", timeout=60_000)
            text = gradcam.locator("[data-auc=deletion]").inner_text()
            auc = float(re.search(r"(\d\.\d+)", text).group(1))
            assert 0.0 <= auc <= 1.0
            expect(page.locator("#aucs tbody tr")).to_have_count(1)

            # download the map: a .npy at the image's size
            with page.expect_download() as download:
                gradcam.locator("a.npy").click()
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            assert saved.name == f"chelsea_gradcam_class{wanted}.npy"
            saliency = np.load(saved)
            assert saliency.shape == (300, 451) and saliency.dtype == np.float32
            assert float(saliency.min()) >= 0.0 and float(saliency.max()) <= 1.0

            # a text file: a clear message, and the page still works
            page.set_input_files("#file", str(notes))
            expect(page.locator("#error")).to_be_visible()
            expect(page.locator("#error")).to_contain_text("notes.txt is not an image")
            expect(ready).to_have_count(2)

            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            keep = os.environ.get("SALMAP_SCREENSHOT")
            if keep:
                shutil.copy(tmp_path / "serve.png", keep)
            assert not failures, failures
            assert all(url.startswith(server) for url in requested), "the page fetched from elsewhere"
        finally:
            browser.close()
