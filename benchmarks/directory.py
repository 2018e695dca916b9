"""Explaining a directory of photos: images per second of `explain` against the pure compute
rate of the same method on the same, already decoded, images (one process).

    python benchmarks/directory.py [--images 200] [--method gradcam] [--batch-size 8] [--device cpu]

The photos are crops and mirror images of the pictures that ship with scikit-image and
scikit-learn, written as JPEG files to a temporary folder. Writes
benchmarks/results/directory-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image

import salmap
from salmap.explain import explain_files


def write_photos(folder: Path, count: int) -> list[Path]:
    photos = [
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.astronaut(),
        data.stereo_motorcycle()[0],
        load_sample_image("china.jpg"),
        load_sample_image("flower.jpg"),
    ]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = photos[i % len(photos)]
        height, width = pixels.shape[:2]
        top, left = rng.integers(0, height // 5), rng.integers(0, width // 5)
        crop = pixels[top : height - rng.integers(0, height // 5), left : width - rng.integers(0, width // 5)]
        crop = crop[:, ::-1] if i % 2 else crop
        paths.append(folder / f"photo_{i:03d}.jpg")
        Image.fromarray(np.ascontiguousarray(crop)).save(paths[-1], quality=90)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device(args.device)
    loaded = salmap.models.load(device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "in").mkdir()
        paths = write_photos(Path(folder) / "in", args.images)
        images = torch.stack([loaded.preprocess(salmap.load_image(p)) for p in paths]).to(device)
        explainer = salmap.make_explainer(args.method, loaded.model, layer=loaded.target_layer)
        explainer(images[: args.batch_size])
        synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        synchronize()
        started = time.perf_counter()
        for start in range(0, len(images), args.batch_size):
            explainer(images[start : start + args.batch_size])
        synchronize()
        compute = len(images) / (time.perf_counter() - started)
        started = time.perf_counter()
        explain_files(
            [Path(folder) / "in"],
            loaded,
            {args.method: explainer},
            Path(folder) / "out",
            batch_size=args.batch_size,
            progress=False,
        )
        files = len(images) / (time.perf_counter() - started)
    result = {
        "images": args.images,
        "method": args.method,
        "batch_size": args.batch_size,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "compute_images_per_s": compute,
        "explain_images_per_s": files,
        "ratio": compute / files,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"directory-{device.type}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"pure compute {compute:.2f} images/s, explain {files:.2f} images/s, ratio {compute / files:.2f}")


if __name__ == "__main__":
    main()
