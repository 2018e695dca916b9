"""The peer libraries' versions of salmap's methods, as calls on the same model, inputs and
targets, for the speed benchmark (`salmap speed`). Each explainer class maps to the peers that
implement the same method; a peer that is not installed is left out."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from salmap.explainers import (
    CAM,
    CAMERAS,
    EigenCAM,
    Explainer,
    GradCAM,
    GradCAMPlusPlus,
    Gradient,
    GuidedBackprop,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
)
from salmap.explainers.perturbation import copies_per_pass, images_per_pass
from salmap.targets import Target

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


def _torchcam(kind: str, model: nn.Module, layer: nn.Module, x, target, **options: object) -> dict[str, Call]:
    try:
        from torchcam import methods as torchcam_methods
    except ImportError:
        return {}

    def call() -> object:
        extractor = getattr(torchcam_methods, kind)(model, target_layer=layer, **options)
        try:
            with torch.set_grad_enabled(kind not in ("CAM", "ScoreCAM")):
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


def _pytorch_grad_cam(
    kind: str, model: nn.Module, layer: nn.Module, x, target, **attributes
) -> dict[str, Call]:
    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return {}
    targets = [ClassifierOutputTarget(int(t)) for t in target]

    def call() -> object:
        with getattr(pytorch_grad_cam, kind)(model=model, target_layers=[layer]) as peer:
            for name, value in attributes.items():
                setattr(peer, name, value)
            return peer(input_tensor=x, targets=targets)

    return {f"pytorch-grad-cam {kind}": call}


def _integrated_gradients(
    explainer: IntegratedGradients, model: nn.Module, layer: nn.Module, x, target
) -> dict[str, Call]:
    """captum's IntegratedGradients with the same baseline, steps, rule and points per pass."""
    attr = _captum()
    if attr is None:
        return {}
    method = {"riemann": "riemann_right", "gausslegendre": "gausslegendre"}[explainer.rule]
    integrated = attr.IntegratedGradients(model)
    baseline = explainer.baseline_for(x)
    return {
        "captum IntegratedGradients": lambda: integrated.attribute(
            x,
            baselines=baseline,
            target=target,
            n_steps=explainer.steps,
            method=method,
            internal_batch_size=explainer.points_per_pass(x) * x.shape[0],
        )
    }


def _occlusion(explainer: Occlusion, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    """captum's Occlusion with the same window, stride, baseline, score and images per pass."""
    attr = _captum()
    if attr is None:
        return {}
    window, stride, _, _ = explainer.geometry(x.shape[-2], x.shape[-1])
    scored = model if explainer.score_kind == "logit" else nn.Sequential(model, nn.Softmax(dim=1))
    occlusion = attr.Occlusion(scored)
    per_pass = copies_per_pass(x, Target(target, x.shape[0]), explainer.batch_size)
    return {
        "captum Occlusion": lambda: occlusion.attribute(
            x,
            sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride),
            baselines=explainer.baseline,
            target=target,
            perturbations_per_eval=per_pass,
        )
    }


def _gradcam_plus_plus(
    explainer: Explainer, model: nn.Module, layer: nn.Module, x, target
) -> dict[str, Call]:
    return {
        **_pytorch_grad_cam("GradCAMPlusPlus", model, layer, x, target),
        **_torchcam("GradCAMpp", model, layer, x, target),
    }


def _hirescam(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    return _pytorch_grad_cam("HiResCAM", model, layer, x, target)


def _xgradcam(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    return {
        **_pytorch_grad_cam("XGradCAM", model, layer, x, target),
        **_torchcam("XGradCAM", model, layer, x, target),
    }


def _layercam(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    return {
        **_pytorch_grad_cam("LayerCAM", model, layer, x, target),
        **_torchcam("LayerCAM", model, layer, x, target),
    }


def _scorecam(explainer: ScoreCAM, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    """pytorch-grad-cam's ScoreCAM (one image at a time) and torchcam's (batched), each given
    as many images per pass as salmap."""
    per_pass = images_per_pass(x, explainer.batch_size)
    return {
        **_pytorch_grad_cam("ScoreCAM", model, layer, x, target, batch_size=per_pass),
        **_torchcam("ScoreCAM", model, layer, x, target, batch_size=per_pass),
    }


def _eigencam(explainer: Explainer, model: nn.Module, layer: nn.Module, x, target) -> dict[str, Call]:
    return _pytorch_grad_cam("EigenCAM", model, layer, x, target)


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
    IntegratedGradients: _integrated_gradients,
    Occlusion: _occlusion,
    GradCAMPlusPlus: _gradcam_plus_plus,
    HiResCAM: _hirescam,
    XGradCAM: _xgradcam,
    LayerCAM: _layercam,
    ScoreCAM: _scorecam,
    EigenCAM: _eigencam,
}


def peer_calls(
    explainer: Explainer, model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> dict[str, Call]:
    """The installed peers' versions of `explainer`'s method on `model` (a trainable copy, as
    pytorch-grad-cam needs), its `layer`, the inputs `x` and one class per image `target`."""
    build = PEERS.get(type(explainer))
    return build(explainer, model, layer, x, target) if build is not None else {}
