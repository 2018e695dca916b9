"""Agreement with independent implementations on a torchvision ResNet-18 (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from salmap import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    Gradient,
    GuidedBackprop,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    ScoreCAM,
    XGradCAM,
)
from salmap.targets import Target


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randn(2, 3, 64, 64)


def correlation(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_gradient_matches_captum_saliency(resnet, batch) -> None:
    from captum.attr import Saliency

    targets = torch.tensor([3, 7])
    theirs = Saliency(resnet).attribute(batch.clone().requires_grad_(True), target=targets, abs=True)
    ours = Gradient(resnet)(batch, targets, normalize=False)
    torch.testing.assert_close(ours, theirs.amax(dim=1), rtol=1e-4, atol=1e-6)


def test_guided_backprop_matches_captum(resnet, batch) -> None:
    from captum.attr import GuidedBackprop as CaptumGuidedBackprop

    targets = torch.tensor([3, 7])
    theirs = CaptumGuidedBackprop(resnet).attribute(batch.clone().requires_grad_(True), target=targets)
    ours = GuidedBackprop(resnet)(batch, targets, normalize=False)
    for i in range(2):
        assert correlation(ours[i], theirs[i].abs().amax(dim=0).detach()) > 0.99


def test_gradcam_matches_pytorch_grad_cam(resnet, batch) -> None:
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [3, 7]
    with PeerGradCAM(model=resnet, target_layers=[resnet.layer4[-1]]) as peer:
        theirs = peer(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(t) for t in targets])
    ours = GradCAM(resnet, layer="layer4")(batch, torch.tensor(targets))
    for i in range(2):
        assert correlation(ours[i], theirs[i]) > 0.99


def test_gradcam_matches_torchcam(resnet, batch) -> None:
    from torchcam.methods import GradCAM as TorchcamGradCAM

    extractor = TorchcamGradCAM(resnet, target_layer="layer4")
    scores = resnet(batch)
    theirs = extractor([3, 7], scores)[0]
    extractor.remove_hooks()
    upsampled = torch.nn.functional.interpolate(theirs[:, None], size=(64, 64), mode="bilinear")[:, 0]
    ours = GradCAM(resnet, layer="layer4")(batch, torch.tensor([3, 7]))
    for i in range(2):
        assert correlation(ours[i], upsampled[i].detach()) > 0.99


@pytest.fixture(scope="module")
def photo_batch() -> torch.Tensor:
    """Two 96 px images: layer4 of ResNet-18 is then 3x3, enough positions for the layer methods."""
    torch.manual_seed(3)
    return torch.randn(2, 3, 96, 96)


def peer_cam(
    kind: str, model: torch.nn.Module, x: torch.Tensor, targets: list[int], layer: str = "layer4"
) -> np.ndarray:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    with getattr(pytorch_grad_cam, kind)(model=model, target_layers=[module]) as peer:
        return peer(input_tensor=x.clone(), targets=[ClassifierOutputTarget(t) for t in targets])


@pytest.mark.parametrize("rule", ["riemann", "gausslegendre"])
def test_integrated_gradients_matches_captum(resnet, batch, rule: str) -> None:
    from captum.attr import IntegratedGradients as CaptumIntegratedGradients

    targets = torch.tensor([3, 7])
    method = {"riemann": "riemann_right", "gausslegendre": "gausslegendre"}[rule]
    theirs = CaptumIntegratedGradients(resnet).attribute(
        batch, baselines=0.0, target=targets, n_steps=16, method=method
    )
    ours = IntegratedGradients(resnet, steps=16, rule=rule).attributions(batch, Target(targets, 2))
    for i in range(2):
        assert correlation(ours[i], theirs[i].detach()) > 0.999
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_occlusion_matches_captum(resnet, batch, score: str) -> None:
    from captum.attr import Occlusion as CaptumOcclusion

    targets = torch.tensor([3, 7])
    scored = resnet if score == "logit" else torch.nn.Sequential(resnet, torch.nn.Softmax(dim=1))
    # 64 px, window 16, stride 8: the windows reach the far edges, where captum places no window
    theirs = CaptumOcclusion(scored).attribute(
        batch, sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8), baselines=0.0, target=targets
    )
    ours = Occlusion(resnet, window=16, stride=8, score=score)(batch, targets, normalize=False)
    for i in range(2):
        assert correlation(ours[i], theirs[i].sum(dim=0) / 3) > 0.999
    torch.testing.assert_close(ours, theirs.mean(dim=1).detach(), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    ("ours", "kind", "threshold"),
    [
        (GradCAMPlusPlus, "GradCAMPlusPlus", 0.99),
        (HiResCAM, "HiResCAM", 0.999),
        (XGradCAM, "XGradCAM", 0.999),
        (LayerCAM, "LayerCAM", 0.999),
    ],
)
def test_gradient_cams_match_pytorch_grad_cam(resnet, photo_batch, ours, kind: str, threshold: float) -> None:
    targets = [3, 7]
    theirs = peer_cam(kind, resnet, photo_batch, targets)
    maps = ours(resnet, layer="layer4")(photo_batch, torch.tensor(targets))
    for i in range(2):
        assert correlation(maps[i], theirs[i]) > threshold


def test_scorecam_matches_pytorch_grad_cam(resnet, batch) -> None:
    targets = [3, 7]
    # layer3 (256 channels, 4x4): half the masked passes of layer4, at a finer resolution
    theirs = peer_cam("ScoreCAM", resnet, batch, targets, layer="layer3")
    maps = ScoreCAM(resnet, layer="layer3")(batch, torch.tensor(targets))
    for i in range(2):
        assert correlation(maps[i], theirs[i]) > 0.99


def test_eigencam_matches_pytorch_grad_cam_when_centred(tiny_net, images) -> None:
    # stride 1 keeps the layer at the input size: the peer takes the positive part before
    # upsampling, salmap has no ReLU, so without upsampling the two can be compared exactly
    tiny_net.conv2.stride = (1, 1)
    theirs = peer_cam("EigenCAM", tiny_net, images, [0, 1, 2, 3], layer="relu2")
    signed = EigenCAM(tiny_net, layer="relu2", center=True)(images, normalize=False)
    for i in range(len(images)):
        # the peer keeps the SVD's arbitrary sign, then the positive part: compare with ours
        # under the sign the peer happened to take
        assert max(correlation(torch.relu(sign * signed[i]), theirs[i]) for sign in (1, -1)) > 0.999
    assert torch.all(signed.flatten(1).sum(dim=1).abs() < 1e-4), "centred components sum to 0"


def vit_reshape_transform(prefix: int, height: int, width: int):
    """pytorch-grad-cam's documented `reshape_transform` for ViT-style tokens: drop the class
    token (and here the distillation token too), lay the rest out on the grid, channels first."""

    def reshape_transform(tensor: torch.Tensor) -> torch.Tensor:
        result = tensor[:, prefix:, :].reshape(tensor.size(0), height, width, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape_transform


def swin_reshape_transform(tensor: torch.Tensor) -> torch.Tensor:
    """The same for timm's Swin, whose blocks are channels-last (B, h, w, C) maps."""
    return tensor.permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("name", "size", "layer", "reshape_transform"),
    [
        ("vit_tiny_patch16_224", 96, "blocks.11.norm1", vit_reshape_transform(1, 6, 6)),
        ("deit_tiny_distilled_patch16_224", 96, "blocks.11.norm1", vit_reshape_transform(2, 6, 6)),
        ("swin_tiny_patch4_window7_224", 224, "layers.3.blocks.1.norm1", swin_reshape_transform),
    ],
)
def test_gradcam_on_vision_transformers_matches_pytorch_grad_cam(
    name, size, layer, reshape_transform
) -> None:
    """Random weights; the layer pytorch-grad-cam's documentation recommends, which is also the
    one salmap chooses automatically."""
    import timm
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = timm.create_model(name, img_size=size, num_classes=10).eval()
    torch.manual_seed(2)
    x = torch.randn(2 if size < 224 else 1, 3, size, size)
    targets = [3, 7][: len(x)]
    module = dict(model.named_modules())[layer]
    with PeerGradCAM(model=model, target_layers=[module], reshape_transform=reshape_transform) as peer:
        theirs = peer(input_tensor=x.clone(), targets=[ClassifierOutputTarget(t) for t in targets])
    explainer = GradCAM(model)
    ours = explainer(x, targets)
    assert explainer.layer_name == layer
    for i in range(len(x)):
        assert correlation(ours[i], theirs[i]) > 0.999
