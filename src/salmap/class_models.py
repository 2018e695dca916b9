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
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD
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
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    low, high = (0 - mean_t) / std_t, (1 - mean_t) / std_t
    target = torch.tensor(classes, device=device)
    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(len(classes), mean_t.shape[1], *input_size, device=device)
    history = torch.zeros(steps, len(classes))
    step_size = lr
    with gradients_enabled():
        for step in tqdm(range(steps), desc="class model", disable=not progress, leave=False):
            shift = (
                torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist() if jitter else [0, 0]
            )
            image.requires_grad_(True)
            seen = torch.roll(image, shifts=shift, dims=(-2, -1)) if jitter else image
            logits = logits_of(model(seen))
            if step == 0 and not 0 <= min(classes) <= max(classes) < logits.shape[-1]:
                raise SalmapError(f"class index out of range: the model has {logits.shape[-1]} classes")
            scores = logits.gather(1, target.view(-1, 1)).squeeze(1)
            objective = scores - l2 * image.pow(2).flatten(1).sum(1)
            (gradient,) = torch.autograd.grad(objective.sum(), image)
            history[step] = scores.detach().cpu()
            with torch.no_grad():
                image = image.detach() + step_size * gradient
                if blur_every and (step + 1) % blur_every == 0:
                    kernel = 2 * int(3 * blur_sigma + 0.5) + 1
                    image = TF.gaussian_blur(image, [kernel, kernel], [blur_sigma, blur_sigma])
                if clip:
                    image = torch.maximum(torch.minimum(image, high), low)
            step_size *= decay
    with torch.no_grad():
        logits = logits_of(model(image))
        final = logits.gather(1, target.view(-1, 1)).squeeze(1)
        probabilities = logits.softmax(dim=-1).gather(1, target.view(-1, 1)).squeeze(1)
    return ClassVisualization(
        class_indices=classes,
        images=(image * std_t + mean_t).clamp(0, 1).cpu(),
        raw=image.cpu(),
        scores=final.cpu(),
        probabilities=probabilities.cpu(),
        history=history,
    )
