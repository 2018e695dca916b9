"""Binary masks from saliency maps, and the masked-in / masked-out / inpainted images they make.

Maps are `(B, H, W)` float tensors in [0, 1]; binary masks are `(B, H, W)` bool tensors
(True = evidence); images are `(B, C, H, W)` tensors. Masking happens where the model sees the
image (normalised space, where zero is the dataset mean); inpainting happens in pixel space
(`salmap.models.transforms.to_pixels` / `to_normalized` convert between the two).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from salmap.errors import SalmapError
from salmap.inputs import check_batch
from salmap.maps import check_maps


def check_binary(masks: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check a `(B, H, W)` mask (bool, or float in [0, 1] for soft masks) against `like`'s shape."""
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise SalmapError(f"masks must be a tensor (B, H, W), got {shape}")
    if like is not None and (masks.shape[0] != like.shape[0] or masks.shape[-2:] != like.shape[-2:]):
        raise SalmapError(f"masks {tuple(masks.shape)} do not match images {tuple(like.shape)} (B, H, W)")
    if masks.dtype == torch.bool:
        return masks
    return check_maps(masks.float(), "masks")


def discretize(maps: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Binary masks `b = m >= alpha * mean(m)`, the mean taken per image (seed paper 000)."""
    maps = check_maps(maps)
    if alpha < 0:
        raise SalmapError(f"alpha must be >= 0, got {alpha}")
    return maps >= alpha * maps.mean(dim=(1, 2), keepdim=True)


def discretize_to_area(maps: torch.Tensor) -> torch.Tensor:
    """The CASM reference rule: per image keep the k most salient pixels, k = round(mean(m) * H*W).

    The binary area fraction then equals the map's mean (to one pixel). This is a threshold at
    the k-th largest value with ties broken by pixel order (row-major), so the area is exact.
    """
    maps = check_maps(maps)
    batch, height, width = maps.shape
    flat = maps.reshape(batch, -1)
    k = torch.round(flat.mean(dim=1) * flat.shape[1]).long()
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    keep = torch.arange(flat.shape[1], device=maps.device).unsqueeze(0) < k.unsqueeze(1)
    masks = torch.zeros_like(flat, dtype=torch.bool).scatter(1, order, keep)
    return masks.view(batch, height, width)


def _as_weights(masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    masks = check_binary(masks, images)
    return masks.to(device=images.device, dtype=images.dtype).unsqueeze(1)


def masked_in(images: torch.Tensor, masks: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Masked-in images `b * x + (1 - b) * v`: only the evidence kept; elsewhere the fill value v,
    by default zero in normalised space (the mean colour)."""
    images = check_batch(images)
    weights = _as_weights(masks, images)
    return images * weights + fill * (1 - weights)


def masked_out(images: torch.Tensor, masks: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Masked-out images `(1 - b) * x + b * v`: the evidence set to the fill value v, by default
    zero in normalised space (CASM, Zolna et al. 2019)."""
    images = check_batch(images)
    weights = _as_weights(masks, images)
    return images * (1 - weights) + fill * weights


def inpaint_masked_out(images: torch.Tensor, masks: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Masked-out images whose evidence is filled by Telea inpainting (OpenCV `INPAINT_TELEA`).

    `images` are in pixel space, `(B, C, H, W)` with C = 1 or 3 (RGB): uint8 in [0, 255] or float
    in [0, 1] (use `to_pixels` on normalised images). The pixels where `masks` is True are
    replaced; the others are returned unchanged. A mask that covers the whole image leaves
    nothing to inpaint from: that image becomes black. Output has the input's dtype and device.
    """
    images = check_batch(images)
    binary = check_binary(masks, images)
    if binary.dtype != torch.bool:
        binary = binary > 0.5
    if images.shape[1] not in (1, 3):
        raise SalmapError(f"inpainting needs 1 or 3 channels, got {images.shape[1]}")
    if radius < 1:
        raise SalmapError(f"inpainting radius must be >= 1, got {radius}")
    if images.dtype == torch.uint8:
        pixels = images
    elif images.is_floating_point():
        if bool((images < 0).any()) or bool((images > 1).any()):
            raise SalmapError("float images to inpaint must be pixels in [0, 1]: use to_pixels()")
        pixels = (images * 255).round().to(torch.uint8)
    else:
        raise SalmapError(f"images to inpaint must be uint8 or float in [0, 1], got {images.dtype}")
    arrays = pixels.permute(0, 2, 3, 1).cpu().numpy()
    holes = binary.cpu().numpy().astype(np.uint8)
    filled = np.stack(
        [
            cv2.inpaint(np.ascontiguousarray(image), hole, radius, cv2.INPAINT_TELEA).reshape(image.shape)
            if not hole.all()
            else np.zeros_like(image)
            for image, hole in zip(arrays, holes, strict=True)
        ]
    )
    filled_tensor = torch.from_numpy(filled).permute(0, 3, 1, 2).to(images.device)
    if images.dtype != torch.uint8:
        filled_tensor = filled_tensor.to(images.dtype) / 255
    return torch.where(binary.to(images.device).unsqueeze(1), filled_tensor, images)
