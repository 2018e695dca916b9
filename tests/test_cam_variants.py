"""The Grad-CAM variants, Score-CAM and Eigen-CAM against answers known by construction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyGapNet
from torch import nn

from salmap import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    Occlusion,
    SalmapError,
    ScoreCAM,
    XGradCAM,
    make_explainer,
)
from salmap.explainers.eigencam import first_component
from salmap.explainers.scorecam import channel_masks

pytestmark = pytest.mark.usefixtures("one_thread")


class ConvLinear(nn.Module):
    """conv (stride 1, 4 channels) - ReLU - flatten - linear: the score is linear in the layer's
    activations, S_c = sum_kij W_ckij A_kij + b_c."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


def test_hirescam_is_the_exact_contribution_of_each_position_when_the_score_is_linear() -> None:
    model = ConvLinear().eval()
    x = torch.randn(3, 3, 8, 8)
    targets = torch.tensor([0, 1, 2])
    activations = model.relu(model.conv(x))
    weights = model.fc.weight.view(3, 4, 8, 8)[targets]
    contribution = (weights * activations).sum(dim=1)
    maps = HiResCAM(model, layer="relu")(x, targets, normalize=False)
    torch.testing.assert_close(maps, F.relu(contribution), rtol=1e-4, atol=1e-6)
    # the contributions sum to the score less the bias; Grad-CAM's averaged gradient does not
    scores = model(x).gather(1, targets[:, None])[:, 0] - model.fc.bias[targets]
    torch.testing.assert_close(contribution.flatten(1).sum(dim=1), scores, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(GradCAM(model, layer="relu")(x, targets, normalize=False) * 64, maps, atol=1e-3)


def test_xgradcam_weights_conserve_the_score_of_a_linear_homogeneous_model() -> None:
    """For S = sum W A (no bias), sum_k w_k sum_ij A_ij^k = S: the paper's conservation axiom.
    With one channel the map is w A, so its sum (all positive here) is the score itself."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 1, 3, padding=1)
    relu = nn.ReLU()
    linear = nn.Linear(64, 2, bias=False)
    with torch.no_grad():
        linear.weight.abs_()
    model = nn.Sequential(conv, relu, nn.Flatten(), linear).eval()
    x = torch.randn(2, 3, 8, 8)
    maps = XGradCAM(model, layer="1")(x, target=0, normalize=False)
    torch.testing.assert_close(maps.flatten(1).sum(dim=1), model(x)[:, 0], rtol=1e-4, atol=1e-5)


def test_xgradcam_and_gradcam_plus_plus_give_silent_channels_no_weight(tiny_net: TinyGapNet, images) -> None:
    with torch.no_grad():
        tiny_net.conv2.weight[0].zero_()
        tiny_net.conv2.bias[0] = -1.0  # channel 0 is 0 after the ReLU everywhere
    for method in (XGradCAM, GradCAMPlusPlus):
        maps = method(tiny_net, layer="relu2")(images, normalize=False)
        assert bool(torch.isfinite(maps).all())


def test_gradcam_plus_plus_with_one_position_weights_the_positive_gradient(images) -> None:
    """With a 1x1 layer, alpha = 1 / (2 + A g): the weight of channel k is relu(g) / (2 + A g)."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 16), nn.ReLU(), nn.Flatten(), nn.Linear(6, 4), nn.Softplus(), nn.Linear(4, 3)
    ).eval()
    activations = model[1](model[0](images))
    leaf = activations.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(model[2:](leaf)[:, 1].sum(), leaf)
    a, g = activations.detach()[:, :, 0, 0], gradients[:, :, 0, 0]
    alpha = torch.where(g != 0, 1 / (2 + a * g), 0.0)
    expected = F.relu((alpha * F.relu(g) * a).sum(dim=1))
    # a 1x1 layer is read as feature maps only when the caller says so (`reshape`)
    maps = GradCAMPlusPlus(model, layer="1", reshape=lambda t: t)(images, target=1, normalize=False)
    torch.testing.assert_close(maps, expected.view(-1, 1, 1).expand(-1, 16, 16), rtol=1e-4, atol=1e-6)


def test_layercam_on_gap_linear_weights_each_channel_by_its_positive_class_weight(tiny_net, images) -> None:
    tiny_net.conv2.stride = (1, 1)
    activations = tiny_net.relu2(tiny_net.conv2(F.relu(tiny_net.conv1(images))))
    weights = F.relu(tiny_net.fc.weight[2]) / (16 * 16)  # dS/dA = w / (h w) under GAP
    expected = F.relu(torch.einsum("k,bkhw->bhw", weights, activations))
    maps = LayerCAM(tiny_net, layer="relu2")(images, target=2, normalize=False)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-7)


