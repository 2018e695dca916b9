"""Running a model at input sizes other than the one it was built for, and putting it back.

Vision transformers fix their input size: the position embedding (and, in BEiT and Swin, the
relative position tables and attention masks) belong to one patch grid. timm models change it
with `set_input_size`, which resamples the position embedding bicubically (`resample_abs_pos_embed`)
and rebuilds the tables for the new grid; torchvision's `VisionTransformer` gets the same
resampling of its position embedding here. Every parameter, buffer and attribute that this
changes is restored when the context ends, so the model is the same object, in the same state,
afterwards. Other models (CNNs, and models such as MaxViT whose windows need particular sizes)
run as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torchvision
from torch import nn


def _resizable(model: nn.Module) -> nn.Module | None:
    """The part of `model` whose input size can be changed (a timm model with `set_input_size`,
    or a torchvision VisionTransformer), or None."""
    for module in model.modules():
        if isinstance(module, torchvision.models.VisionTransformer):
            return module
        embed = getattr(module, "patch_embed", None)
        if callable(getattr(module, "set_input_size", None)) and isinstance(embed, nn.Module):
            fixed = getattr(embed, "img_size", None) is not None and not getattr(
                module, "dynamic_img_size", False
            )
            return module if fixed else None
    return None


def resizing(model: nn.Module) -> str:
    """How `model` is run at other input sizes, in words."""
    part = _resizable(model)
    if part is None:
        return "as it is"
    if isinstance(part, torchvision.models.VisionTransformer):
        return "position embedding resampled as timm does, restored after"
    return "timm set_input_size, restored after"


def _current_size(part: nn.Module) -> tuple[int, int]:
    if isinstance(part, torchvision.models.VisionTransformer):
        return part.image_size, part.image_size
    size = part.patch_embed.img_size
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))


def _snapshot(part: nn.Module) -> list[tuple[nn.Module, dict, dict, dict, dict]]:
    return [
        (
            module,
            dict(module.__dict__),
            dict(module._parameters),
            dict(module._buffers),
            dict(module._modules),
        )
        for module in part.modules()
    ]


def _restore(snapshot: list[tuple[nn.Module, dict, dict, dict, dict]]) -> None:
    for module, attributes, parameters, buffers, children in snapshot:
        module.__dict__.clear()
        module.__dict__.update(attributes)
        module._parameters = parameters
        module._buffers = buffers
        module._modules = children


def _resize_torchvision_vit(vit: torchvision.models.VisionTransformer, size: tuple[int, int]) -> None:
    from timm.layers import resample_abs_pos_embed

    if size[0] != size[1]:
        raise ValueError(f"torchvision's VisionTransformer takes square inputs only, not {size[0]}x{size[1]}")
    old = vit.image_size // vit.patch_size
    new = size[0] // vit.patch_size
    embedding = vit.encoder.pos_embedding
    with torch.no_grad():
        resampled = resample_abs_pos_embed(
            embedding, new_size=(new, new), old_size=(old, old), num_prefix_tokens=1
        )
    vit.encoder.pos_embedding = nn.Parameter(resampled, requires_grad=embedding.requires_grad)
    vit.image_size = size[0]


@contextlib.contextmanager
def running_at(model: nn.Module, size: tuple[int, int]) -> Iterator[None]:
    """Inside, `model` takes inputs of `size` (h, w) where it can be changed to (see the module's
    docstring); its state is restored afterwards, also after an error."""
    part = _resizable(model)
    if part is None or _current_size(part) == tuple(size):
        yield
        return
    snapshot = _snapshot(part)
    try:
        if isinstance(part, torchvision.models.VisionTransformer):
            _resize_torchvision_vit(part, size)
        else:
            part.set_input_size(img_size=tuple(size))
        yield
    finally:
        _restore(snapshot)
