"""Training speed of the CASM paper preset (ResNet-50, batch 128, the authors' two classifier
steps, random resized crops of JPEGs): images per second on one device, and the device-hours
the paper's schedule would take (60 epochs of 20% of the ImageNet training set).

    python benchmarks/casm_paper_speed.py --device cuda --seconds 60

One process drives one device. The JPEGs are ImageNet-sized crops (about 500 x 375) of the
photos that ship with scikit-image and scikit-learn, written to a temporary ImageNet-layout
folder and read by the preset's loader (`--workers` processes, random resized crop and flip).
Two rates are timed, each for `--seconds` after `--warmup` steps: the whole training loop with
its loader (what a run gets), and the steps alone on one batch already on the device (what the
device can do; the loader is the bottleneck when the first is much lower). The classifier
starts from random weights, which cost the same as pretrained ones. Prints one JSON line and
writes it to `--out` when given.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image
from torch.utils.data import DataLoader

from salmap.casm.adapters import build_backbone
from salmap.casm.train import CASMTrainer, preset, training_data
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training set


def paper_schedule_images(epochs: int = 60, fraction: float = 0.2) -> int:
    """Images the paper's schedule trains on: `epochs` epochs of `fraction` of ImageNet train."""
    return int(epochs * fraction * IMAGENET_TRAIN_IMAGES)


def write_jpegs(root: Path, count: int, classes: int = 4) -> None:
    """`count` JPEGs in `root/train/<wnid>/`: random crops (about 500 x 375, some mirrored) of
    the bundled photos, spread over `classes` ImageNet wnids."""
    from timm.data import ImageNetInfo

    photos = [
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.astronaut(),
        load_sample_image("china.jpg"),
        load_sample_image("flower.jpg"),
    ]
    wnids = list(ImageNetInfo().label_names())[:classes]
    rng = np.random.default_rng(0)
    for i in range(count):
        picture = Image.fromarray(photos[i % len(photos)]).resize((560, 420))
        left, top = int(rng.integers(0, 60)), int(rng.integers(0, 45))
        crop = picture.crop((left, top, left + 500, top + 375))
        if i % 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        folder = root / "train" / wnids[i % classes]
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / f"synthetic_{i:05d}.JPEG", quality=90)


def stack(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of training items: images and labels stacked."""
    return torch.stack([item["image"] for item in items]), torch.stack([item["label"] for item in items])


def timed(step, seconds: float, warmup: int, batch: int, device: torch.device) -> dict[str, float]:
    """Run `step()` `warmup` times, then for about `seconds`; images per second of the timed part."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    steps, started = 0, time.perf_counter()
    while steps == 0 or time.perf_counter() - started < seconds:
        step()
        steps += 1
        if steps % 5 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - started
    return {"steps": steps, "seconds": round(elapsed, 2), "images_per_second": steps * batch / elapsed}


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        write_jpegs(Path(folder), args.images)
        config = preset(
            "paper",
            data=folder,
            model=args.model,
            pretrained=False,
            batch_size=args.batch_size,
            image_size=args.image_size,
            num_workers=args.workers,
        )
        classifier = build_backbone({"arch": args.model, "num_classes": 1000})
        trainer = CASMTrainer(config, classifier, device)
        dataset = training_data(trainer.config, IMAGENET_MEAN, IMAGENET_STD)
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            collate_fn=stack,
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        batches = iter(())

        def loop_step() -> None:
            nonlocal batches
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            trainer.step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))

        x, y = next(iter(loader))
        x, y = x.to(device), y.to(device)
        loop = timed(loop_step, args.seconds, args.warmup, args.batch_size, device)
        compute = timed(lambda: trainer.step(x, y), args.seconds, args.warmup, args.batch_size, device)
    total = paper_schedule_images()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": name,
        "model": args.model,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "workers": args.workers,
        "classifier_update": trainer.config.classifier_update,
        "thinning": trainer.config.thinning,
        "torch": torch.__version__,
        "training_loop": loop,
        "steps_only": compute,
        "paper_schedule_images": total,
        "paper_schedule_device_hours": round(total / loop["images_per_second"] / 3600, 2),
        "paper_schedule_device_hours_steps_only": round(total / compute["images_per_second"] / 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--seconds", type=float, default=60.0, help="timed seconds per rate (default: 60)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="the paper's 128 by default")
    parser.add_argument("--workers", type=int, default=8, help="loader processes (default: 8)")
    parser.add_argument("--images", type=int, default=1024, help="synthetic JPEGs written (default: 1024)")
    parser.add_argument("--image-size", type=int, default=224, help="training crop (default: 224)")
    parser.add_argument("--model", default="resnet50", help="classifier architecture (default: resnet50)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args()
    if args.images < args.batch_size:
        parser.error("--images must be at least --batch-size")
    result = measure(args)
    line = json.dumps(result)
    print(line)
    loop, steps = result["training_loop"], result["steps_only"]
    print(
        f"{result['device']}: {loop['images_per_second']:.1f} images/s with the loader, "
        f"{steps['images_per_second']:.1f} images/s for the steps alone; the paper's schedule "
        f"({result['paper_schedule_images']:,} images) takes {result['paper_schedule_device_hours']} "
        f"device-hours ({result['paper_schedule_device_hours_steps_only']} if the loader kept up)"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
