"""Targets beyond one class index (class sets, score functions) and model outputs that are not
plain logits, checked against hand-computed gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyGapNet
from torch import nn

from salmap import CAM, CAMERAS, GradCAM, Gradient, GuidedBackprop, SalmapError, SmoothGrad, Target
from salmap.explainers.gradient import input_gradient
from salmap.layers import layer_activations_and_gradients
from salmap.targets import target_indices

SETS = [[0, 2], [1], [3, 4], [0, 1, 2]]


def per_class_sum(values) -> torch.Tensor:
    """The sum over each image's class set of a per-class quantity `values(c) -> (B, ...)`."""
    rows = [sum(values(c)[i] for c in chosen) for i, chosen in enumerate(SETS)]
    return torch.stack(rows)


def test_a_class_set_explains_the_sum_of_its_scores_in_cam(tiny_net: TinyGapNet, images) -> None:
    explainer = CAM(tiny_net)
    ours = explainer(images, SETS, normalize=False)
    expected = per_class_sum(lambda c: explainer(images, c, normalize=False))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    for i, chosen in enumerate(SETS):
        mask[i, chosen] = True
    torch.testing.assert_close(explainer(images, mask, normalize=False), ours)


def test_a_class_set_is_the_gradient_of_the_summed_scores(tiny_net: TinyGapNet, images) -> None:
    explainer = Gradient(tiny_net)
    signed = input_gradient(tiny_net, images, explainer.score(Target(SETS, 4)))
    expected = per_class_sum(lambda c: input_gradient(tiny_net, images, explainer.score(Target(c, 4))))
    torch.testing.assert_close(signed, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(explainer(images, SETS, normalize=False), expected.abs().amax(dim=1))


def test_a_class_set_in_gradcam_sums_the_layer_gradients(tiny_net: TinyGapNet, images) -> None:
    explainer = GradCAM(tiny_net, layer="conv2")
    module = tiny_net.conv2

    def layer_gradient(target) -> tuple[torch.Tensor, torch.Tensor]:
        a, g, _ = layer_activations_and_gradients(
            tiny_net, module, images, explainer.score(Target(target, 4))
        )
        return a, g

    activations, gradients = layer_gradient(SETS)
    torch.testing.assert_close(gradients, per_class_sum(lambda c: layer_gradient(c)[1]), rtol=1e-5, atol=1e-7)
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    expected = F.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(explainer(images, SETS, normalize=False), expected)


class Embedder(nn.Module):
    """TinyGapNet without its classifier: a 12-d embedding per image."""

    def __init__(self, net: TinyGapNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.net.conv1(x))
        x = self.net.relu2(self.net.conv2(x))
        return self.net.pool(x).flatten(1)


@pytest.fixture
def similarity(tiny_net: TinyGapNet, images):
    """An embedding model and the cosine similarity of each image's embedding to a reference."""
    embedder = Embedder(tiny_net).eval()
    with torch.no_grad():
        reference = embedder(images[3:4])[0]
    return embedder, lambda output: F.cosine_similarity(output, reference[None], dim=1)


def test_a_cosine_similarity_target_is_its_gradient(similarity, images) -> None:
    embedder, score = similarity
    x = images.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(score(embedder(x)).sum(), x)
    ours = Gradient(embedder)(images, score, normalize=False)
    torch.testing.assert_close(ours, expected.abs().amax(dim=1))


def test_a_cosine_similarity_target_in_gradcam_equals_the_hand_computed_map(similarity, images) -> None:
    embedder, score = similarity
    kept: list[torch.Tensor] = []
    handle = embedder.net.conv1.register_forward_hook(lambda _m, _i, output: kept.append(output))
    try:
        similarities = score(embedder(images))
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(similarities.sum(), kept[0])
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * kept[0]).sum(dim=1, keepdim=True))
    expected = F.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)[:, 0].detach()
    torch.testing.assert_close(GradCAM(embedder, layer="net.conv1")(images, score, normalize=False), expected)


def test_score_functions_run_through_every_gradient_and_layer_method(similarity, images) -> None:
    embedder, score = similarity
    explainers = [
        SmoothGrad(Gradient(embedder), n=3),
        GuidedBackprop(embedder),
        CAMERAS(embedder, steps=2),
        GradCAM(embedder),
    ]
    for explainer in explainers:
        maps = explainer(images, score)
        assert maps.shape == (4, 16, 16) and bool((maps.flatten(1).std(dim=1) > 0).all())
    with pytest.raises(SalmapError, match="score function"):
        CAM(embedder)(images, score)


