"""SmoothGrad (Smilkov et al. 2017): a base map averaged over noisy copies of the image."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.registry import Option, register
from salmap.targets import Target

from .base import Explainer, resolve_top1
from .gradient import Gradient


@register(
    "smoothgrad",
    "gradient",
    options=[
        Option("n", int, 50, "noisy copies", speed_default=10, alias="--samples"),
        Option("noise_level", float, 0.15, "noise sd as a fraction of the image's value range"),
        Option("seed", int, 0, "seed of the noise"),
    ],
)
class SmoothGrad(Explainer):
    """SmoothGrad: a base map averaged over noisy copies of the image (Smilkov et al. 2017).

    map = (1/n) sum_i base(x + e_i), e_i ~ N(0, s^2), s = noise_level * (max(x) - min(x)) per
    image. Wraps any explainer (Gradient, GuidedBackprop, GradCAM...); the registered method
    wraps the plain gradient. The class of each image is fixed on the clean image, so every
    noisy copy explains the same class. Noisy copies go through the model `batch_size` images at
    a time (default: one noisy copy of the batch at a time on the CPU, where larger batches run
    slower per image, and 64 images on a GPU), so peak memory does not grow with `n`; a score
    function target sees one copy of the batch at a time. `seed` makes the noise reproducible.
    """

    def __init__(
        self,
        base: Explainer,
        n: int = 50,
        noise_level: float = 0.15,
        batch_size: int | None = None,
        seed: int | None = 0,
    ) -> None:
        if not isinstance(base, Explainer) or isinstance(base, SmoothGrad):
            raise SalmapError("SmoothGrad wraps one salmap explainer such as Gradient(model)")
        if n < 1:
            raise SalmapError(f"SmoothGrad needs n >= 1 noisy samples, got {n}")
        if noise_level < 0:
            raise SalmapError(f"noise_level must be >= 0, got {noise_level}")
        if batch_size is not None and batch_size < 1:
            raise SalmapError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(base.model)
        self.read_logits = base.read_logits
        self.base = base
        self.n = n
        self.noise_level = noise_level
        self.batch_size = batch_size
        self.seed = seed

    @classmethod
    def build(
        cls,
        model: nn.Module,
        *,
        layer: Any = None,
        output_key: str | None = None,
        checkpoint: Any = None,
        reshape: Any = None,
        **settings: Any,
    ) -> SmoothGrad:
        return cls(Gradient(model, output_key=output_key), **settings)

    @property
    def floor(self) -> str:
        return self.base.floor

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        return self.base.floor_passes(x) * self.n

    def copies_per_pass(self, x: torch.Tensor) -> int:
        """Noisy copies of the batch `x` that go through the model together (at least one)."""
        chunk = self.batch_size or (64 if x.is_cuda else x.shape[0])
        return max(1, chunk // x.shape[0])

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        target = resolve_top1(self, x, target)
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
        flat = x.flatten(1)
        sigma = self.noise_level * (flat.amax(dim=1) - flat.amin(dim=1))
        sigma = sigma.view(-1, 1, 1, 1)
        copies_per_chunk = 1 if target.kind == "score" else self.copies_per_pass(x)
        total = None
        done = 0
        while done < self.n:
            copies = min(copies_per_chunk, self.n - done)
            noise = torch.randn((copies, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
            noisy = (x.unsqueeze(0) + noise * sigma.unsqueeze(0)).flatten(0, 1)
            maps = self.base.explain(noisy, target if copies == 1 else target.repeat(copies))
            chunk_sum = maps.view(copies, x.shape[0], *maps.shape[1:]).sum(dim=0)
            total = chunk_sum if total is None else total + chunk_sum
            done += copies
        return total / self.n

    def settings(self) -> dict[str, Any]:
        return {
            "base": self.base.name,
            **self.base.settings(),
            "n": self.n,
            "noise_level": self.noise_level,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def check(self, x: torch.Tensor) -> None:
        self.base.check(x)

    def choices(self) -> dict[str, str]:
        return self.base.choices()
