"""The method names the command line and the evaluation use, and how each is built."""

from __future__ import annotations

from torch import nn

from salmap.errors import SalmapError
from salmap.explainers import CAM, CAMERAS, Explainer, GradCAM, Gradient, GuidedBackprop, SmoothGrad

METHODS: dict[str, str] = {
    "gradient": "Gradient saliency, Simonyan et al. 2013",
    "smoothgrad": "SmoothGrad over the gradient, n=50, noise 15%, Smilkov et al. 2017",
    "guided_backprop": "Guided backpropagation, Springenberg et al. 2014",
    "cam": "Class activation mapping (GAP + linear models), Zhou et al. 2016",
    "gradcam": "Grad-CAM, Selvaraju et al. 2017",
    "cameras": "CAMERAS, 8 input sizes in steps of 100 px per 224 px, Jalwana et al. 2021",
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


def make_explainer(
    name: str, model: nn.Module, layer: str | None = None, samples: int = 50, scales: int = 8
) -> Explainer:
    """The explainer called `name` for `model`: `layer` for the layer methods, `samples` noisy
    copies for SmoothGrad, `scales` input sizes for CAMERAS."""
    if name == "gradient":
        return Gradient(model)
    if name == "smoothgrad":
        return SmoothGrad(Gradient(model), n=samples)
    if name == "guided_backprop":
        return GuidedBackprop(model)
    if name == "cam":
        return CAM(model, layer)
    if name == "gradcam":
        return GradCAM(model, layer)
    if name == "cameras":
        return CAMERAS(model, layer, steps=scales)
    raise SalmapError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
