"""Integrated Gradients (Sundararajan, Taly and Yan 2017, "Axiomatic attribution for deep
networks")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salmap.errors import SalmapError
from salmap.registry import Option, register
from salmap.targets import Target

from .base import Explainer

RULES = ("riemann", "gausslegendre")
BASELINES = ("zeros", "black", "blur")
POLARITIES = ("positive", "absolute", "signed")


def path_points(steps: int, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The points alpha_k in (0, 1] on the straight path and their weights w_k, so that
    integral_0^1 g(alpha) d alpha ~ sum_k w_k g(alpha_k): the right Riemann sum of the paper's
    Eq. 3 (alpha_k = k / m, w_k = 1 / m), or Gauss-Legendre quadrature on [0, 1]."""
    if rule == "riemann":
        alphas = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """`x` blurred by a Gaussian of `sigma` pixels (separable, reflected at the borders, the
    kernel cut at 3 sigma and no wider than the image)."""
    radius = max(1, min(int(3 * sigma + 0.5), x.shape[-2] - 1, x.shape[-1] - 1))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


@register(
    "integrated_gradients",
    "gradient",
    options=[
        Option("steps", int, 50, "points on the path from the baseline to the image", speed_default=20),
        Option("rule", str, "riemann", "riemann (right sums, as in the paper) or gausslegendre"),
        Option("baseline", str, "zeros", "zeros (in normalised space), black or blur"),
        Option("blur_sigma", float, None, "sd of the blur baseline in pixels (default: input height / 20)"),
        Option("polarity", str, "positive", "map of the positive, absolute or signed attributions"),
    ],
)
class IntegratedGradients(Explainer):
    """Integrated Gradients: (x - x') * the mean gradient on the path from x' to x (Sundararajan 2017).

    a = (x - x') * integral_0^1 dS(x' + t (x - x'))/dx dt.

    The integral is the right Riemann sum of the paper's Eq. 3 over `steps` points (`rule=
    "gausslegendre"`: Gauss-Legendre quadrature, which needs fewer steps for the same error).
    The baseline x' is zero in the model's normalised space (`"zeros"`, the data set's mean
    colour), `"black"` (pixel value 0, which needs the model's `normalization` = (mean, std)),
    `"blur"` (the image blurred by a Gaussian of `blur_sigma` pixels) or a tensor broadcastable
    to the images. The map sums the colour channels of the positive attributions (as the
    authors' visualisation does), of their absolute values, or of the signed attributions, whose
    sum over the pixels then approximates S(x) - S(x') (completeness). `completeness` holds the
    relative completeness error |sum a - (S(x) - S(x'))| / |S(x) - S(x')| of each image of the
    last call, and `settings()` reports the largest. Points of the path go through the model
    `batch_size` images at a time (default: one point of the batch per pass on the CPU, 64
    images on a GPU), so peak memory is bounded by the chunk, not by `steps`.
    """

    uses_normalization = True

    def __init__(
        self,
        model: nn.Module,
        steps: int = 50,
        rule: str = "riemann",
        baseline: str | torch.Tensor = "zeros",
        blur_sigma: float | None = None,
        polarity: str = "positive",
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        batch_size: int | None = None,
        output_key: str | None = None,
    ) -> None:
        super().__init__(model, output_key)
        if steps < 1:
            raise SalmapError(f"integrated gradients needs steps >= 1, got {steps}")
        if rule not in RULES:
            raise SalmapError(f"unknown integration rule {rule!r}; choose from {', '.join(RULES)}")
        if isinstance(baseline, str) and baseline not in BASELINES:
            raise SalmapError(
                f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)} or a tensor"
            )
        if not isinstance(baseline, (str, torch.Tensor)):
            raise SalmapError(f"the baseline must be one of {', '.join(BASELINES)} or a tensor")
        if isinstance(baseline, str) and baseline == "black" and normalization is None:
            raise SalmapError(
                "the black baseline needs the model's normalisation: pass normalization=(mean, std)"
            )
        if blur_sigma is not None and blur_sigma <= 0:
            raise SalmapError(f"blur_sigma must be > 0, got {blur_sigma}")
        if polarity not in POLARITIES:
            raise SalmapError(f"unknown polarity {polarity!r}; choose from {', '.join(POLARITIES)}")
        if batch_size is not None and batch_size < 1:
            raise SalmapError(f"batch_size must be >= 1, got {batch_size}")
        self.steps = steps
        self.rule = rule
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.polarity = polarity
        self.normalization = normalization
        self.batch_size = batch_size
        self.completeness: torch.Tensor | None = None

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        return [(x.shape[-2], x.shape[-1])] * self.steps

    def points_per_pass(self, x: torch.Tensor) -> int:
        """Points of the path of the batch `x` that go through the model together (at least one)."""
        chunk = self.batch_size or (64 if x.is_cuda else x.shape[0])
        return max(1, chunk // x.shape[0])

    def baseline_for(self, x: torch.Tensor) -> torch.Tensor:
        """x', shaped like `x`."""
        if isinstance(self.baseline, torch.Tensor):
            try:
                return self.baseline.to(x.device, x.dtype).expand_as(x)
            except RuntimeError:
                raise SalmapError(
                    f"the baseline's shape {tuple(self.baseline.shape)} does not fit images {tuple(x.shape)}"
                ) from None
        if self.baseline == "zeros":
            return torch.zeros_like(x)
        if self.baseline == "black":
            mean, std = (
                torch.as_tensor(v, device=x.device, dtype=x.dtype).view(-1, 1, 1) for v in self.normalization
            )
            return ((0 - mean) / std).expand_as(x)
        return gaussian_blur(x, self.blur_sigma or x.shape[-2] / 20)

    def attributions(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The attributions `(B, C, H, W)`; sets `completeness`."""
        reference = self.baseline_for(x).detach()
        score = self.score(target)
        # S(x) for the completeness error: the right Riemann sum ends at x itself, so its last
        # point gives S(x) when the classes are known; otherwise one forward pass on x fixes them
        with torch.no_grad():
            at_image = score(self.model(x)) if target.kind == "top1" or self.rule != "riemann" else None
            at_reference = score(self.model(reference))
        difference = x - reference
        alphas, weights = path_points(self.steps, self.rule)
        per_pass = 1 if target.kind == "score" else self.points_per_pass(x)
        repeated = {}
        integral = torch.zeros_like(x)
        for start in range(0, self.steps, per_pass):
            count = min(per_pass, self.steps - start)
            a = alphas[start : start + count].to(x.device, x.dtype).view(-1, 1, 1, 1, 1)
            w = weights[start : start + count].to(x.device, x.dtype).view(-1, 1, 1, 1, 1)
            points = (reference.unsqueeze(0) + a * difference.unsqueeze(0)).flatten(0, 1).requires_grad_(True)
            if count not in repeated:
                repeated[count] = target if count == 1 else target.repeat(count)
            scores = repeated[count].scores(self.model(points), self.read_logits)
            (grad,) = torch.autograd.grad(scores.sum(), points)
            integral += (grad.view(count, *x.shape) * w).sum(dim=0)
            if at_image is None and start + count == self.steps:
                at_image = scores.detach().view(count, x.shape[0])[-1]
        attributions = difference * integral
        with torch.no_grad():
            ends = at_image - at_reference
            error = (attributions.flatten(1).sum(dim=1) - ends).abs() / ends.abs().clamp_min(1e-12)
        self.completeness = error.detach().float().cpu()
        return attributions.detach()

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        attributions = self.attributions(x, target)
        if self.polarity == "positive":
            return attributions.clamp(min=0).sum(dim=1)
        if self.polarity == "absolute":
            return attributions.abs().sum(dim=1)
        return attributions.sum(dim=1)

    def settings(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "rule": self.rule,
            "baseline": self.baseline if isinstance(self.baseline, str) else "tensor",
            "blur_sigma": self.blur_sigma,
            "polarity": self.polarity,
            "completeness_error": None
            if self.completeness is None
            else round(float(self.completeness.max()), 6),
        }