def test_layercam_fusion_is_the_maximum_of_tanh_scaled_maps(tiny_net: TinyGapNet, images) -> None:
    single = {
        name: LayerCAM(tiny_net, layer=name)(images, target=1, normalize=False) for name in ("conv1", "relu2")
    }

    def scaled(m: torch.Tensor) -> torch.Tensor:
        return torch.tanh(2 * m / m.flatten(1).amax(dim=1).view(-1, 1, 1))

    fused = LayerCAM(tiny_net, layer="relu2", fuse="conv1")(images, target=1, normalize=False)
    torch.testing.assert_close(fused, torch.maximum(scaled(single["relu2"]), scaled(single["conv1"])))
    explainer = make_explainer("layercam", tiny_net, layer="relu2", fuse="conv1")
    assert explainer.settings()["fuse"] == "conv1"
    with pytest.raises(SalmapError, match="no layer named"):
        LayerCAM(tiny_net, fuse="conv9")


def test_scorecam_masks_and_weights(tiny_net: TinyGapNet, images) -> None:
    activations = torch.rand(2, 3, 4, 4)
    activations[1, 2] = 0.7  # a constant channel gives an all-zero mask
    masks = channel_masks(activations, (16, 16))
    assert masks.shape == (2, 3, 16, 16)
    assert float(masks[0].amin()) == 0.0 and torch.allclose(masks[0].flatten(1).amax(dim=1), torch.ones(3))
    assert float(masks[1, 2].abs().max()) == 0.0
    # the map against the formula, computed one channel at a time
    explainer = ScoreCAM(tiny_net, layer="relu2", batch_size=8)
    maps = explainer(images, target=3, normalize=False)
    features = tiny_net.relu2(tiny_net.conv2(F.relu(tiny_net.conv1(images))))
    channel = channel_masks(features, (16, 16))
    scores = torch.stack([tiny_net(images * channel[:, k : k + 1])[:, 3] for k in range(12)], dim=1)
    weights = scores.softmax(dim=1)
    low = F.relu(torch.einsum("bk,bkhw->bhw", weights, features))
    expected = F.interpolate(low[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-6)


def test_scorecam_memory_is_bounded_by_the_pass(tiny_net: TinyGapNet, images) -> None:
    seen: list[int] = []
    handle = tiny_net.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
    try:
        ScoreCAM(tiny_net, layer="relu2", batch_size=8)(images)
    finally:
        handle.remove()
    # the layer's first use checks its reading on one image, then one pass for the activations
    assert seen[:2] == [1, 4] and max(seen) <= 8 and sum(seen) == 1 + 4 + 12 * 4


def test_first_component_of_a_rank_one_layer_is_its_spatial_pattern() -> None:
    torch.manual_seed(0)
    pattern = torch.rand(2, 5, 6)
    loadings = torch.rand(2, 7)
    activations = loadings[:, :, None, None] * pattern[:, None] + 0.001 * torch.rand(2, 7, 5, 6)
    component = first_component(activations)
    for i in range(2):
        assert (
            float(torch.corrcoef(torch.stack([component[i].flatten(), pattern[i].flatten()]))[0, 1]) > 0.999
        )
    assert bool((component.flatten(1).sum(dim=1) > 0).all()), "the sign follows the activations"
    torch.testing.assert_close(first_component(-activations), -component, rtol=1e-4, atol=1e-6)


def test_eigencam_ignores_the_target(tiny_net: TinyGapNet, images) -> None:
    explainer = EigenCAM(tiny_net, layer="relu2")
    torch.testing.assert_close(explainer(images, target=0), explainer(images, target=4))
    with pytest.raises(SalmapError, match="out of range"):
        explainer(images, target=9)


def test_layer_methods_refuse_a_layer_without_a_feature_map(tiny_net: TinyGapNet, images) -> None:
    for method in (GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM, ScoreCAM, EigenCAM):
        with pytest.raises(SalmapError, match="cannot read layer fc"):
            method(tiny_net, layer="fc")(images)


def test_signed_maps_are_the_maps_before_their_relu(tiny_net: TinyGapNet, images) -> None:
    tiny_net.conv2.stride = (1, 1)  # the layer at the input's size: no upsampling between the two
    for method in (HiResCAM, XGradCAM, GradCAMPlusPlus):
        explainer = method(tiny_net, layer="conv2")
        signed = explainer.signed_maps(images, [0, 1, 2, 3])
        assert bool((signed < 0).any()), f"{method.name}: a pre-ReLU map of a conv layer has negative parts"
        maps = explainer(images, [0, 1, 2, 3], normalize=False)
        torch.testing.assert_close(signed.clamp(min=0), maps, rtol=1e-4, atol=1e-6)
    for explainer in (EigenCAM(tiny_net, layer="conv2"), Occlusion(tiny_net, window=4, stride=4)):
        torch.testing.assert_close(explainer.signed_maps(images, 1), explainer(images, 1, normalize=False))
    assert LayerCAM(tiny_net, layer="conv2").signed_maps(images) is None
