"""CAMERAS (Jalwana, Akhtar, Bennamoun and Mian 2021): multi-scale fusion of activations and
gradients for high-resolution class activation maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from salmap.errors import SalmapError
from salmap.input_size import resizing, running_at
from salmap.layers import LayerSpec, Reshape
from salmap.registry import Option, register
from salmap.targets import Target

from .base import LayerExplainer, resolve_top1


def _upsample(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def _interpolation_matrix(source: int, target: int, like: torch.Tensor) -> torch.Tensor:
    """The (target x source) matrix of 1-D linear interpolation with PyTorch's bilinear rule
    (align_corners=False): bilinear upsampling of a map M is R_h M R_w^T."""
    eye = torch.eye(source, device=like.device, dtype=like.dtype)[None]
    return F.interpolate(eye, size=target, mode="linear", align_corners=False)[0].T


class _UpsampledSum:
    """sum_s upsample(parts[s]) to `size` (bilinear) for parts of fixed spatial shapes, as two
    matrix products: each part is interpolated along the width, the parts are stacked along the
    height, and one product with the stacked height matrices interpolates and sums them at once.
    The interpolation matrices are built once and reused for every channel chunk."""

    def __init__(self, shapes: list[tuple[int, int]], size: tuple[int, int], like: torch.Tensor) -> None:
        height, width = size
        self.widths = [_interpolation_matrix(w, width, like).T for _, w in shapes]
        self.rows = torch.cat([_interpolation_matrix(h, height, like) for h, _ in shapes], dim=1)

    def __call__(self, parts: list[torch.Tensor]) -> torch.Tensor:
        widened = [part @ width for part, width in zip(parts, self.widths, strict=True)]
        return self.rows @ torch.cat(widened, dim=-2)


@register(
    "cameras",
    "cam",
    options=[
        Option("steps", int, 8, "input sizes, from the input size up", alias="--scales"),
        Option("step_size", int, None, "pixels added per size (default: 100 per 224 px of input height)"),
    ],
)
class CAMERAS(LayerExplainer):
    """CAMERAS: activations and gradients fused over several input sizes (Jalwana et al. 2021).

    For each input size s: A_s, G_s = activations of the layer and dy_l/dA_s for x resized to
    s, both upsampled bilinearly to the input size; with mean(.) over the kept sizes,
    map = ReLU(sum_k mean(A_s)_k * mean(G_s)_k), element-wise (Jalwana et al. 2021).

    `sizes` defaults to `steps` sizes from the input size up in steps of `step_size` px on each
    side; `step_size=None` means 100 px per 224 px of input height (224..924 for a 224 input, as
    in the paper; 64..264 for a 64 input). When `target` is None a size is kept for an image
    only if the model's top-1 at that size equals its top-1 at the input size. Batched over
    images; the channel sum is done in chunks of `channel_chunk` channels so memory stays bounded
    for deep layers (None: 32 channels on the CPU, where small chunks stay in cache, and on a GPU
    as many channels as fit 2^24 values of the upsampled maps, to keep the kernels few and large).

    Models built for one input size (vision transformers) run at the other sizes through
    `salmap.input_size.running_at` (timm's `set_input_size`, restored afterwards); a model that
    does not run at a size is refused with the sizes it runs at.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        sizes: Sequence[int] | None = None,
        steps: int = 8,
        step_size: int | None = None,
        channel_chunk: int | None = None,
        output_key: str | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, output_key, reshape)
        if sizes is not None and (len(sizes) == 0 or min(sizes) < 1):
            raise SalmapError("CAMERAS sizes must be a non-empty list of positive pixel sizes")
        if steps < 1 or (step_size is not None and step_size < 0) or (channel_chunk or 1) < 1:
            raise SalmapError("CAMERAS needs steps >= 1, step_size >= 0 and channel_chunk >= 1")
        self.sizes = list(sizes) if sizes is not None else None
        self.steps = steps
        self.step_size = step_size
        self.channel_chunk = channel_chunk
        self._sizes: list[tuple[int, int]] = []

    def input_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (h, w) sizes the image is run at; an explicit size s adds s - height to both sides."""
        if self.sizes is not None:
            return [(s, s + width - height) for s in self.sizes]
        step = self.step_size if self.step_size is not None else round(100 * height / 224)
        return [(height + k * step, width + k * step) for k in range(self.steps)]

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        return self.input_sizes(x.shape[-2], x.shape[-1])

    def _fails_at(self, x: torch.Tensor, size: tuple[int, int]) -> Exception | None:
        """The error the model raises on the first image of `x` resized to `size`, or None."""
        try:
            with running_at(self.model, size), torch.no_grad():
                self.model(_upsample(x[:1], size))
        except (SalmapError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as error:
            return error
        return None

    def _refusal(self, x: torch.Tensor, size: tuple[int, int], error: Exception) -> SalmapError:
        height, width = x.shape[-2], x.shape[-1]
        step = next(
            (d for d in range(32, height + 1, 32) if self._fails_at(x, (height + d, width + d)) is None), None
        )
        if step is None:
            advice = f"it runs only at its input size {height}x{width}: use steps=1 (--cameras-steps 1)"
        else:
            advice = f"it runs at steps of {step} px: use step_size={step} (--cameras-step-size {step})"
        reason = (str(error).splitlines() or [""])[0]
        return SalmapError(
            f"CAMERAS runs the model at {size[0]}x{size[1]} px, which {type(self.model).__name__} does not "
            f"take ({type(error).__name__}: {reason}); {advice}"
        )

    def check(self, x: torch.Tensor) -> None:
        super().check(x)
        self._sizes = self.input_sizes(x.shape[-2], x.shape[-1])
        if len(self._sizes) > 1:
            error = self._fails_at(x, self._sizes[1])
            if error is not None:
                raise self._refusal(x, self._sizes[1], error)

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        self.layer(x)
        top1 = target.kind == "top1"
        target = resolve_top1(self, x, target)
        score = self.score(target)
        kept_activations: list[torch.Tensor] = []
        kept_gradients: list[torch.Tensor] = []
        weights: list[torch.Tensor] = []
        self._sizes = self.input_sizes(*size)
        for scaled_size in self._sizes:
            scaled = x if scaled_size == size else _upsample(x, scaled_size)
            try:
                with running_at(self.model, scaled_size):
                    activations, gradients, output = self.activations_and_gradients(scaled, score)
            except (SalmapError, torch.cuda.OutOfMemoryError):
                raise
            except Exception as error:
                if scaled_size == size:
                    raise
                raise self._refusal(x, scaled_size, error) from error
            keep = (
                (self.read_logits(output).argmax(dim=1) == target.classes).to(x.dtype)
                if top1
                else torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
            )
            kept_activations.append(activations)
            kept_gradients.append(gradients)
            weights.append(keep)
        weight = torch.stack(weights)
        count = weight.sum(dim=0).clamp_min(1.0).view(-1, 1, 1, 1)
        channels = kept_activations[0].shape[1]
        # the keep weights go on the small native-size tensors, before upsampling
        activations = [a * w.view(-1, 1, 1, 1) for a, w in zip(kept_activations, weight, strict=True)]
        gradients = [g * w.view(-1, 1, 1, 1) for g, w in zip(kept_gradients, weight, strict=True)]
        cam = torch.zeros((x.shape[0], *size), device=x.device, dtype=x.dtype)
        upsampled_sum = _UpsampledSum([tuple(a.shape[-2:]) for a in activations], size, activations[0])
        chunk = self.channel_chunk or (
            max(1, 2**24 // (x.shape[0] * size[0] * size[1])) if x.device.type == "cuda" else 32
        )
        for start in range(0, channels, chunk):
            part = slice(start, start + chunk)
            mean_a = upsampled_sum([a[:, part] for a in activations])
            mean_g = upsampled_sum([g[:, part] for g in gradients])
            cam += mean_a.mul_(mean_g).sum(dim=1)
        return F.relu(cam / count.view(-1, 1, 1) ** 2)

    def choices(self) -> dict[str, str]:
        chosen = super().choices()
        if self._sizes:
            (low, _), (high, _) = self._sizes[0], self._sizes[-1]
            chosen["sizes"] = f"{low}..{high} px, {len(self._sizes)} sizes (model run {resizing(self.model)})"
        return chosen

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "sizes": self.sizes,
            "steps": self.steps,
            "step_size": self.step_size,
        }
