"""The method names the command line and the evaluation use, and how each is built."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from salmap.errors import SalmapError
from salmap.explainers import CAM, CAMERAS, Explainer, GradCAM, Gradient, GuidedBackprop, SmoothGrad

Builder = Callable[[nn.Module, str | None], Explainer]

METHODS: dict[str, tuple[str, Builder]] = {
    "gradient": ("Gradient saliency, Simonyan et al. 2013", lambda m, layer: Gradient(m)),
    "smoothgrad": (
        "SmoothGrad over the gradient, n=50, noise 15%, Smilkov et al. 2017",
        lambda m, layer: SmoothGrad(Gradient(m)),
    ),
    "guided_backprop": (
        "Guided backpropagation, Springenberg et al. 2014",
        lambda m, layer: GuidedBackprop(m),
    ),
    "cam": ("Class activation mapping (GAP + linear models), Zhou et al. 2016", CAM),
    "gradcam": ("Grad-CAM, Selvaraju et al. 2017", GradCAM),
    "cameras": ("CAMERAS, 8 input sizes in 100 px steps, Jalwana et al. 2021", CAMERAS),
}


def parse_methods(spec: str) -> list[str]:
    """Method names from a comma-separated list, or "all"."""
    if spec.strip() == "all":
        return list(METHODS)
    names = [name.strip().lower().replace("-", "_") for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise SalmapError(
            f"unknown method {', '.join(unknown) or spec!r}; choose from {', '.join(METHODS)} or all"
        )
    return names


def make_explainer(name: str, model: nn.Module, layer: str | None = None) -> Explainer:
    """The explainer called `name` for `model`, reading `layer` where the method uses one."""
    if name not in METHODS:
        raise SalmapError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name][1](model, layer)
