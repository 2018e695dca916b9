"""How fast `salmap serve` answers: from an upload to the Grad-CAM overlay on the page, and a map
already computed, in Debian's Chromium and over plain HTTP (EfficientNet-Lite0).

    python benchmarks/serve.py [--photos 10] [--device cpu] [--screenshot docs/serve.png]

Starts `salmap serve` on a free port. In the browser, the page records the milliseconds from the
user's action (choosing a file, clicking a class) to the map drawn on its canvas; over HTTP, the
time of the upload (decode, forward pass, top-5) and of the map request. "Computed" rows use a
photo the server has not seen; "cached" rows ask again for a map it has (another class and back,
and the same photo opened by a second browser session). Writes
benchmarks/results/serve-<device>.json; with --screenshot, also the picture of the page in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from directory import write_photos
from PIL import Image
from skimage import data

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


def start_server(device: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "salmap", "serve", "--port", "0", "--device", device]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return process, found.group(1)
    raise SystemExit("salmap serve did not start")


def http_timings(address: str, photos: list[Path]) -> dict[str, list[float]]:
    """Seconds per upload (top-5 included) and per Grad-CAM map request, computed and cached."""
    timings: dict[str, list[float]] = {"upload": [], "gradcam": [], "gradcam_cached": []}
    with httpx.Client(base_url=address, timeout=120) as client:
        client.get("/")
        for path in photos:
            started = time.perf_counter()
            image = client.post("/api/images", content=path.read_bytes(), headers={"X-Filename": path.name})
            timings["upload"].append(time.perf_counter() - started)
            url = f"/api/images/{image.json()['id']}/maps/gradcam"
            started = time.perf_counter()
            assert not client.get(url).json()["cached"]
            timings["gradcam"].append(time.perf_counter() - started)
            started = time.perf_counter()
            assert client.get(url).json()["cached"]
            timings["gradcam_cached"].append(time.perf_counter() - started)
    return timings


def shown_ms(page, method: str = "gradcam") -> float:
    return float(page.locator(f".card[data-method={method}]").get_attribute("data-shown-ms"))


def shown_key(page) -> str | None:
    """The key (image, method, class) of the Grad-CAM card, None before the first image."""
    card = page.locator(".card[data-method=gradcam]")
    return card.get_attribute("data-key") if card.count() else None


def wait_for_new_map(page, old_key: str | None) -> None:
    unseen = f':not([data-key="{old_key}"])' if old_key else ""
    page.wait_for_selector(f".card[data-method=gradcam][data-state=ready]{unseen}", timeout=120_000)


def browser_timings(address: str, photos: list[Path]) -> dict[str, list[float]]:
    """Milliseconds, as the page measures them, from choosing a file to the Grad-CAM overlay
    drawn; from clicking a class whose map is known to it drawn; and from opening a photo the
    server has already explained (in a second session) to its overlay drawn."""
    from playwright.sync_api import sync_playwright

    timings: dict[str, list[float]] = {"upload_to_overlay": [], "class_back": [], "second_session": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(address)
        page.wait_for_selector("body[data-ready=true]")
        for path in photos:
            old = shown_key(page)
            page.set_input_files("#file", str(path))
            wait_for_new_map(page, old)
            timings["upload_to_overlay"].append(shown_ms(page))
            first_key = shown_key(page)
            page.locator("#top button").nth(1).click()
            wait_for_new_map(page, first_key)
            second_key = shown_key(page)
            page.locator("#top button").nth(0).click()
            wait_for_new_map(page, second_key)
            timings["class_back"].append(shown_ms(page))
        other = browser.new_page()
        other.goto(address)
        other.wait_for_selector("body[data-ready=true]")
        for path in photos:
            old = shown_key(other)
            other.set_input_files("#file", str(path))
            wait_for_new_map(other, old)
            timings["second_session"].append(shown_ms(other))
        browser.close()
    return timings


def take_screenshot(address: str, folder: Path, out: Path) -> None:
    """The page as the README shows it: scikit-image's cat, four methods, the CASM-rule boxes
    and every curve."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1780, "height": 1000}, device_scale_factor=1)
        page.goto(address)
        page.wait_for_selector("body[data-ready=true]")
        photo = folder / "chelsea.jpg"
        Image.fromarray(data.chelsea()).save(photo, quality=92)
        page.set_input_files("#file", str(photo))
        for method in ("gradient", "guided_backprop", "cameras"):
            page.check(f"#methods input[value={method}]")
        expect(page.locator(".card[data-state=ready]")).to_have_count(4, timeout=300_000)
        page.check("#box-rules input[value=casm]")
        page.select_option("#steps", "56")
        page.click("#all-curves")
        expect(page.locator(".card[data-curves=ready]")).to_have_count(4, timeout=300_000)
        page.locator(".card[data-method=gradcam] canvas").hover(position={"x": 200, "y": 90})
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "max": max(values), "min": min(values), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10, help="distinct photos (default: 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--screenshot", type=Path, default=None, help="write a picture of the page here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        photos = write_photos(Path(folder), 2 * args.photos)
        process, address = start_server(args.device)
        try:
            http = http_timings(address, photos[: args.photos])
            page = browser_timings(address, photos[args.photos :])
            if args.screenshot:
                take_screenshot(address, Path(folder), args.screenshot)
        finally:
            process.terminate()
            process.wait(timeout=30)
    result = {
        "model": "efficientnet_lite0",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cores": len(os.sched_getaffinity(0)),
        "http_seconds": {name: summary(values) for name, values in http.items()},
        "browser_ms": {name: summary(values) for name, values in page.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"serve-{args.device}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
