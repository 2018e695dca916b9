"""Each method against a case whose answer is known."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyGapNet
from torch import nn

from salmap import (
    CAM,
    CAMERAS,
    RISE,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    Gradient,
    GuidedBackprop,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    SalmapError,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
)
from salmap.explainers.guided_backprop import GuidedRectifiers
from salmap.layers import layer_activations_and_gradients


def all_methods(model: nn.Module) -> dict[str, object]:
    return {
        "gradient": Gradient(model),
        "guided_backprop": GuidedBackprop(model),
        "smoothgrad": SmoothGrad(Gradient(model), n=6, batch_size=8, seed=3),
        "cam": CAM(model),
        "gradcam": GradCAM(model),
        "cameras": CAMERAS(model, steps=3, step_size=8),
        "integrated_gradients": IntegratedGradients(model, steps=8, batch_size=8),
        "occlusion": Occlusion(model, window=5, stride=3, batch_size=16),
        "rise": RISE(model, n=40, batch_size=32),
        "gradcam_plus_plus": GradCAMPlusPlus(model),
        "hirescam": HiResCAM(model),
        "xgradcam": XGradCAM(model),
        "layercam": LayerCAM(model, fuse=[next(m for m in model.modules() if isinstance(m, nn.Conv2d))]),
        "scorecam": ScoreCAM(model, batch_size=16),
        "eigencam": EigenCAM(model),
    }


METHODS = [
    "gradient",
    "guided_backprop",
    "smoothgrad",
    "cam",
    "gradcam",
    "cameras",
    "integrated_gradients",
    "occlusion",
    "rise",
    "gradcam_plus_plus",
    "hirescam",
    "xgradcam",
    "layercam",
    "scorecam",
    "eigencam",
]
# every method that reads no GAP + linear structure (CAM does)
ANY_MODEL = [method for method in METHODS if method != "cam"]


def test_gradient_of_linear_model_is_abs_weight_max_over_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 6, 4)).eval()
    x = torch.randn(2, 3, 5, 6)
    maps = Gradient(model)(x, target=torch.tensor([1, 3]), normalize=False)
    weights = model[1].weight.view(4, 3, 5, 6)
    expected = torch.stack([weights[1].abs().amax(0), weights[3].abs().amax(0)])
    torch.testing.assert_close(maps, expected)


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_one_by_one(method: str, tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    explainer = all_methods(tiny_net)[method]
    batch = explainer(images, normalize=False)
    assert batch.shape == (4, 16, 16) and batch.dtype == torch.float32
    if method == "smoothgrad":
        # the noise differs with the batch layout, so fix it: noise 0 makes every copy the image
        explainer.noise_level = 0.0
        batch = explainer(images, normalize=False)
    single = torch.cat([explainer(images[i : i + 1], normalize=False) for i in range(4)])
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_maps_are_normalised_per_image(method: str, tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    maps = all_methods(tiny_net)[method](images, target=2)
    assert maps.shape == (4, 16, 16)
    flat = maps.flatten(1)
    assert torch.all(flat.min(1).values == 0) and torch.allclose(flat.max(1).values, torch.ones(4))


@pytest.mark.parametrize("base", [Gradient, GuidedBackprop, GradCAM])
def test_smoothgrad_with_zero_noise_equals_its_base(base: type, tiny_net: TinyGapNet, images) -> None:
    smooth = SmoothGrad(base(tiny_net), n=5, noise_level=0.0, batch_size=3)
    torch.testing.assert_close(smooth(images, normalize=False), base(tiny_net)(images, normalize=False))


def test_smoothgrad_fixes_the_class_on_the_clean_image(tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    top1 = tiny_net(images).argmax(1)
    smooth = SmoothGrad(Gradient(tiny_net), n=4, noise_level=0.5, seed=0)
    torch.testing.assert_close(smooth(images), smooth(images, target=top1))
    assert not torch.allclose(smooth(images), Gradient(tiny_net)(images))


def test_cam_equals_gradcam_up_to_scale_on_gap_linear(tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    # stride 1 keeps the features at the input size, so no upsampling sits between the ReLU and
    # the comparison (Grad-CAM applies its ReLU before upsampling, CAM has none)
    tiny_net.conv2.stride = (1, 1)
    targets = torch.tensor([0, 1, 2, 3])
    cam_raw = CAM(tiny_net)(images, targets, normalize=False)
    gradcam_raw = GradCAM(tiny_net)(images, targets, normalize=False)
    assert bool((cam_raw < 0).any()), "the identity holds where CAM is positive; test both signs"
    h, w = 16, 16  # dy_c/dA_k(i, j) = w_k^c / (h w) for GAP + linear
    torch.testing.assert_close(gradcam_raw * (h * w), F.relu(cam_raw), rtol=1e-4, atol=1e-5)


def test_cam_on_a_layer_that_is_not_pooled_fails_clearly(tiny_net, images) -> None:
    with pytest.raises(SalmapError, match="global average pooling"):
        CAM(tiny_net, layer="conv1")(images)


def test_cam_refuses_a_model_without_gap_and_linear(images: torch.Tensor) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 5)).eval()
    with pytest.raises(SalmapError, match="global average pooling"):
        CAM(model)(images)


def test_cameras_with_one_size_is_activation_times_gradient(tiny_net: TinyGapNet, images) -> None:
    captured = {}

    def keep(_m, _i, output):
        output.retain_grad()
        captured["a"] = output

    handle = tiny_net.relu2.register_forward_hook(keep)
    x = images.clone().requires_grad_(True)
    logits = tiny_net(x)
    logits[:, 3].sum().backward()
    handle.remove()
    a, g = captured["a"].detach(), captured["a"].grad
    up = lambda t: F.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False)  # noqa: E731
    expected = F.relu((up(a) * up(g)).sum(1))
    got = CAMERAS(tiny_net, layer="relu2", sizes=[16])(images, target=3, normalize=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("channel_chunk", [None, 3])
def test_cameras_equals_the_mean_of_upsampled_activations_times_gradients(channel_chunk, tiny_net, images):
    sizes = [(16, 16), (24, 24), (40, 40)]
    sum_a, sum_g = 0, 0
    for s in sizes:
        a, g, _ = layer_activations_and_gradients(
            tiny_net, tiny_net.relu2, F.interpolate(images, size=s, mode="bilinear"), lambda out: out[:, 3]
        )
        sum_a = sum_a + F.interpolate(a, size=(16, 16), mode="bilinear")
        sum_g = sum_g + F.interpolate(g, size=(16, 16), mode="bilinear")
    expected = F.relu((sum_a / 3 * sum_g / 3).sum(1))
    explainer = CAMERAS(tiny_net, layer="relu2", sizes=[16, 24, 40], channel_chunk=channel_chunk)
    torch.testing.assert_close(explainer(images, target=3, normalize=False), expected, rtol=1e-4, atol=1e-6)


class ScaleSensitiveNet(nn.Module):
    """Class 0 scores the image's high-frequency energy (a Laplacian), class 1 a constant: noisy
    images are class 0 at their own size and become class 1 once upsampled (smoother)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0] = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]])
            self.conv.bias.copy_(torch.tensor([0.0, 1.0]))
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_cameras_keeps_only_sizes_with_the_same_top1() -> None:
    model = ScaleSensitiveNet().eval()
    torch.manual_seed(1)
    images = torch.randn(4, 3, 16, 16) * torch.tensor([0.1, 0.2, 0.3, 0.5]).view(4, 1, 1, 1)
    explainer = CAMERAS(model, layer="relu", steps=4, step_size=16)
    sizes = explainer.input_sizes(16, 16)
    assert sizes == [(16, 16), (32, 32), (48, 48), (64, 64)]
    top1 = model(images).argmax(1)
    maps = explainer(images, normalize=False)
    dropped = 0
    for i in range(len(images)):
        kept = [
            s[0]
            for s in sizes
            if model(F.interpolate(images[i : i + 1], size=s, mode="bilinear")).argmax(1) == top1[i]
        ]
        dropped += len(sizes) - len(kept)
        expected = CAMERAS(model, layer="relu", sizes=kept)(images[i : i + 1], int(top1[i]), normalize=False)
        torch.testing.assert_close(maps[i], expected[0], rtol=1e-4, atol=1e-6)
    assert dropped == 3, "the noisiest image is class 0 only at its own size"
    assert not torch.allclose(maps, explainer(images, target=top1, normalize=False))


