"""Integrated Gradients against answers known in closed form."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyGapNet
from torch import nn

from salmap import IntegratedGradients, SalmapError, make_explainer
from salmap.cli import build_parser
from salmap.cli.common import method_settings
from salmap.explainers.integrated_gradients import gaussian_blur, path_points
from salmap.targets import Target

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 5, 4)).eval()


@pytest.mark.parametrize("rule", ["riemann", "gausslegendre"])
def test_integrated_gradients_of_a_linear_model_from_zero_is_input_times_weight(rule: str) -> None:
    model = linear_model()
    x = torch.randn(2, 3, 6, 5)
    targets = torch.tensor([1, 3])
    explainer = IntegratedGradients(model, steps=7, rule=rule)
    attributions = explainer.attributions(x, Target(targets, 2))
    weights = model[1].weight.view(4, 3, 6, 5)[targets]
    torch.testing.assert_close(attributions, x * weights)
    signed = IntegratedGradients(model, steps=7, rule=rule, polarity="signed")(x, targets, normalize=False)
    torch.testing.assert_close(signed, (x * weights).sum(dim=1))
    assert float(explainer.completeness.max()) < 1e-4


@pytest.mark.parametrize("rule", ["riemann", "gausslegendre"])
def test_completeness_within_one_percent_at_200_steps(rule: str, tiny_net: TinyGapNet, images) -> None:
    explainer = IntegratedGradients(tiny_net, steps=200, rule=rule, batch_size=64)
    attributions = explainer.attributions(images, Target(None, 4))
    logits = tiny_net(images)
    top1 = logits.argmax(dim=1)
    difference = (
        logits.gather(1, top1[:, None])[:, 0] - tiny_net(torch.zeros_like(images))[:, top1].diagonal()
    )
    relative = (attributions.flatten(1).sum(dim=1) - difference).abs() / difference.abs()
    assert float(relative.max()) < 0.01
    torch.testing.assert_close(explainer.completeness, relative.detach(), rtol=1e-3, atol=1e-6)
    assert explainer.settings()["completeness_error"] == pytest.approx(float(relative.max()), rel=1e-3)


def test_gauss_legendre_is_closer_than_riemann_at_few_steps(tiny_net: TinyGapNet, images) -> None:
    errors = {}
    for rule in ("riemann", "gausslegendre"):
        explainer = IntegratedGradients(tiny_net, steps=8, rule=rule)
        explainer(images)
        errors[rule] = float(explainer.completeness.mean())
    assert errors["gausslegendre"] < errors["riemann"]


def test_path_points_integrate_polynomials() -> None:
    for rule, steps in (("riemann", 1000), ("gausslegendre", 4)):
        alphas, weights = path_points(steps, rule)
        assert float(alphas.max()) <= 1 and float(alphas.min()) > 0
        # integral_0^1 t^3 dt = 1/4: Gauss-Legendre with 4 nodes is exact up to degree 7
        assert float((weights * alphas**3).sum()) == pytest.approx(
            0.25, abs=1e-3 if rule == "riemann" else 1e-12
        )
    alphas, weights = path_points(4, "riemann")
    assert alphas.tolist() == [0.25, 0.5, 0.75, 1.0] and weights.tolist() == [0.25] * 4


def test_baselines(tiny_net: TinyGapNet, images) -> None:
    black = IntegratedGradients(tiny_net, baseline="black", normalization=((0.5, 0.4, 0.3), (0.25, 0.2, 0.1)))
    expected = torch.tensor([-2.0, -2.0, -3.0]).view(1, 3, 1, 1).expand_as(images)
    torch.testing.assert_close(black.baseline_for(images), expected)
    blurred = IntegratedGradients(tiny_net, baseline="blur", blur_sigma=2.0).baseline_for(images)
    assert blurred.shape == images.shape
    assert float(blurred.std()) < float(images.std())
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.05, rtol=0)
    constant = torch.full((1, 3, 16, 16), 0.7)
    torch.testing.assert_close(gaussian_blur(constant, 3.0), constant)
    given = torch.full((3, 1, 1), 0.5)
    torch.testing.assert_close(
        IntegratedGradients(tiny_net, baseline=given).baseline_for(images), given.expand_as(images)
    )
    with pytest.raises(SalmapError, match="normalisation"):
        IntegratedGradients(tiny_net, baseline="black")
    with pytest.raises(SalmapError, match="unknown baseline"):
        IntegratedGradients(tiny_net, baseline="white")
    with pytest.raises(SalmapError, match="does not fit"):
        IntegratedGradients(tiny_net, baseline=torch.zeros(2, 5, 5))(images)


def test_the_command_line_passes_the_models_normalisation(tiny_net: TinyGapNet) -> None:
    args = build_parser().parse_args(["explain", "x.png", "--integrated-gradients-baseline", "black"])
    settings = method_settings(args)["integrated_gradients"]
    explainer = make_explainer("integrated_gradients", tiny_net, normalization=((0.5,), (0.5,)), **settings)
    torch.testing.assert_close(
        explainer.baseline_for(torch.zeros(1, 1, 2, 2)), torch.full((1, 1, 2, 2), -1.0)
    )
    # methods that do not read the normalisation are built as before
    assert make_explainer("gradient", tiny_net, normalization=((0.5,), (0.5,))).name == "gradient"


def test_chunks_bound_the_batch_and_leave_the_result_unchanged(tiny_net: TinyGapNet, images) -> None:
    seen: list[int] = []
    handle = tiny_net.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
    try:
        small = IntegratedGradients(tiny_net, steps=10, batch_size=8)(images, normalize=False)
    finally:
        handle.remove()
    assert max(seen) <= 8
    assert sum(seen) == 10 * 4 + 2 * 4  # the path, then the image and the baseline once each
    large = IntegratedGradients(tiny_net, steps=10, batch_size=40)(images, normalize=False)
    torch.testing.assert_close(small, large)


def test_polarities(tiny_net: TinyGapNet, images) -> None:
    kinds = {
        polarity: IntegratedGradients(tiny_net, steps=6, polarity=polarity)(images, normalize=False)
        for polarity in ("positive", "absolute", "signed")
    }
    assert bool((kinds["signed"] < 0).any())
    assert bool((kinds["positive"] >= 0).all()) and bool((kinds["absolute"] >= kinds["positive"]).all())
    assert bool((kinds["absolute"] >= kinds["signed"].abs() - 1e-7).all())
    with pytest.raises(SalmapError, match="polarity"):
        IntegratedGradients(tiny_net, polarity="negative")


def test_a_score_function_target(tiny_net: TinyGapNet, images) -> None:
    explainer = IntegratedGradients(tiny_net, steps=5, batch_size=64)
    by_function = explainer(images, target=lambda out: out[:, 2], normalize=False)
    torch.testing.assert_close(by_function, explainer(images, target=2, normalize=False))
