"""Agreement with independent implementations on a torchvision ResNet-18 (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from salmap import GradCAM, Gradient, GuidedBackprop


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
