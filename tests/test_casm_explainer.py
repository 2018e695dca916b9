"""CASM as an explainer, and the backbone adapters it builds on."""

import pytest
import timm
import torch
import torchvision

from salmap.casm import CASM, Baseline, CASMConfig, adapt, build_mapper, train_casm
from salmap.casm.adapters import backbone_spec, build_backbone
from salmap.casm.mapper import Decoder
from salmap.errors import SalmapError
from salmap.models.digits import DigitsCNN


@pytest.mark.parametrize(
    ("make", "stem", "stages"),
    [
        (lambda: torchvision.models.resnet18(num_classes=7), 64, [64, 128, 256, 512]),
        (lambda: timm.create_model("efficientnet_lite0", num_classes=7), 32, [24, 40, 112, 1280]),
        (lambda: DigitsCNN(num_classes=7, widths=(4, 4, 6, 8)), 4, [4, 6, 8]),
    ],
)
def test_adapters_expose_stem_and_stages_with_the_same_logits(make, stem, stages):
    torch.manual_seed(0)
    model = make().eval()
    staged = adapt(model)
    channels = 1 if isinstance(model, DigitsCNN) else 3
    x = torch.randn(2, channels, 64, 64)
    features = staged(x, features=True)
    torch.testing.assert_close(features.logits, model(x))
    assert staged.channels() == (stem, stages)
    assert not any(module.training for module in model.modules()), "the probe pass left train mode on"
    mask = build_mapper(staged, width=8)(x, features)
    assert mask.shape == (2, 64, 64) and float(mask.detach().min()) >= 0 and float(mask.detach().max()) <= 1


def test_unknown_backbone_fails_clearly():
    with pytest.raises(SalmapError, match="adapter"):
        adapt(torch.nn.Linear(2, 2))


def test_backbone_spec_round_trip():
    model = DigitsCNN(num_classes=4, widths=(4, 4, 6, 8))
    rebuilt = build_backbone(backbone_spec(model, "digits_cnn"))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 1, 16, 16), torch.arange(16) % 3)
    paths = {}
    for name in ("L", "F"):
        config = CASMConfig(
            preset="test",
            data="given",
            thinning=name,
            batch_size=8,
            steps=2,
            decoder_width=4,
            share_encoder=name == "L",
        )
        classifier = DigitsCNN(num_classes=3, widths=(4, 4, 6, 8))
        paths[name] = train_casm(
            config, out / name, classifier=classifier, dataset=data, progress=False
        ).mapper
    return paths


def test_casm_explains_in_one_pass_and_ignores_the_target(trained):
    explainer = CASM.from_checkpoint(trained["L"])
    x = torch.randn(3, 1, 16, 16)
    maps = explainer(x)
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32
    assert torch.equal(maps, explainer(x, target=2))
    raw, logits, _ = explainer.with_prediction(x, normalize=False)
    torch.testing.assert_close(logits, explainer.model(x))
    assert torch.equal(explainer(x, normalize=False), raw)
    calls = []
    explainer.model.stem.register_forward_hook(lambda *_: calls.append(1))
    explainer(x)
    assert len(calls) == 1
    assert explainer.settings()["thinning"] == "L"


def test_baseline_needs_a_thinning_f_checkpoint(trained):
    baseline = Baseline.from_checkpoint(trained["F"])
    assert baseline(torch.randn(1, 1, 16, 16)).shape == (1, 16, 16)
    assert baseline.mapper.encoder is not None  # trained with a separate encoder
    with pytest.raises(SalmapError, match="thinning L"):
        Baseline.from_checkpoint(trained["L"])


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_decoder_equals_concatenate_then_convolve(upsample):
    torch.manual_seed(0)
    decoder = Decoder(stem_channels=5, stage_channels=[6, 7, 8], width=4, upsample=upsample)
    for module in decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    decoder.eval()
    stem = torch.randn(2, 5, 20, 24, requires_grad=True)
    stages = [torch.randn(2, c, s, s + 1) for c, s in ((6, 10), (7, 5), (8, 3))]
    fast = decoder(stem, stages, (40, 48))
    parts = [stem] + [
        torch.nn.functional.interpolate(lateral(f), size=(20, 24), mode="bilinear", align_corners=False)
        for lateral, f in zip(decoder.lateral, stages, strict=True)
    ]
    plain = torch.nn.functional.interpolate(
        torch.sigmoid(decoder.out(torch.cat(parts, dim=1))), size=(40, 48), mode=upsample
    ).squeeze(1)
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-5)
    (fast_grad,) = torch.autograd.grad(fast.square().sum(), decoder.out.weight)
    (plain_grad,) = torch.autograd.grad(plain.square().sum(), decoder.out.weight)
    torch.testing.assert_close(fast_grad, plain_grad, atol=1e-5, rtol=1e-4)


def test_resnet_decoder_reads_the_max_pool_grid_as_the_authors_code():
    """The authors' decoder (kondiz/casme archs.py) takes the ResNet's max-pool output (1/4 of
    the input) and layer1..layer4, and enlarges the sigmoid by nearest neighbour x4; the
    pre-pool stem (1/2 of the input) is the `conv` option."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    pooled = adapt(model)
    features = pooled(x, features=True)
    assert features.stem.shape[-2:] == (16, 16)
    assert [s.shape[-1] for s in features.stages] == [16, 8, 4, 2]
    expected_stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    torch.testing.assert_close(features.stem, expected_stem)
    mask = build_mapper(pooled, width=4)(x, features)[0]
    blocks = mask.view(16, 4, 16, 4)
    assert torch.equal(blocks, blocks[:, :1, :, :1].expand_as(blocks))  # one value per 4x4 block
    assert adapt(model, "conv")(x, features=True).stem.shape[-2:] == (32, 32)
    with pytest.raises(SalmapError, match="decoder stem"):
        adapt(model, "middle")