def test_a_score_function_must_give_one_score_per_image(similarity, images) -> None:
    embedder, _ = similarity
    with pytest.raises(SalmapError, match=r"one score per image, shape \(4,\), got \(4, 12\)"):
        Gradient(embedder)(images, lambda output: output)


class TwoHeads(nn.Module):
    """A model that returns a dict with an embedding and class scores, and no `logits`."""

    def __init__(self, net: TinyGapNet) -> None:
        super().__init__()
        self.embedder = Embedder(net)
        self.fc = net.fc

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.embedder(x)
        return {"embedding": embedding, "scores": self.fc(embedding)}


def test_an_ambiguous_dict_is_refused_with_its_keys(tiny_net: TinyGapNet, images) -> None:
    model = TwoHeads(tiny_net).eval()
    for explainer in (Gradient(model), GradCAM(model), CAM(model)):
        with pytest.raises(SalmapError, match=r"'embedding', key 'scores' and no 'logits'.*output_key="):
            explainer(images)
    with pytest.raises(SalmapError, match="output_key="):
        Gradient(model).prepare(images)


@pytest.mark.parametrize("method", [Gradient, GradCAM, CAM])
def test_output_key_chooses_the_scores_and_is_shown(method, tiny_net: TinyGapNet, images) -> None:
    explainer = method(TwoHeads(tiny_net).eval(), output_key="scores")
    torch.testing.assert_close(explainer(images), method(tiny_net)(images))
    assert explainer.choices()["output"] == "field 'scores' (given)"
    _, logits, _ = explainer.with_prediction(images)
    torch.testing.assert_close(logits, tiny_net(images))
    with pytest.raises(SalmapError, match="no tensor field 'logit'"):
        method(TwoHeads(tiny_net).eval(), output_key="logit")(images)


def test_a_score_function_needs_no_logits_and_the_prediction_says_so(tiny_net: TinyGapNet, images) -> None:
    model = TwoHeads(tiny_net).eval()
    with torch.no_grad():
        reference = model(images[:1])["embedding"][0]

    def score(output: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cosine_similarity(output["embedding"], reference[None], dim=1)

    maps, logits, target = Gradient(model).with_prediction(images, score)
    assert logits is None and target.kind == "score" and target.describe(0) is None
    torch.testing.assert_close(
        maps, Gradient(Embedder(tiny_net).eval())(images, lambda e: score({"embedding": e}))
    )


def test_a_logits_field_is_read_and_the_choice_is_shown(tiny_net: TinyGapNet, images) -> None:
    class WithLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = TwoHeads(tiny_net)

        def forward(self, x):
            output = self.heads(x)
            return {"embedding": output["embedding"], "logits": output["scores"]}

    explainer = GradCAM(WithLogits().eval())
    torch.testing.assert_close(explainer(images), GradCAM(tiny_net)(images))
    assert explainer.choices()["output"] == "key 'logits'"


@pytest.mark.parametrize(
    "target",
    [
        2.0,
        [1.0, 2.0, 0.0, 3.0],
        torch.tensor([0.5, 1.0, 2.0, 3.0]),
        torch.rand(4, 5),
        True,
        [1, [2, 3], 0, 4],
        [[1], ["cat"], [0], [4]],
    ],
)
def test_targets_that_are_not_class_indices_are_refused(target, tiny_net: TinyGapNet, images) -> None:
    with pytest.raises(SalmapError, match="class"):
        Gradient(tiny_net)(images, target)


def test_class_sets_are_checked_against_the_batch_and_the_classes(tiny_net: TinyGapNet, images) -> None:
    explainer = Gradient(tiny_net)
    with pytest.raises(SalmapError, match="got 2 targets for a batch of 4"):
        explainer(images, [[0], [1]])
    with pytest.raises(SalmapError, match="at least one class"):
        explainer(images, [[0], [], [1], [2]])
    with pytest.raises(SalmapError, match="out of range"):
        explainer(images, [[0], [9], [1], [2]])
    with pytest.raises(SalmapError, match="not class sets"):
        target_indices(SETS, tiny_net(images))
