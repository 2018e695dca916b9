import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from salmap.errors import SalmapError
from salmap.figures import plot_sanity
from salmap.metrics import cascading_randomization, default_blocks, spearman, ssim


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()


def gradient_explainer(model):
    """max over channels of |d logit_c / d x|: Simonyan's gradient map."""

    def explain(x, target=None, normalize=True):
        x = x.clone().requires_grad_(True)
        logits = model(x)
        classes = logits.argmax(1) if target is None else torch.as_tensor(target).expand(len(x))
        (grad,) = torch.autograd.grad(logits.gather(1, classes.view(-1, 1)).sum(), x)
        maps = grad.abs().amax(dim=1)
        if normalize:
            maps = maps / maps.flatten(1).amax(1).view(-1, 1, 1)
        return maps

    return explain


def test_gradient_maps_decorrelate_after_randomisation(tmp_path):
    model = tiny_cnn()
    before = [p.clone() for p in model.parameters()]
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = cascading_randomization(model, gradient_explainer, images)
    assert result.steps == ["original", "6", "2", "0"]
    assert result.spearman.shape == (4, 4)
    assert torch.allclose(result.spearman[:, 0], torch.ones(4))
    assert torch.allclose(result.ssim[:, 0], torch.ones(4))
    final = result.spearman_abs[:, -1].mean()
    assert final < 0.5 and final < result.spearman_abs[:, 1].mean()
    assert result.ssim[:, -1].mean() < 0.9
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    again = cascading_randomization(model, gradient_explainer, images)
    assert torch.equal(again.spearman, result.spearman)  # seeded
    assert plot_sanity({"gradient": result}, tmp_path / "sanity.png").exists()


def test_blocks_are_checked():
    model = tiny_cnn()
    assert default_blocks(model) == ["6", "2", "0"]
    with pytest.raises(SalmapError):
        cascading_randomization(model, gradient_explainer, torch.randn(1, 3, 8, 8), blocks=["9"])


def test_spearman_and_ssim_match_scipy_and_skimage():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 16, 20, generator=generator)
    b = (a + 0.3 * torch.rand(3, 16, 20, generator=generator)).clamp(0, 1)
    b[0, :4] = 0.5  # ties
    ours = spearman(a.flatten(1), b.flatten(1))
    ours_ssim = ssim(a, b)
    for i in range(3):
        expected = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(expected, abs=1e-6)
        reference = structural_similarity(
            a[i].double().numpy(),
            b[i].double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert ours_ssim[i].item() == pytest.approx(float(np.float64(reference)), abs=1e-5)
