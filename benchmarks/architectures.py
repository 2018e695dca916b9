"""Every method on every architecture family, as a user would bring it: which methods give a map,
which refuse and why, the layer chosen automatically, and Grad-CAM's agreement with
pytorch-grad-cam at that layer (its documented `reshape_transform`).

    python benchmarks/architectures.py [--models NAME,...] [--smoothgrad-n 10] [--device cpu]

Random weights (the architectures are what is measured), one 224 px photo (scikit-image's cat),
each method with its defaults except SmoothGrad's n. Writes benchmarks/results/architectures.json
and architectures.md (the README's "Models" table).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision
from PIL import Image
from skimage import data

import salmap
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD, classifier_transform


def _timm(name: str, **arguments: object) -> Callable[[], torch.nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, **arguments)


def _torchvision(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        model = torchvision.models.get_model(name, weights=None)
        for module in model.modules():  # torchvision starts some heads at zero: no gradient at all
            if isinstance(module, torch.nn.Linear) and not module.weight.any():
                torch.nn.init.normal_(module.weight, std=0.02)
        return model

    return build


def _tokens(prefix: int, grid: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: t[:, prefix:, :].reshape(t.size(0), grid, grid, t.size(2)).permute(0, 3, 1, 2)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


# name: (family, builder, pytorch-grad-cam's reshape_transform for the automatic layer)
MODELS: dict[str, tuple[str, Callable[[], torch.nn.Module], Callable | None]] = {
    "vit_tiny_patch16_224": ("timm ViT", _timm("vit_tiny_patch16_224"), _tokens(1, 14)),
    "deit_tiny_distilled_patch16_224": (
        "timm DeiT (distilled)",
        _timm("deit_tiny_distilled_patch16_224"),
        _tokens(2, 14),
    ),
    "beit_base_patch16_224": ("timm BEiT", _timm("beit_base_patch16_224"), _tokens(1, 14)),
    "eva02_tiny_patch14_224": (
        "timm EVA-02",
        _timm("eva02_tiny_patch14_224", num_classes=1000),
        _tokens(1, 16),
    ),
    "swin_tiny_patch4_window7_224": ("timm Swin", _timm("swin_tiny_patch4_window7_224"), _channels_last),
    "maxvit_tiny_tf_224": ("timm MaxViT", _timm("maxvit_tiny_tf_224"), _channels_last),
    "convnext_tiny": ("timm ConvNeXt", _timm("convnext_tiny"), None),
    "vit_b_16": ("torchvision ViT", _torchvision("vit_b_16"), _tokens(1, 14)),
    "swin_t": ("torchvision Swin", _torchvision("swin_t"), _channels_last),
    "maxvit_t": ("torchvision MaxViT", _torchvision("maxvit_t"), None),
    "resnet50": ("torchvision ResNet (CNN)", _torchvision("resnet50"), None),
    "efficientnet_b0": ("timm EfficientNet-B0 (CNN, SiLU)", _timm("efficientnet_b0"), None),
}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def peer_gradcam(model: torch.nn.Module, layer: str, x: torch.Tensor, target: int, reshape) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    with GradCAM(model=model, target_layers=[module], reshape_transform=reshape) as peer:
        return peer(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(target)])[0]


def measure(name: str, settings: dict[str, dict], device: torch.device) -> dict:
    family, build, reshape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval().requires_grad_(False).to(device)
    preprocess = classifier_transform(256, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    x = preprocess(Image.fromarray(data.chelsea()))[None].to(device)
    with torch.no_grad():
        target = int(model(x).argmax())
    row: dict = {"model": name, "family": family, "methods": {}}
    for method in salmap.method_names(trained=False):
        explainer = salmap.make_explainer(method, model, **settings.get(method, {}))
        started = time.perf_counter()
        try:
            choices = explainer.prepare(x)
            maps = explainer(x, target)
        except salmap.SalmapError as error:
            row["methods"][method] = {"status": "refused", "reason": str(error)}
            continue
        seconds = time.perf_counter() - started
        result = {"status": "ok", "seconds": round(seconds, 2), "choices": choices}
        result["constant"] = bool(maps.flatten(1).std(dim=1).max() < 1e-6)
        if method == "gradcam" and "layer" in choices:
            layer = choices["layer"].removesuffix(" (auto)")
            theirs = peer_gradcam(model, layer, x, target, reshape)
            result["peer_correlation"] = round(correlation(maps[0].cpu().numpy(), theirs), 6)
        row["methods"][method] = result
        print(f"{name:>32} {method:>16}: ok in {seconds:.1f} s {choices}", flush=True)
    return row


SHORT_REASONS = (
    ("changes the backward pass of ReLUs", "refused: no ReLU"),
    ("CAM needs global average pooling", "refused: no GAP + linear"),
    ("runs only at its input size", "refused: fixed input size"),
    ("it runs at steps of", "refused: sizes {step}"),
)


def short(result: dict) -> str:
    if result["status"] == "ok":
        text = "yes"
        if "peer_correlation" in result:
            text += f" (r = {result['peer_correlation']:.4f})"
        return text
    for fragment, label in SHORT_REASONS:
        if fragment in result["reason"]:
            step = result["reason"].split("it runs at steps of ")[-1].split(" px")[0]
            return label.format(step=f"in steps of {step} px")
    return "refused: " + result["reason"][:60]


def markdown(rows: list[dict], methods: list[str]) -> str:
    lines = [
        "| architecture | layer chosen automatically | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for row in rows:
        layer = row["methods"]["gradcam"].get("choices", {}).get("layer", "-").removesuffix(" (auto)")
        cells = [short(row["methods"][m]) for m in methods]
        lines.append(f"| {row['family']}: `{row['model']}` | `{layer}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names")
    parser.add_argument("--smoothgrad-n", type=int, default=10, help="noisy copies (default: 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = {"smoothgrad": {"n": args.smoothgrad_n}}
    rows = [measure(name, settings, device) for name in args.models.split(",")]
    methods = salmap.method_names(trained=False)
    document = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
        },
        "settings": settings,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "architectures.json").write_text(json.dumps(document, indent=2) + "\n")
    table = markdown(rows, methods)
    (args.out / "architectures.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
