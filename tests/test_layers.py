"""Reading a layer's output as feature maps: tokens, channels-last maps, a user's reshape, and the
layers that must be refused (timm and torchvision models with random weights, small inputs)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import TinyGapNet
from torch import nn

from salmap import GradCAM, SalmapError, make_explainer
from salmap.layers import (
    find_target_layer,
    layer_activations,
    layer_activations_and_gradients,
    read_output,
)


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


def raw_output_and_gradient(model: nn.Module, module: nn.Module, x: torch.Tensor, target: list[int]):
    """The layer's raw output and the gradient of the target scores with respect to it, by plain
    autograd (a hook that keeps the output)."""
    kept: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, output: kept.append(output))
    try:
        with torch.enable_grad():
            logits = model(x.clone().requires_grad_(True))
            (gradient,) = torch.autograd.grad(logits[torch.arange(len(target)), target].sum(), kept[0])
    finally:
        handle.remove()
    return kept[0].detach(), gradient


def score_of(target: list[int]):
    return lambda logits: logits[torch.arange(len(target)), target]


def test_tokens_are_laid_out_on_the_grid_after_the_class_token(vit, x64) -> None:
    module = vit.blocks[11].norm1
    activations, gradients, _ = layer_activations_and_gradients(vit, module, x64, score_of([3, 7]))
    raw, raw_gradient = raw_output_and_gradient(vit, module, x64, [3, 7])
    assert raw.shape == (2, 17, 192) and activations.shape == (2, 192, 4, 4)
    for row, column in [(0, 0), (1, 3), (3, 2)]:
        torch.testing.assert_close(activations[:, :, row, column], raw[:, 1 + 4 * row + column])
        torch.testing.assert_close(gradients[:, :, row, column], raw_gradient[:, 1 + 4 * row + column])
    forward_only, _ = layer_activations(vit, module, x64)
    torch.testing.assert_close(forward_only, activations)
    assert not forward_only.requires_grad


def test_distillation_token_is_dropped_too(x64) -> None:
    torch.manual_seed(0)
    deit = timm.create_model("deit_tiny_distilled_patch16_224", img_size=64, num_classes=10).eval()
    module = deit.blocks[11].norm1
    activations, gradients, _ = layer_activations_and_gradients(deit, module, x64, score_of([1, 2]))
    raw, raw_gradient = raw_output_and_gradient(deit, module, x64, [1, 2])
    assert raw.shape == (2, 18, 192)
    torch.testing.assert_close(activations.flatten(2).transpose(1, 2), raw[:, 2:])
    torch.testing.assert_close(gradients.flatten(2).transpose(1, 2), raw_gradient[:, 2:])
    explainer = GradCAM(deit)
    explainer(x64)
    assert explainer.choices()["reading"] == (
        "tokens (B, 18, 192) read as a 4x4 grid after 2 prefix tokens (timm patch_embed)"
    )


def test_the_grid_comes_from_the_model_not_from_a_square_root() -> None:
    """48x80 px through a 16 px patch embedding: 1 class token + 3x5 patches = 16 tokens, which a
    square-root guess would read as a 4x4 grid without class token."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", dynamic_img_size=True, num_classes=10).eval()
    x = torch.randn(1, 3, 48, 80)
    module = vit.blocks[11].norm1
    activations, _, _ = layer_activations_and_gradients(vit, module, x, score_of([4]))
    raw, _ = raw_output_and_gradient(vit, module, x, [4])
    assert raw.shape == (1, 16, 192) and activations.shape == (1, 192, 3, 5)
    torch.testing.assert_close(activations[0, :, 2, 4], raw[0, 15])


def test_channels_last_maps_are_permuted() -> None:
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=128, num_classes=10).eval()
    x = torch.randn(1, 3, 128, 128)
    activations, gradients, _ = layer_activations_and_gradients(swin, swin.norm, x, score_of([5]))
    raw, raw_gradient = raw_output_and_gradient(swin, swin.norm, x, [5])
    assert raw.shape == (1, 4, 4, 768)
    torch.testing.assert_close(activations, raw.permute(0, 3, 1, 2))
    torch.testing.assert_close(gradients, raw_gradient.permute(0, 3, 1, 2))


def test_layers_that_are_not_feature_maps_are_refused(vit, x64) -> None:
    with pytest.raises(
        SalmapError, match=r"cannot read layer blocks.11.attn.k_norm's output \(B, 3, 17, 64\)"
    ):
        GradCAM(vit, layer="blocks.11.attn.k_norm")(x64)
    with pytest.raises(
        SalmapError, match=r"layer head's output \(B, 10\).*has no spatial positions.*reshape="
    ):
        GradCAM(vit, layer="head")(x64)
    torch.manual_seed(0)
    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=64, num_classes=10).eval()
    with pytest.raises(SalmapError, match="first dimension is not the batch"):
        GradCAM(swin, layer="layers.0.blocks.0.attn")(x64)


def test_a_layer_the_score_does_not_read_is_refused(vit, x64) -> None:
    """After the last block only the class token reaches the logits: the patches get no gradient."""
    with pytest.raises(SalmapError, match="gradient is zero at every position of layer norm"):
        GradCAM(vit, layer="norm")(x64)


