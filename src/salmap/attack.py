"""Targeted projected gradient descent (Madry et al. 2018) whose steps can be weighted by a
saliency map, as in the adversarial attack of the CAMERAS paper (Jalwana et al. 2021).

Everything happens in pixel space: the clean image is mapped back to [0, 1] pixels with the
model's mean and std, the perturbation delta is added there, kept inside the eps ball and the
valid range [0, 1], and normalised again for the model. `eps`, `step_size` and every reported
norm are in [0, 1] pixel units, over all C x H x W values of an image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from salmap.errors import SalmapError
from salmap.inputs import check_images, gradients_enabled
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD, to_normalized, to_pixels
from salmap.registry import make_explainer, method_names
from salmap.targets import logits_of, target_indices

NORMS = ("linf", "l2")
DEFAULT_EPS = {"linf": 16 / 255, "l2": 8.0}
DEFAULT_STEP = {"linf": 0.5 / 255, "l2": 0.1}
CONTROLS = ("random", "none")


@dataclass
class AttackResult:
    """What `pgd` returns for a batch of B images.

    `adversarial`: `(B, C, H, W)` normalised for the model; `perturbation`: `(B, C, H, W)` in
    pixel units (adversarial pixels minus clean pixels); `target`, `clean_prediction`,
    `prediction` (of the adversarial image): `(B,)` class indices; `success`: `(B,)` bool, the
    adversarial image is classified as the target; `iterations`: `(B,)` updates made until
    success (`steps` when it failed); `l2`, `linf`: `(B,)` norms of the perturbation.
    """

    adversarial: torch.Tensor
    perturbation: torch.Tensor
    target: torch.Tensor
    clean_prediction: torch.Tensor
    prediction: torch.Tensor
    success: torch.Tensor
    iterations: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor


def focus_weights(saliency: torch.Tensor, focus: float) -> torch.Tensor:
    """Per-pixel step weights `(B, 1, H, W)`: w = (m / max(m)) ** focus for each map m `(B, H, W)`.

    Negative values count as 0, so w is in [0, 1] with w = 1 at the map's peak; a zero map
    gives w = 0 everywhere (the image is left unchanged). A large `focus` keeps only the
    pixels near the peak (with focus = 50, w = 0.5 at 98.6% of the peak and w < 0.01 below
    91%); focus -> 0 approaches a binary mask of the map's support.
    """
    if focus <= 0:
        raise SalmapError(f"focus must be > 0, got {focus}")
    m = saliency.float().clamp_min(0)
    peak = m.flatten(1).amax(dim=1).view(-1, 1, 1)
    scaled = torch.where(peak > 0, m / peak.clamp_min(torch.finfo(m.dtype).tiny), 0.0)
    return scaled.pow(focus).unsqueeze(1)


def random_map(
    batch: int, size: tuple[int, int], cells: int = 7, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A smooth random control map `(batch, H, W)` in [0, 1]: uniform noise on a `cells` x
    `cells` grid, upsampled bilinearly (about as coarse as a Grad-CAM map), scaled to [0, 1]."""
    grid = torch.rand(batch, 1, cells, cells, generator=generator)
    smooth = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = smooth.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    return (smooth - low) / (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp_min(1e-12)


def _targets(target: str | int | Sequence[int] | torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    if isinstance(target, str):
        if target != "least_likely":
            raise SalmapError(
                f"target must be 'least_likely', a class index or one per image, got {target!r}"
            )
        return clean_logits.argmin(dim=-1)
    return target_indices(target, clean_logits)


def _project(delta: torch.Tensor, pixels: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Into the eps ball of `norm`, then into the valid range: pixels + delta in [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        length = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = delta * (eps / length.clamp_min(eps)).clamp(max=1.0)
    return (pixels + delta).clamp(0, 1) - pixels


def _step(gradient: torch.Tensor, weights: torch.Tensor | None, norm: str) -> torch.Tensor:
    """The descent direction: sign(g) * w (linf) or (g * w) / ||g * w||_2 (l2)."""
    if norm == "linf":
        direction = gradient.sign()
        return direction if weights is None else direction * weights
    weighted = gradient if weights is None else gradient * weights
    length = weighted.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return torch.where(length > 0, weighted / length.clamp_min(1e-30), 0.0)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    target: str | int | Sequence[int] | torch.Tensor = "least_likely",
    eps: float | None = None,
    steps: int = 200,
    step_size: float | None = None,
    norm: str = "linf",
    saliency: torch.Tensor | None = None,
    focus: float = 1.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    early_stop: bool = True,
    progress: bool = False,
) -> AttackResult:
    """Targeted PGD in pixel space: delta <- Proj(delta - step_size * s), with s = sign(g) * w
    for `norm="linf"` and s = (g * w) / ||g * w||_2 for `norm="l2"`, g = d CE(f(x + delta), t) /
    d delta, and Proj the eps ball of the norm followed by clamping x + delta to [0, 1].

    `x`: `(B, C, H, W)` normalised with `mean`/`std`. `target`: "least_likely" (the class with
    the lowest clean logit, as in the CAMERAS paper), one class for all, or one per image.
    `saliency`: None (plain PGD, w = 1) or maps `(B, H, W)`; then w = (m / max m) ** focus
    (`focus_weights`). The CAMERAS paper used a strength of 50; in this form focus = 50 keeps
    only the pixels within a few percent of the map's peak, so the default is 1 (w = the map).
    `eps` and `step_size` default to 16/255 and 0.5/255 for linf, 8 and 0.1 for l2. With
    `early_stop` an image stops being updated at the first iterate the model classifies as its
    target.
    """
    x = check_images(x)
    eps, step_size = _check_settings(model, norm, eps, step_size, steps)
    weights = None if saliency is None else _weights(saliency, focus, x)
    pixels = to_pixels(x, mean, std)
    with torch.no_grad():
        clean_logits = logits_of(model(x))
    state = _Descent(
        goal=_targets(target, clean_logits),
        delta=torch.zeros_like(x),
        prediction=clean_logits.argmax(dim=-1),
        iterations=torch.full((x.shape[0],), steps, dtype=torch.long, device=x.device),
        done=torch.zeros(x.shape[0], dtype=torch.bool, device=x.device),
    )
    with gradients_enabled():
        for step in tqdm(range(steps + 1), desc="pgd", disable=not progress, leave=False):
            active = (
                (~state.done).nonzero().flatten() if early_stop else torch.arange(len(x), device=x.device)
            )
            if active.numel() == 0:
                break
            part = state.delta[active].requires_grad_(True)
            logits = logits_of(model(to_normalized(pixels[active] + part, mean, std)))
            state.record(active, logits.detach().argmax(dim=-1), step)
            if step == steps:
                break
            loss = F.cross_entropy(logits, state.goal[active], reduction="sum")
            (gradient,) = torch.autograd.grad(loss, part)
            with torch.no_grad():
                move = _step(gradient, None if weights is None else weights[active], norm)
                state.delta[active] = _project(part.detach() - step_size * move, pixels[active], eps, norm)
    delta = state.delta.detach()
    return AttackResult(
        adversarial=to_normalized(pixels + delta, mean, std),
        perturbation=delta,
        target=state.goal,
        clean_prediction=clean_logits.argmax(dim=-1),
        prediction=state.prediction,
        success=state.prediction == state.goal,
        iterations=state.iterations,
        l2=delta.flatten(1).norm(dim=1),
        linf=delta.flatten(1).abs().amax(dim=1),
    )


def _check_settings(
    model: nn.Module, norm: str, eps: float | None, step_size: float | None, steps: int
) -> tuple[float, float]:
    """The radius and step size (defaults of the norm filled in), checked."""
    if norm not in NORMS:
        raise SalmapError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    eps = DEFAULT_EPS[norm] if eps is None else float(eps)
    step_size = DEFAULT_STEP[norm] if step_size is None else float(step_size)
    if eps <= 0 or step_size <= 0 or steps < 0:
        raise SalmapError(f"need eps > 0, step_size > 0 and steps >= 0, got {eps}, {step_size}, {steps}")
    if model.training:
        raise SalmapError("put the model in eval mode (model.eval()) before attacking it")
    return eps, step_size


def _weights(saliency: torch.Tensor, focus: float, x: torch.Tensor) -> torch.Tensor:
    """The step weights of `focus_weights` for maps that match the batch `x`."""
    if saliency.shape != (x.shape[0], *x.shape[-2:]):
        raise SalmapError(
            f"saliency must have shape {(x.shape[0], *x.shape[-2:])}, got {tuple(saliency.shape)}"
        )
    return focus_weights(saliency.to(x.device), focus).to(x.dtype)


@dataclass
class _Descent:
    """The attack's state per image: its target, perturbation, latest prediction, the iteration it
    reached its target (or the step count) and whether it has."""

    goal: torch.Tensor
    delta: torch.Tensor
    prediction: torch.Tensor
    iterations: torch.Tensor
    done: torch.Tensor

    def record(self, active: torch.Tensor, prediction: torch.Tensor, step: int) -> None:
        """The predictions of the `active` images at `step`; those that hit their target are done."""
        self.prediction[active] = prediction
        hit = (prediction == self.goal[active]) & ~self.done[active]
        self.iterations[active[hit]] = step
        self.done[active[hit]] = True


def attack_maps(
    model: nn.Module, x: torch.Tensor, method: str, layer: str | None = None, seed: int = 0
) -> torch.Tensor | None:
    """The saliency maps `(B, H, W)` that guide the attack: the map of each clean image's top-1
    class by `method` (any post-hoc method of the registry), a smooth random map ("random", the
    control), or None for plain PGD ("none")."""
    if method not in saliency_methods():
        raise SalmapError(f"unknown attack method {method!r}; choose from {', '.join(saliency_methods())}")
    if method == "none":
        return None
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return random_map(x.shape[0], tuple(x.shape[-2:]), generator=generator).to(x.device)
    return make_explainer(method, model, layer=layer)(x)


def saliency_methods() -> list[str]:
    """What can weight the attack's steps: every post-hoc method, a random map, or nothing."""
    return [*method_names(trained=False), *CONTROLS]


def _geometric_mean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def attack_report(results: dict[str, AttackResult], names: Sequence[str]) -> dict:
    """Per-image and aggregate numbers for attacks of the same images by several methods.

    For each method: success, iterations to success, L2 and Linf norms; where plain PGD
    ("none") is among the results, the ratio of each norm to plain PGD's on the images both
    attacks turned into their target, with the geometric mean of those ratios as aggregate.
    """
    plain = results.get("none")
    report: dict = {"images": [], "aggregate": {}}
    for i, name in enumerate(names):
        record: dict = {"image": name, "methods": {}}
        for method, result in results.items():
            entry = {
                "target": int(result.target[i]),
                "clean_prediction": int(result.clean_prediction[i]),
                "prediction": int(result.prediction[i]),
                "success": bool(result.success[i]),
                "iterations": int(result.iterations[i]),
                "l2": float(result.l2[i]),
                "linf": float(result.linf[i]),
            }
            both = plain is not None and bool(result.success[i] & plain.success[i])
            if both and float(result.l2[i]) > 0 and float(plain.l2[i]) > 0:
                entry["l2_ratio"] = float(result.l2[i] / plain.l2[i])
                entry["linf_ratio"] = float(result.linf[i] / plain.linf[i])
            record["methods"][method] = entry
        report["images"].append(record)
    for method in results:
        entries = [record["methods"][method] for record in report["images"]]
        won = [entry for entry in entries if entry["success"]]
        report["aggregate"][method] = {
            "success_rate": len(won) / len(entries),
            "mean_iterations": sum(e["iterations"] for e in won) / len(won) if won else None,
            "mean_l2": sum(e["l2"] for e in won) / len(won) if won else None,
            "mean_linf": sum(e["linf"] for e in won) / len(won) if won else None,
            "compared": sum("l2_ratio" in e for e in entries),
            "l2_ratio": _geometric_mean([e["l2_ratio"] for e in entries if "l2_ratio" in e]),
            "linf_ratio": _geometric_mean([e["linf_ratio"] for e in entries if "linf_ratio" in e]),
        }
    return report
