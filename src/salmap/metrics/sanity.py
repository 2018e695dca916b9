"""Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks
for Saliency Maps").

The blocks of a copy of the model are re-initialised one at a time, from the logits down and
cumulatively; after each, the map is recomputed for the same images and classes and compared
with the trained model's map. A method that explains the model should give maps that change:
similarity falling towards 0 is the pass (lower is better once layers are randomised).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from salmap.errors import SalmapError
from salmap.maps import normalize_maps
from salmap.metrics.ranking import spearman
from salmap.targets import TargetSpec as Target
from salmap.targets import logits_of, target_indices

ExplainerFactory = Callable[[nn.Module], Callable[..., torch.Tensor]]


def default_blocks(model: nn.Module) -> list[str]:
    """The names of the model's direct children that hold parameters, logits first (reversed
    registration order, which for most networks is the forward order)."""
    names = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    if not names:
        raise SalmapError("the model has no child module with parameters: pass blocks=[...] names")
    return names[::-1]


def reinitialize(module: nn.Module) -> None:
    """Re-draw a module's parameters in place: `reset_parameters()` where a submodule has it
    (PyTorch's own initialisation, BatchNorm back to identity), otherwise a normal draw with the
    tensor's own mean and standard deviation."""
    with torch.no_grad():
        for child in module.modules():
            reset = getattr(child, "reset_parameters", None)
            if callable(reset):
                reset()
                continue
            for parameter in child.parameters(recurse=False):
                spread = float(parameter.std()) if parameter.numel() > 1 else 0.0
                parameter.normal_(float(parameter.mean()), spread or 0.01)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of maps in [0, 1] `(B, H, W)` (Wang et al. 2004), per image `(B,)`.

    Gaussian window (11 px, sigma 1.5, shrunk to the map size when smaller), C1 = 0.01^2,
    C2 = 0.03^2, statistics over windows fully inside the map: the same as
    `skimage.metrics.structural_similarity(gaussian_weights=True, data_range=1,
    use_sample_covariance=False)`. Higher means more similar (1 for identical maps).
    """
    if a.shape != b.shape or a.dim() != 3:
        raise SalmapError(
            f"ssim needs two (B, H, W) batches of one shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    size = min(window, *a.shape[-2:])
    size -= 1 - size % 2
    radius = size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=a.device)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = torch.outer(weights, weights)
    kernel = (kernel / kernel.sum()).view(1, 1, size, size)
    x = a.double().unsqueeze(1)
    y = b.double().to(a.device).unsqueeze(1)

    def local(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel)

    mu_x, mu_y = local(x), local(y)
    var_x = local(x * x) - mu_x**2
    var_y = local(y * y) - mu_y**2
    cov = local(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1).float()


@dataclass
class SanityResult:
    """Similarity to the trained model's map after randomising the first k blocks, k = 0..L.

    `steps[k]` names the last block randomised ("original" for k = 0); each tensor is
    `(B, L + 1)`: Spearman of the raw maps, Spearman of their absolute values, and SSIM of the
    absolute maps scaled to [0, 1].
    """

    steps: list[str]
    spearman: torch.Tensor
    spearman_abs: torch.Tensor
    ssim: torch.Tensor


def cascading_randomization(
    model: nn.Module,
    make_explainer: ExplainerFactory,
    images: torch.Tensor,
    target: Target = None,
    *,
    blocks: Sequence[str] | None = None,
    seed: int = 0,
) -> SanityResult:
    """Adebayo 2018 cascading randomisation: re-initialise `blocks` (dotted module names, logits
    first; default `default_blocks(model)`) of a deep copy of `model` one at a time, cumulatively,
    and compare `make_explainer(copy)(images, classes, normalize=False)` with the trained map.

    The classes are fixed from the trained model (`target`; None: its top-1). `model` itself is
    not changed. A sane method's similarity falls as blocks are randomised (lower is better).
    """
    if model.training:
        raise SalmapError("put the model in eval mode (model.eval()) before the sanity check")
    names = list(default_blocks(model) if blocks is None else blocks)
    randomized = copy.deepcopy(model)
    try:
        modules = [randomized.get_submodule(name) for name in names]
    except AttributeError as error:
        raise SalmapError(f"unknown block name in {names}: {error}") from None
    with torch.no_grad():
        classes = target_indices(target, logits_of(model(images)))

    def maps_of(network: nn.Module) -> torch.Tensor:
        maps = make_explainer(network)(images, classes, normalize=False).detach()
        if maps.dim() != 3 or maps.shape[0] != images.shape[0]:
            raise SalmapError(f"the explainer returned {tuple(maps.shape)}, expected (B, H, W)")
        return maps.float()

    reference = maps_of(model)
    scores: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def compare(maps: torch.Tensor) -> None:
        scores.append(
            (
                spearman(reference.flatten(1), maps.flatten(1)),
                spearman(reference.abs().flatten(1), maps.abs().flatten(1)),
                ssim(normalize_maps(reference.abs()), normalize_maps(maps.abs())),
            )
        )

    compare(reference)
    cuda = sorted({p.device.index or 0 for p in randomized.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for module in modules:
            reinitialize(module)
            compare(maps_of(randomized))
    columns = list(zip(*scores, strict=True))
    return SanityResult(
        steps=["original", *names],
        spearman=torch.stack(columns[0], dim=1).float(),
        spearman_abs=torch.stack(columns[1], dim=1).float(),
        ssim=torch.stack(columns[2], dim=1).float(),
    )