class PlainTokens(nn.Module):
    """A transformer that names no patch embedding salmap knows: 8 px patches, a class token and
    one encoder layer; the class token is classified."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        return self.fc(self.encoder(self.norm(tokens))[:, 0])


def test_a_grid_is_inferred_only_when_one_fits_and_is_shown() -> None:
    torch.manual_seed(0)
    model = PlainTokens().eval()
    x = torch.randn(2, 3, 32, 48)  # 4x6 patches after 1 class token: 25 tokens
    explainer = GradCAM(model, layer="norm")
    maps = explainer(x)
    assert maps.shape == (2, 32, 48)
    assert explainer.choices()["reading"] == (
        "tokens (B, 25, 16) read as a 4x6 grid after 1 prefix token (grid inferred from the token count)"
    )
    assert read_output(model, model.norm, (2, 25, 16), 2, (32, 48)).grid == (4, 6)
    with pytest.raises(SalmapError, match="more than one grid"):  # 2x4 after 2 tokens, 1x2 after 8
        read_output(model, model.norm, (2, 10, 16), 2, (32, 64))


def test_a_reshape_reads_what_salmap_cannot(x64) -> None:
    """A reshape in pytorch-grad-cam's convention gives the same map as pytorch-grad-cam."""
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = PlainTokens().eval()

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1:].reshape(len(tokens), 8, 8, -1).permute(0, 3, 1, 2)

    ours = GradCAM(model, layer="norm", reshape=reshape)
    maps = ours(x64, [1, 2])
    assert ours.choices()["reading"] == "(B, 65, 16) read by the given reshape"
    with PeerGradCAM(model=model, target_layers=[model.norm], reshape_transform=reshape) as peer:
        theirs = peer(input_tensor=x64, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    torch.testing.assert_close(maps, torch.from_numpy(theirs), atol=1e-5, rtol=1e-4)
    with pytest.raises(SalmapError, match=r"reshape must return feature maps \(B, C, h, w\)"):
        GradCAM(model, layer="norm", reshape=lambda tokens: tokens)(x64)


@pytest.mark.parametrize(
    ("module", "shape", "kind"),
    [
        (nn.Conv2d(3, 32, 3, padding=1), (1, 32, 32, 32), "maps"),  # square in every reading
        (nn.LayerNorm(32), (1, 32, 32, 32), "channels_last"),  # the norm acts on the last dimension
        (nn.Identity(), (1, 7, 7, 768), "channels_last"),  # only (B, h, w, C) has the input's shape
        (nn.Identity(), (1, 768, 7, 7), "maps"),
        (nn.Identity(), (1, 56, 56, 96), "channels_last"),
        (nn.Identity(), (1, 2048, 8, 8), "maps"),  # Inception's 8x8 at 299 px
    ],
)
def test_four_dimensional_outputs_follow_the_aspect_ratio_then_the_modules(module, shape, kind) -> None:
    size = (299, 299) if shape[-1] == 8 else (32, 32) if shape[1] == 32 else (224, 224)
    assert read_output(nn.Sequential(module), module, shape, 1, size).kind == kind


def test_the_automatic_layer_of_a_cnn_is_its_last_feature_map(tiny_net: TinyGapNet, images) -> None:
    assert find_target_layer(tiny_net, images) == "relu2"
    explainer = make_explainer("gradcam", tiny_net)
    explainer.prepare(images)
    assert explainer.choices() == {"layer": "relu2 (auto)"}


def test_compiled_models_are_explained_through_the_module_they_compile(vit, x64) -> None:
    compiled = torch.compile(vit)
    for method in ("gradient", "gradcam", "cameras"):
        settings = {"steps": 2} if method == "cameras" else {}
        expected = make_explainer(method, vit, **settings)(x64)
        torch.testing.assert_close(make_explainer(method, compiled, **settings)(x64), expected)
    torch.testing.assert_close(GradCAM(compiled, layer=compiled.blocks[11].norm1)(x64), GradCAM(vit)(x64))


def test_layer_activations_leave_no_graph_and_no_hooks(tiny_net: TinyGapNet, images) -> None:
    activations, output = layer_activations(tiny_net, tiny_net.conv1, images)
    torch.testing.assert_close(activations, tiny_net.conv1(images))
    torch.testing.assert_close(output, tiny_net(images))
    assert not activations.requires_grad and not output.requires_grad
    assert all(not m._forward_hooks for m in tiny_net.modules())
    assert F.relu(activations).shape == (4, 8, 16, 16)


def test_cameras_on_a_vit_is_the_definition_on_copies_resized_by_timm(vit, x64) -> None:
    """CAMERAS at 64 and 96 px equals the mean of upsampled activations times the mean of
    upsampled gradients, each size taken from a copy of the model given to timm's
    set_input_size; the model itself is left at 64 px."""
    import copy

    from salmap import CAMERAS

    ours = CAMERAS(vit, sizes=[64, 96])(x64, [3, 7], normalize=False)
    activations, gradients = [], []
    for size in (64, 96):
        resized = copy.deepcopy(vit)
        resized.set_input_size(img_size=(size, size))
        scaled = F.interpolate(x64, size=(size, size), mode="bilinear", align_corners=False)
        raw, raw_gradient = raw_output_and_gradient(resized, resized.blocks[11].norm1, scaled, [3, 7])
        grid = size // 16
        for values, kept in ((raw, activations), (raw_gradient, gradients)):
            maps = values[:, 1:].reshape(2, grid, grid, 192).permute(0, 3, 1, 2)
            kept.append(F.interpolate(maps, size=(64, 64), mode="bilinear", align_corners=False))
    expected = F.relu((torch.stack(activations).mean(0) * torch.stack(gradients).mean(0)).sum(dim=1))
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    assert vit.patch_embed.img_size == (64, 64) and vit.pos_embed.shape == (1, 17, 192)