@pytest.mark.parametrize(
    "rectifier",
    [
        nn.ReLU(),
        nn.ReLU(inplace=True),
        F.relu,
        torch.relu,
        torch.Tensor.relu,
        lambda t: F.relu(t, inplace=True),
    ],
)
def test_guided_relu_passes_only_positive_gradient_at_positive_input(rectifier) -> None:
    torch.manual_seed(0)
    x = torch.randn(200, requires_grad=True)
    upstream = torch.randn(200)
    with GuidedRectifiers():
        y = rectifier(x * 1.0)
    (grad,) = torch.autograd.grad(y, x, upstream)
    expected = upstream * ((x > 0) & (upstream > 0))
    torch.testing.assert_close(grad, expected)
    assert bool((grad >= 0).all())


def test_guided_relu6_is_guided_inside_its_range() -> None:
    x = torch.tensor([-1.0, 0.5, 3.0, 7.0], requires_grad=True)
    with GuidedRectifiers():
        y = nn.ReLU6()(x * 1.0)
    (grad,) = torch.autograd.grad(y, x, torch.tensor([1.0, -1.0, 2.0, 1.0]))
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 2.0, 0.0]))


def test_guided_backprop_differs_from_gradient_and_mode_is_left(tiny_net, images) -> None:
    guided = GuidedBackprop(tiny_net)(images, normalize=False)
    plain = Gradient(tiny_net)(images, normalize=False)
    assert not torch.allclose(guided, plain)
    torch.testing.assert_close(Gradient(tiny_net)(images, normalize=False), plain)


