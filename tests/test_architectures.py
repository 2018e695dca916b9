"""Every method on every architecture family people bring (random weights, small inputs): a
correct map (shape, not constant, Grad-CAM equal to pytorch-grad-cam at the same layer, the
gradient equal to captum's) or a SalmapError with a clear message, and the model left as it was.

The named timm and torchvision architectures are built with small input sizes (`img_size=`,
`image_size=`); BEiT and torchvision's MaxViT, whose smallest named variants are large, are built
from the same classes with fewer and narrower layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from salmap import SalmapError, make_explainer, method_names

NO_RELU = "has none"
NOT_GAP = "CAM needs global average pooling"


@dataclass
class Family:
    """A model builder, its input size, the layer found automatically, how pytorch-grad-cam reads
    that layer (None: feature maps; "channels_last"; or (prefix tokens, grid)), and the methods
    expected to refuse it, with a fragment of their message."""

    build: Callable[[], nn.Module]
    size: int
    layer: str
    peer_reading: object
    refused: dict[str, str] = field(default_factory=dict)


def tokens(prefix: int, grid: int):
    return (prefix, grid)


def _torchvision_vit() -> nn.Module:
    model = torchvision.models.vit_b_16(image_size=64, num_classes=10)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts the head at zero
    return model


FAMILIES = {
    "timm_vit": Family(
        lambda: timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10),
        64,
        "blocks.11.norm1",
        tokens(1, 4),
        {"guided_backprop": NO_RELU, "cam": NOT_GAP},
    ),
    "timm_deit_distilled": Family(
        lambda: timm.create_model("deit_tiny_distilled_patch16_224", img_size=64, num_classes=10),
        64,
        "blocks.11.norm1",
        tokens(2, 4),
        {"guided_backprop": NO_RELU, "cam": NOT_GAP},
    ),
    "timm_beit": Family(
        lambda: timm.create_model(
            "beit_base_patch16_224", img_size=64, depth=2, embed_dim=96, num_heads=3, num_classes=10
        ),
        64,
        "blocks.1.norm1",
        tokens(1, 4),
        {"guided_backprop": NO_RELU, "cam": NOT_GAP},
    ),
    "timm_eva": Family(
        lambda: timm.create_model("eva02_tiny_patch14_224", img_size=56, num_classes=10),
        56,
        "blocks.11.norm1",
        tokens(1, 4),
        {"guided_backprop": NO_RELU, "cam": NOT_GAP},
    ),
    "timm_swin": Family(
        lambda: timm.create_model("swin_tiny_patch4_window7_224", img_size=96, num_classes=10),
        96,
        "layers.3.blocks.1.norm1",
        "channels_last",
        {"guided_backprop": NO_RELU},
    ),
    "timm_maxvit": Family(
        lambda: timm.create_model("maxvit_nano_rw_256", img_size=128, num_classes=10),
        128,
        "stages.3.blocks.0.attn_grid.norm1",
        "channels_last",
        {"guided_backprop": NO_RELU, "cameras": "it runs at steps of 128 px"},
    ),
    "timm_convnext": Family(
        lambda: timm.create_model("convnext_atto", num_classes=10),
        64,
        "norm_pre",
        None,
        {"guided_backprop": NO_RELU, "cam": NOT_GAP},
    ),
    "timm_efficientnet": Family(
        lambda: timm.create_model("efficientnet_b0", num_classes=10),
        64,
        "bn2",
        None,
        {"guided_backprop": NO_RELU},
    ),
    "torchvision_vit": Family(
        _torchvision_vit,
        64,
        "encoder.layers.encoder_layer_11.ln_1",
        tokens(1, 4),
        {"guided_backprop": NO_RELU, "cam": NOT_GAP},
    ),
    "torchvision_swin": Family(
        lambda: torchvision.models.swin_t(num_classes=10),
        128,
        "features.7.1.norm1",
        "channels_last",
        {"guided_backprop": NO_RELU},
    ),
    "torchvision_maxvit": Family(
        lambda: torchvision.models.MaxVit(
            input_size=(64, 64),
            stem_channels=16,
            partition_size=2,
            block_channels=[16, 32],
            block_layers=[1, 1],
            head_dim=8,
            stochastic_depth_prob=0.0,
            num_classes=10,
        ),
        64,
        "blocks.1",
        None,
        {"guided_backprop": NO_RELU, "cam": NOT_GAP, "cameras": "runs only at its input size 64x64"},
    ),
    "torchvision_resnet": Family(lambda: torchvision.models.resnet18(num_classes=10), 64, "layer4", None),
}
SETTINGS = {
    "smoothgrad": {"n": 2},
    "cameras": {"steps": 2},
    "integrated_gradients": {"steps": 4},
    "occlusion": {"window": 16, "stride": 16},
    "rise": {"n": 32},
}
# Score-CAM takes one forward pass per channel of the layer: the loop below runs it on the
# families whose layer has at most this many (the token layers of ViT, DeiT, BEiT and EVA);
# `test_scorecam_reads_a_channels_last_layer` covers channels-last layers
SCORECAM_MAX_CHANNELS = 256


def peer_reshape(reading: object):
    """pytorch-grad-cam's documented `reshape_transform` for the reading."""
    if reading is None:
        return None
    if reading == "channels_last":
        return lambda t: t.permute(0, 3, 1, 2)
    prefix, grid = reading
    return lambda t: t[:, prefix:, :].reshape(t.size(0), grid, grid, t.size(2)).permute(0, 3, 1, 2)


