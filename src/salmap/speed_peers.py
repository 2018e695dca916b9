"""The peer libraries' versions of salmap's methods, as calls on the same model, inputs and
targets, for the speed benchmark (`salmap speed`). Each explainer class maps to the peers that
implement the same method; a peer that is not installed is left out."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from salmap.explainers import CAM, CAMERAS, Explainer, GradCAM, Gradient, GuidedBackprop, SmoothGrad

Call = Callable[[], object]


def _captum():
    try:
        from captum import attr
    except ImportError:
        return None
    return attr


def _gradient(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    attr = _captum()
    if attr is None:
        return {}
    saliency = attr.Saliency(model)
    return {"captum Saliency": lambda: saliency.attribute(x, target=target, abs=True).amax(1)}


def _guided_backprop(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    attr = _captum()
    if attr is None:
        return {}
    guided = attr.GuidedBackprop(model)
    return {"captum GuidedBackprop": lambda: guided.attribute(x, target=target).abs().amax(1)}


def _smoothgrad(explainer: SmoothGrad, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    """captum's NoiseTunnel with the same number of noisy copies per pass as salmap's SmoothGrad."""
    attr = _captum()
    if attr is None:
        return {}
    tunnel = attr.NoiseTunnel(attr.Saliency(model))
    return {
        "captum NoiseTunnel": lambda: tunnel.attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=explainer.n,
            nt_samples_batch_size=explainer.copies_per_pass(x),
            stdevs=explainer.noise_level * float(x.max() - x.min()),
            target=target,
            abs=True,
        )
    }


def _torchcam(kind: str, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    try:
        from torchcam import methods as torchcam_methods
    except ImportError:
        return {}

    def call() -> object:
        extractor = getattr(torchcam_methods, kind)(model, target_layer=layer)
        try:
            with torch.set_grad_enabled(kind != "CAM"):
                scores = model(x)
                maps = extractor(target.tolist(), scores)[0]
            return F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear")
        finally:
            extractor.remove_hooks()

    return {f"torchcam {kind}": call}


def _cam(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    return _torchcam("CAM", model, layer, x, target)


def _gradcam(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    calls = _torchcam("GradCAM", model, layer, x, target)
    attr = _captum()
    if attr is not None:
        layer_gradcam = attr.LayerGradCam(model, layer)
        calls["captum LayerGradCam"] = lambda: F.interpolate(
            layer_gradcam.attribute(x, target=target, relu_attributions=True),
            size=x.shape[-2:],
            mode="bilinear",
        )
    try:
        from pytorch_grad_cam import GradCAM as PeerGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return calls
    targets = [ClassifierOutputTarget(int(t)) for t in target]

    def grad_cam() -> object:
        with PeerGradCAM(model=model, target_layers=[layer]) as peer:
            return peer(input_tensor=x, targets=targets)

    calls["pytorch-grad-cam GradCAM"] = grad_cam
    return calls


def _cameras(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    """The reference code's way: one image at a time (there is no peer library)."""
    return {
        "one image at a time": lambda: [explainer(x[i : i + 1], target[i : i + 1]) for i in range(x.shape[0])]
    }


PEERS: dict[type, Callable[..., dict[str, Call]]] = {
    CAMERAS: _cameras,
    Gradient: _gradient,
    GuidedBackprop: _guided_backprop,
    SmoothGrad: _smoothgrad,
    CAM: _cam,
    GradCAM: _gradcam,
}


def peer_calls(
    explainer: Explainer, model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> dict[str, Call]:
    """The installed peers' versions of `explainer`'s method on `model` (a trainable copy, as
    pytorch-grad-cam needs), its `layer`, the inputs `x` and one class per image `target`."""
    build = PEERS.get(type(explainer))
    return build(explainer, model, layer, x, target) if build is not None else {}
