"""`salmap demo`: every method on the photos that ship with scikit-image."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from salmap.explain import explain_files
from salmap.models import DEFAULT_MODEL, load
from salmap.registry import make_explainer, method_names

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle")
# settings the demo changes to keep its time on two CPU cores, and says so: RISE with 1,000 masks
# instead of 4,000 takes a quarter of the forward passes, and its maps on these photos keep their
# shape (the estimate's noise grows by a factor of 2)
DEMO_SETTINGS = {"rise": {"n": 1000}}


def write_photos(folder: Path) -> list[Path]:
    """Save scikit-image's bundled photos as PNG files in `folder` (the motorcycle is the left
    view of its stereo pair)."""
    from skimage import data

    paths = []
    for name in PHOTOS:
        pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        path = folder / f"{name}.png"
        Image.fromarray(pixels).convert("RGB").save(path)
        paths.append(path)
    return paths


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="every method on five photos",
        description="Run every method on the photos that "
        "ship with scikit-image (chelsea, coffee, rocket, astronaut, motorcycle) with EfficientNet-Lite0.",
    )
    parser.add_argument("--out", default="salmap-demo", help="output directory (default: salmap-demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    loaded = load(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory() as folder:
        photos = write_photos(Path(folder))
        explainers = {
            name: make_explainer(
                name,
                loaded.model,
                layer=loaded.target_layer,
                normalization=(loaded.mean, loaded.std),
                **DEMO_SETTINGS.get(name, {}),
            )
            for name in method_names(False)
        }
        for name, settings in DEMO_SETTINGS.items():
            changed = ", ".join(f"{key}={value}" for key, value in settings.items())
            print(f"{name}: {changed} for the demo's time (see `salmap methods` for the defaults)")
        report = explain_files(photos, loaded, explainers, args.out, batch_size=5, overwrite=args.overwrite)
    for record in report.records:
        if record.method == next(iter(explainers)):
            print(f"{Path(record.image).stem:>12}: {record.target_name} ({record.score:.2f})")
    print(f"figure: {report.summary} ({time.perf_counter() - started:.1f} s)")
    return 0
