"""The method names the command line and the evaluation use, and how each is built."""

from __future__ import annotations

from pathlib import Path

import torch
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
TRAINED_METHODS: dict[str, str] = {
    "casm": "Classifier-agnostic saliency mapper (needs --checkpoint), Zolna et al. 2019",
    "baseline": "CASM's classifier-dependent Baseline, thinning F (needs --checkpoint), Zolna et al. 2019",
}
SHIPPED_CHECKPOINTS = {"casm": "casm_digits.pt", "baseline": "baseline_digits.pt"}


def shipped_checkpoint(method: str) -> Path:
    """The checkpoint of `method` trained on the cluttered digits that ships with salmap."""
    return Path(__file__).parent / "weights" / SHIPPED_CHECKPOINTS[method]


def parse_methods(spec: str, trained: bool = False) -> list[str]:
    """Method names from a comma-separated list; "all" is every post-hoc method, plus CASM and its
    Baseline when `trained` (a checkpoint is at hand)."""
    known = {**METHODS, **TRAINED_METHODS}
    if spec.strip() == "all":
        return list(METHODS) + (list(TRAINED_METHODS) if trained else [])
    names = [name.strip().lower().replace("-", "_") for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SalmapError(
            f"unknown method {', '.join(unknown) or spec!r}; choose from {', '.join(known)} or all"
        )
    return names


def trained_checkpoints(
    methods: list[str], checkpoint: str | Path | None, model_name: str
) -> dict[str, str | Path]:
    """Which checkpoint each requested CASM method reads: `checkpoint` for the one requested, or
    the shipped digits checkpoints when explaining the shipped digits classifier."""
    requested = [name for name in methods if name in TRAINED_METHODS]
    if checkpoint is not None:
        if len(requested) != 1:
            raise SalmapError("--checkpoint goes with exactly one of the methods casm and baseline")
        return {requested[0]: checkpoint}
    if model_name == "digits_cnn":
        return {name: shipped_checkpoint(name) for name in requested}
    return {}


def make_explainer(
    name: str,
    model: nn.Module,
    layer: str | None = None,
    samples: int = 50,
    scales: int = 8,
    checkpoint: str | Path | None = None,
) -> Explainer:
    """The explainer called `name` for `model`: `layer` for the layer methods, `samples` noisy
    copies for SmoothGrad, `scales` input sizes for CAMERAS, `checkpoint` for CASM and its
    Baseline (which carry their own classifier and ignore `model`)."""
    if name in TRAINED_METHODS:
        from salmap.casm import CASM, Baseline

        if checkpoint is None:
            raise SalmapError(f"{name} needs a trained checkpoint: pass --checkpoint PATH")
        device = next(model.parameters(), torch.empty(0)).device
        return (CASM if name == "casm" else Baseline).from_checkpoint(checkpoint, device)
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
