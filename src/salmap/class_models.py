"""Class model visualisation (Simonyan, Vedaldi and Zisserman 2013): the image that a classifier
finds most typical of a class, found by gradient ascent on the class score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from tqdm import tqdm

from salmap.errors import SalmapError
from salmap.inputs import gradients_enabled
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD, to_normalized, to_pixels
from salmap.targets import logits_of


@dataclass
class ClassVisualization:
    """What `visualize_class` returns, one row per requested class.

    `images`: `(K, C, H, W)` in [0, 1] for display, the dataset mean added back
    (`clamp(I * std + mean, 0, 1)`); `raw`: the optimised images I in the model's normalised
    input space; `scores`: the final pre-softmax class scores S_c(I); `probabilities`: the
    model's softmax probability of the class for I; `history`: `(steps, K)` class scores of the
    image the model saw at each step (after jitter, when jitter is on).
    """

    class_indices: list[int]
    images: torch.Tensor
    raw: torch.Tensor
    scores: torch.Tensor
    probabilities: torch.Tensor
    history: torch.Tensor


def _check(steps: int, lr: float, l2: float, jitter: int, blur_every: int, blur_sigma: float, decay: float):
    if steps < 1:
        raise SalmapError(f"steps must be at least 1, got {steps}")
    if lr <= 0 or l2 < 0:
        raise SalmapError(f"need lr > 0 and l2 >= 0, got lr={lr}, l2={l2}")
    if jitter < 0 or blur_every < 0 or blur_sigma <= 0:
        raise SalmapError("jitter and blur_every must be >= 0 and blur_sigma > 0")
    if not 0 < decay <= 1:
        raise SalmapError(f"decay must be in (0, 1], got {decay}")


def _ascent_gradient(
    model: nn.Module, image: torch.Tensor, target: torch.Tensor, l2: float, shift: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dI [S_c(I) - l2 * ||I||^2] with the model shown I rolled by `shift`, and the scores."""
    image = image.detach().requires_grad_(True)
    seen = torch.roll(image, shifts=shift, dims=(-2, -1)) if any(shift) else image
    logits = logits_of(model(seen))
    if not 0 <= int(target.min()) <= int(target.max()) < logits.shape[-1]:
        raise SalmapError(f"class index out of range: the model has {logits.shape[-1]} classes")
    scores = logits.gather(1, target.view(-1, 1)).squeeze(1)
    objective = scores - l2 * image.pow(2).flatten(1).sum(1)
    (gradient,) = torch.autograd.grad(objective.sum(), image)
    return gradient, scores.detach().cpu()


@dataclass
class _Regularisers:
    """The optional regularisers of `visualize_class`: a random roll before each step, a blur
    every `blur_every` steps, and clipping to the valid pixel range (`bounds`, normalised)."""

    jitter: int
    blur_every: int
    blur_sigma: float
    clip: bool
    bounds: tuple[torch.Tensor, torch.Tensor]
    generator: torch.Generator

    def shift(self) -> list[int]:
        """The roll of the next step (the same for every class)."""
        if not self.jitter:
            return [0, 0]
        return torch.randint(-self.jitter, self.jitter + 1, (2,), generator=self.generator).tolist()

    def __call__(self, image: torch.Tensor, step: int) -> torch.Tensor:
        """The image after step `step` (from 0), blurred and clipped where asked."""
        if self.blur_every and (step + 1) % self.blur_every == 0:
            kernel = 2 * int(3 * self.blur_sigma + 0.5) + 1
            image = TF.gaussian_blur(image, [kernel, kernel], [self.blur_sigma, self.blur_sigma])
        if self.clip:
            image = torch.maximum(torch.minimum(image, self.bounds[1]), self.bounds[0])
        return image


def visualize_class(
    model: nn.Module,
    class_index: int | Sequence[int],
    steps: int = 200,
    lr: float = 1.0,
    l2: float = 1e-3,
    input_size: tuple[int, int] = (224, 224),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    jitter: int = 0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    decay: float = 1.0,
    clip: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> ClassVisualization:
    """argmax_I S_c(I) - l2 * ||I||_2^2 by gradient ascent from the zero image (Simonyan et al.
    2013), for several classes at once (one image per class, batched).

    I lives in the model's normalised input space, so the zero image is the dataset mean image
    and the display adds the mean back. Plain paper mode (the default) is the update
    I <- I + lr * d/dI [S_c(I) - l2 * ||I||^2] on the pre-softmax score. Optional regularisers
    from later work, all off by default: `jitter` rolls the image by a random shift of up to
    that many pixels before each step (the same shift for every class, so a batch equals its
    classes run one by one); `blur_every` applies a Gaussian blur of `blur_sigma` pixels every
    that many steps; `decay` multiplies the step size by that factor after each step; `clip`
    keeps I inside the valid pixel range [0, 1] after each step.
    """
    _check(steps, lr, l2, jitter, blur_every, blur_sigma, decay)
    if model.training:
        raise SalmapError("put the model in eval mode (model.eval()) before visualising it")
    classes = [int(class_index)] if isinstance(class_index, int) else [int(c) for c in class_index]
    if not classes:
        raise SalmapError("give at least one class index")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    target = torch.tensor(classes, device=device)
    image = torch.zeros(len(classes), len(mean), *input_size, device=device)
    shape = (1, len(mean), 1, 1)
    bounds = (
        to_normalized(torch.zeros(shape, device=device), mean, std),
        to_normalized(torch.ones(shape, device=device), mean, std),
    )
    regularise = _Regularisers(
        jitter, blur_every, blur_sigma, clip, bounds, torch.Generator().manual_seed(seed)
    )
    history = torch.zeros(steps, len(classes))
    step_size = lr
    with gradients_enabled():
        for step in tqdm(range(steps), desc="class model", disable=not progress, leave=False):
            gradient, history[step] = _ascent_gradient(model, image, target, l2, regularise.shift())
            with torch.no_grad():
                image = regularise(image.detach() + step_size * gradient, step)
            step_size *= decay
    with torch.no_grad():
        logits = logits_of(model(image))
        final = logits.gather(1, target.view(-1, 1)).squeeze(1)
        probabilities = logits.softmax(dim=-1).gather(1, target.view(-1, 1)).squeeze(1)
    return ClassVisualization(
        class_indices=classes,
        images=to_pixels(image, mean, std).cpu(),
        raw=image.cpu(),
        scores=final.cpu(),
        probabilities=probabilities.cpu(),
        history=history,
    )
