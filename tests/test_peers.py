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