def correlation(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_method_is_right_or_refused(name: str, one_thread) -> None:
    from captum.attr import Saliency
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    family = FAMILIES[name]
    torch.manual_seed(0)
    model = family.build().eval().requires_grad_(False)
    x = torch.randn(2, 3, family.size, family.size)
    before = model(x)
    maps = {}
    for method in method_names(trained=False):
        explainer = make_explainer(method, model, **SETTINGS.get(method, {}))
        if method == "scorecam" and explainer.activations(x[:1])[0].shape[1] > SCORECAM_MAX_CHANNELS:
            continue
        if method in family.refused:
            with pytest.raises(SalmapError, match=family.refused[method]):
                explainer.prepare(x[:1])
            with pytest.raises(SalmapError, match=family.refused[method]):
                explainer(x)
            continue
        maps[method] = explainer(x, [3, 7])
        assert maps[method].shape == (2, family.size, family.size), method
        assert bool((maps[method].flatten(1).std(dim=1) > 1e-3).all()), f"{method} gives a constant map"
        if method in ("gradcam", "cameras"):
            assert explainer.choices()["layer"] == f"{family.layer} (auto)"
    torch.testing.assert_close(model(x), before)  # CAMERAS put every resized part back

    layer = dict(model.named_modules())[family.layer]
    with PeerGradCAM(
        model, target_layers=[layer], reshape_transform=peer_reshape(family.peer_reading)
    ) as peer:
        theirs = peer(
            input_tensor=x.clone().requires_grad_(True),
            targets=[ClassifierOutputTarget(3), ClassifierOutputTarget(7)],
        )
    for i in range(2):
        assert correlation(maps["gradcam"][i], theirs[i]) > 0.999
    saliency = Saliency(model).attribute(x.clone().requires_grad_(True), target=[3, 7], abs=True)
    torch.testing.assert_close(
        make_explainer("gradient", model)(x, [3, 7], normalize=False),
        saliency.amax(dim=1),
        rtol=1e-4,
        atol=1e-6,
    )


def test_cameras_runs_a_maxvit_at_the_sizes_it_takes(one_thread) -> None:
    torch.manual_seed(0)
    model = FAMILIES["timm_maxvit"].build().eval()
    explainer = make_explainer("cameras", model, steps=2, step_size=128)
    maps = explainer(torch.randn(1, 3, 128, 128))
    assert maps.shape == (1, 128, 128) and float(maps.std()) > 1e-3
    assert explainer.choices()["sizes"] == "128..256 px, 2 sizes (model run as it is)"


def test_scorecam_reads_a_channels_last_layer(one_thread) -> None:
    # (pytorch-grad-cam is no reference here: after a LayerNorm the channels sum to zero at each
    # position, so with random weights the nearly uniform channel weights leave a map made of
    # their small differences, which its corner-aligned masks change)
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", img_size=96, embed_dim=24, num_classes=10)
    model = model.eval().requires_grad_(False)
    x = torch.randn(2, 3, 96, 96)
    explainer = make_explainer("scorecam", model)
    maps = explainer(x, [3, 7], normalize=False)
    assert explainer.choices()["layer"] == "layers.3.blocks.1.norm1 (auto)"
    assert "channels-last" in explainer.choices()["reading"]
    explicit = make_explainer(
        "scorecam", model, layer="layers.3.blocks.1.norm1", reshape=lambda t: t.permute(0, 3, 1, 2)
    )
    torch.testing.assert_close(maps, explicit(x, [3, 7], normalize=False))
    assert bool((maps.flatten(1).std(dim=1) > 0).all())
