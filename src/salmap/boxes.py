"""Bounding boxes from saliency maps (weakly supervised localisation), and drawing them.

Boxes are `(x0, y0, x1, y1)` in input pixel coordinates, x1 and y1 exclusive, as long tensors:
one box `(4,)`, a batch `(B, 4)`. Three rules, each over a batch of `(B, H, W)` maps in [0, 1]:

- `cam_rule_boxes`: box around the largest 8-connected region above 20% of the map's max
  (Zhou et al. 2016, CAM; their code used OpenCV contours, which are 8-connected);
- `casm_rule_boxes`: the CASM authors' binarisation (`salmap.masks.discretize_to_area`: keep
  the most salient pixels, as many as the map's mean times the pixel count), largest
  4-connected component (Zolna et al. 2019, CASM; their code uses `scipy.ndimage.label`, whose
  component order OpenCV's matches, so ties between equal components go the same way);
- `graphcut_boxes`: Simonyan et al. 2013: GrabCut colour segmentation seeded with the pixels
  above the 95th percentile (foreground) and below the 30th (background), largest 8-connected
  foreground component.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from salmap.errors import SalmapError
from salmap.maps import check_maps
from salmap.masks import discretize_to_area

Box = tuple[int, int, int, int]


def largest_component_box(binary: np.ndarray, connectivity: int = 8) -> Box | None:
    """The box of the largest connected component of a 2-D binary array, None when it is empty."""
    if connectivity not in (4, 8):
        raise SalmapError(f"connectivity must be 4 or 8, got {connectivity}")
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(binary, dtype=np.uint8), connectivity=connectivity
    )
    if count <= 1:
        return None
    label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[label, :4])
    return (x, y, x + w, y + h)


def _stack(boxes: list[Box], device: torch.device) -> torch.Tensor:
    return torch.tensor(boxes, dtype=torch.long, device=device).view(-1, 4)


def threshold_boxes(maps: torch.Tensor, threshold: float, connectivity: int = 8) -> torch.Tensor:
    """`(B, 4)` boxes of the largest component of `m >= threshold` (absolute threshold); the
    zero-area box `(0, 0, 0, 0)` where no pixel passes."""
    maps = check_maps(maps)
    binary = (maps >= threshold).cpu().numpy()
    boxes = [largest_component_box(b, connectivity) or (0, 0, 0, 0) for b in binary]
    return _stack(boxes, maps.device)


def cam_rule_boxes(maps: torch.Tensor, fraction: float = 0.2) -> torch.Tensor:
    """CAM rule (Zhou 2016): box of the largest 8-connected region with `m >= fraction * max(m)`.

    A map of zeros gives the full image box.
    """
    maps = check_maps(maps)
    if not 0 <= fraction <= 1:
        raise SalmapError(f"fraction must be in [0, 1], got {fraction}")
    binary = (maps >= fraction * maps.amax(dim=(1, 2), keepdim=True)).cpu().numpy()
    boxes = [largest_component_box(b, 8) for b in binary]
    return _stack([box or _full(maps) for box in boxes], maps.device)


def casm_rule_boxes(maps: torch.Tensor) -> torch.Tensor:
    """CASM rule (Zolna 2019, the authors' code): binarise with `discretize_to_area`, box of the
    largest 4-connected component; an empty binary mask gives the empty box `(0, 0, 0, 0)`,
    which overlaps nothing (the authors' code scores it as a miss)."""
    binary = discretize_to_area(maps).cpu().numpy()
    boxes = [largest_component_box(b, 4) or (0, 0, 0, 0) for b in binary]
    return _stack(boxes, maps.device)


def _full(maps: torch.Tensor) -> Box:
    return (0, 0, int(maps.shape[-1]), int(maps.shape[-2]))


def _rgb_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An `(H, W, 3)` uint8 array from a `(3, H, W)` tensor (uint8, or float pixels in [0, 1])
    or an `(H, W, 3)` uint8 array."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise SalmapError(f"an RGB image tensor must be (3, H, W), got {tuple(image.shape)}")
        if image.is_floating_point():
            if bool((image < 0).any()) or bool((image > 1).any()):
                raise SalmapError("float RGB images must be pixels in [0, 1]: use to_pixels()")
            image = (image * 255).round()
        return np.ascontiguousarray(image.to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise SalmapError(f"an RGB array must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def graphcut_box(
    image_rgb: torch.Tensor | np.ndarray,
    saliency: torch.Tensor,
    fg_percentile: float = 95,
    bg_percentile: float = 30,
    iterations: int = 5,
) -> Box:
    """Simonyan et al. 2013: GrabCut (`GC_INIT_WITH_MASK`) seeded from one `(H, W)` map.

    Sure foreground where the map is at or above its `fg_percentile`, sure background below its
    `bg_percentile`, probable background elsewhere; the box of the largest 8-connected
    foreground component. Falls back to the box of the foreground seeds when GrabCut keeps no
    foreground, and to the full image when the map is too flat to give both kinds of seed.
    `image_rgb` is `(3, H, W)` (uint8 or float pixels in [0, 1]) or an `(H, W, 3)` uint8 array.
    """
    pixels = _rgb_uint8(image_rgb)
    values = check_maps(saliency.unsqueeze(0), "map")[0].cpu().numpy()
    if pixels.shape[:2] != values.shape:
        raise SalmapError(f"image {pixels.shape[:2]} and map {values.shape} sizes differ")
    if not 0 <= bg_percentile < fg_percentile <= 100:
        raise SalmapError("need 0 <= bg_percentile < fg_percentile <= 100")
    height, width = values.shape
    foreground = values >= np.percentile(values, fg_percentile)
    background = (values < np.percentile(values, bg_percentile)) & ~foreground
    if not background.any() or foreground.all():
        return (0, 0, width, height)
    seeds = np.full(values.shape, cv2.GC_PR_BGD, dtype=np.uint8)
    seeds[foreground] = cv2.GC_FGD
    seeds[background] = cv2.GC_BGD
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(pixels, seeds, None, bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK)
    segmented = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    box = largest_component_box(segmented, 8) or largest_component_box(foreground, 8)
    return box or (0, 0, width, height)


def graphcut_boxes(
    images_rgb: torch.Tensor,
    maps: torch.Tensor,
    fg_percentile: float = 95,
    bg_percentile: float = 30,
    iterations: int = 5,
) -> torch.Tensor:
    """`(B, 4)` boxes of `graphcut_box` over a batch: RGB pixel images `(B, 3, H, W)` and maps."""
    maps = check_maps(maps)
    if not isinstance(images_rgb, torch.Tensor) or images_rgb.dim() != 4:
        raise SalmapError("images_rgb must be a tensor (B, 3, H, W) of pixels")
    if images_rgb.shape[0] != maps.shape[0]:
        raise SalmapError(f"{images_rgb.shape[0]} images for {maps.shape[0]} maps")
    boxes = [
        graphcut_box(image, saliency, fg_percentile, bg_percentile, iterations)
        for image, saliency in zip(images_rgb, maps, strict=True)
    ]
    return _stack(boxes, maps.device)


def check_boxes(boxes: torch.Tensor, name: str = "boxes") -> torch.Tensor:
    """Check an `(N, 4)` tensor of `(x0, y0, x1, y1)` boxes with x0 <= x1, y0 <= y1."""
    boxes = torch.as_tensor(boxes)
    if boxes.dim() == 1 and boxes.numel() == 4:
        boxes = boxes.view(1, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise SalmapError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if bool((boxes[:, 2] < boxes[:, 0]).any()) or bool((boxes[:, 3] < boxes[:, 1]).any()):
        raise SalmapError(f"{name} need x0 <= x1 and y0 <= y1 (x1, y1 exclusive)")
    return boxes


def as_box_list(
    boxes: torch.Tensor | Sequence[torch.Tensor], batch: int, name: str = "boxes"
) -> list[torch.Tensor]:
    """Ground-truth boxes as one `(n_i, 4)` tensor per image, n_i >= 1.

    Accepts `(B, 4)` (one box each), `(B, n, 4)`, or a sequence of B `(n_i, 4)` / `(4,)` tensors.
    """
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() == 2:
            boxes = boxes.unsqueeze(1)
        if boxes.dim() != 3:
            raise SalmapError(f"{name} must be (B, 4), (B, n, 4) or a list, got {tuple(boxes.shape)}")
    items = [check_boxes(item, name) for item in boxes]
    if len(items) != batch:
        raise SalmapError(f"got {name} for {len(items)} images, expected {batch}")
    if any(item.shape[0] == 0 for item in items):
        raise SalmapError(f"every image needs at least one of its {name}")
    return items


def draw_boxes(
    image: torch.Tensor | np.ndarray,
    boxes: torch.Tensor,
    colors: Sequence[tuple[int, int, int]] = ((0, 255, 0),),
    thickness: int = 1,
) -> np.ndarray:
    """An `(H, W, 3)` uint8 RGB picture of `image` with `boxes` `(N, 4)` drawn, colours cycled.

    `image` is `(3, H, W)` (uint8 or float pixels in [0, 1]) or an `(H, W, 3)` uint8 array.
    """
    picture = _rgb_uint8(image).copy()
    if not colors:
        raise SalmapError("give at least one colour")
    for index, (x0, y0, x1, y1) in enumerate(check_boxes(boxes).tolist()):
        if x1 <= x0 or y1 <= y0:
            continue
        color = tuple(int(c) for c in colors[index % len(colors)])
        cv2.rectangle(picture, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), color, thickness)
    return picture