class RectifierNet(nn.Module):
    """Two conv layers whose rectifiers are modules, functions, or one of each."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)
        self.relu = nn.ReLU(inplace=True)
        self.relu6 = nn.ReLU6()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        h = self.relu(h) if self.first == "module" else F.relu(h)
        h = self.conv2(h) * 4
        h = self.relu6(h) if self.second == "module" else F.relu6(h)
        return self.fc(h.mean((2, 3)))


@pytest.mark.parametrize(("first", "second"), [("module", "module"), ("module", "function")])
def test_guided_backprop_by_module_hooks_equals_the_function_mode(first, second, images) -> None:
    functional = RectifierNet("function", "function").eval()
    expected = GuidedBackprop(functional)(images, normalize=False)
    explainer = GuidedBackprop(RectifierNet(first, second).eval())
    torch.testing.assert_close(explainer(images, normalize=False), expected)
    assert explainer.functional_rectifiers == (second == "function")
    assert not torch.allclose(Gradient(functional)(images, normalize=False), expected)


class FrozenWrapper(nn.Module):
    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x: torch.Tensor):
        logits = self.net(x)
        if self.kind == "tuple":
            return logits, x.mean()
        if self.kind == "dict":
            return {"features": x.mean(), "logits": logits}

        class Output:
            pass

        output = Output()
        output.logits = logits
        return output


@pytest.mark.parametrize("kind", ["tuple", "dict", "object"])
@pytest.mark.parametrize("method", METHODS)
def test_models_returning_tuple_dict_or_object(kind: str, method: str, tiny_net, images) -> None:
    wrapped = FrozenWrapper(tiny_net, kind).eval()
    expected = all_methods(tiny_net)[method](images)
    torch.testing.assert_close(all_methods(wrapped)[method](images), expected)


@pytest.mark.parametrize("method", ANY_MODEL)
def test_frozen_weights_and_no_grad_or_inference_mode_callers(method: str, tiny_net, images) -> None:
    expected = all_methods(tiny_net)[method](images)
    for parameter in tiny_net.parameters():
        parameter.requires_grad_(False)
    explainer = all_methods(tiny_net)[method]
    with torch.no_grad():
        torch.testing.assert_close(explainer(images), expected)
    with torch.inference_mode():
        inference_images = images.clone()
        torch.testing.assert_close(explainer(inference_images), expected)
    assert all(p.grad is None for p in tiny_net.parameters())


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_hooks_are_removed_after_calls_and_errors(tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    with GradCAM(tiny_net) as explainer:
        explainer(images[:1])
        assert _hook_count(tiny_net) == 0
    methods = all_methods(tiny_net)
    for explainer in methods.values():
        explainer(images[:1])
        with pytest.raises(SalmapError, match="out of range"):
            explainer(images[:1], target=99)
    assert _hook_count(tiny_net) == 0
    assert torch.is_grad_enabled()


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.distributed's deprecated names warn on isinstance
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_a_thousand_calls_leak_nothing(tiny_net: TinyGapNet) -> None:
    x = torch.randn(1, 3, 8, 8)
    explainer = GradCAM(tiny_net)
    explainer(x)
    before = _live_tensors()
    for _ in range(1000):
        explainer(x)
    after = _live_tensors()
    assert after <= before
    assert _hook_count(tiny_net) == 0


def test_bad_targets_and_inputs_are_refused(tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    explainer = Gradient(tiny_net)
    with pytest.raises(SalmapError, match="out of range"):
        explainer(images, target=5)
    with pytest.raises(SalmapError, match="targets for a batch"):
        explainer(images, target=[0, 1])
    with pytest.raises(SalmapError, match=r"\(B, C, H, W\)"):
        explainer(images[0])
    with pytest.raises(SalmapError, match="float"):
        explainer(images.to(torch.uint8))
    with pytest.raises(SalmapError, match="eval mode"):
        Gradient(TinyGapNet().train())(images)
    with pytest.raises(SalmapError, match="no layer named"):
        GradCAM(tiny_net, layer="nope")(images)


def test_per_image_targets_match_single_targets(tiny_net: TinyGapNet, images: torch.Tensor) -> None:
    explainer = GradCAM(tiny_net)
    maps = explainer(images, target=[0, 1, 2, 3])
    for i in range(4):
        torch.testing.assert_close(maps[i], explainer(images[i : i + 1], target=i)[0])


@pytest.mark.parametrize("n", [10, 50, 200])
def test_smoothgrad_memory_is_bounded_by_the_chunk_not_by_n(n: int, tiny_net, images) -> None:
    seen: list[int] = []

    class Recording(Gradient):
        def explain(self, x, target):
            seen.append(x.shape[0])
            return super().explain(x, target)

    SmoothGrad(Recording(tiny_net), n=n, batch_size=8)(images)
    assert sum(seen) == n * len(images)
    assert max(seen) <= 8  # the largest batch the model ever sees, whatever n is


def test_cam_maps_are_ordinary_tensors(tiny_net, images) -> None:
    raw = CAM(tiny_net)(images, normalize=False)
    assert not raw.is_inference() and not raw.requires_grad
    raw.div_(2)


@pytest.mark.parametrize("method", METHODS)
def test_with_prediction_gives_the_maps_and_the_logits_of_the_methods_own_forward(method, tiny_net, images):
    explainer = all_methods(tiny_net)[method]
    expected_logits = tiny_net(images)
    explainer(images[:1])  # first calls may probe the model (layer or rectifier lookup)
    calls = []
    handle = tiny_net.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    try:
        maps, logits, _ = explainer.with_prediction(images)
        calls_with_prediction = len(calls)
        calls.clear()
        torch.testing.assert_close(maps, explainer(images))
    finally:
        handle.remove()
    torch.testing.assert_close(logits, expected_logits)
    assert calls_with_prediction == len(calls), "knowing the prediction cost an extra forward pass"
