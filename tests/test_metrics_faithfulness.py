import numpy as np
import pytest
import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.metrics import deletion, gaussian_blur, insertion
from salmap.metrics.faithfulness import rise_kernel


def evidence_model() -> nn.Module:
    """Class 0's logit is the sum of the top two rows of an 8x8 image (16 pixels); class 1's is 0."""
    linear = nn.Linear(64, 2, bias=False)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0, :16] = 0.5
    return nn.Sequential(nn.Flatten(), linear).eval()


def maps_and_image():
    region = torch.zeros(8, 8)
    region[:2] = 1.0
    noise = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    perfect = (0.5 * region + noise).clamp(0, 1)
    inverted = 1 - perfect
    random = torch.rand(8, 8, generator=torch.Generator().manual_seed(1))
    image = (region + 0.1).view(1, 1, 8, 8)
    return torch.stack([perfect, random, inverted]), image.expand(3, 1, 8, 8)


def test_deletion_ranks_a_perfect_map_first():
    maps, images = maps_and_image()
    result = deletion(evidence_model(), images, maps, target=0, steps=8, batch_size=5)
    perfect, random, inverted = result.auc.tolist()
    assert perfect < random < inverted
    # the top rows go first, 8 pixels a step: logit 8.8, 4.4, then 0 (p = 0.5) to the end
    curve = [torch.sigmoid(torch.tensor(8.8)).item(), torch.sigmoid(torch.tensor(4.4)).item()]
    curve += [0.5] * 7
    assert result.curve[0].tolist() == pytest.approx(curve, abs=1e-5)
    assert perfect == pytest.approx((sum(curve) - (curve[0] + curve[-1]) / 2) / 8, abs=1e-5)
    assert result.curve.shape == (3, 9)
    assert result.fractions.tolist() == pytest.approx([k / 8 for k in range(9)])
    assert result.curve[:, -1].tolist() == pytest.approx([0.5] * 3)  # everything deleted


def test_insertion_ranks_a_perfect_map_first():
    maps, images = maps_and_image()
    result = insertion(evidence_model(), images, maps, target=0, steps=8)
    perfect, random, inverted = result.auc.tolist()
    assert perfect > random > inverted
    assert inverted >= 0 and perfect <= 1


def test_chunking_does_not_change_the_curves():
    maps, images = maps_and_image()
    model = evidence_model()
    one = deletion(model, images, maps, steps=16, batch_size=1)
    many = deletion(model, images, maps, steps=16, batch_size=100)
    assert torch.allclose(one.curve, many.curve, atol=1e-6)
    assert deletion(model, images, maps).curve.shape == (3, 9)  # default: H steps


def gkern_from_its_description(size: int, sigma: float) -> np.ndarray:
    """RISE's kernel written out: scipy's 1-D Gaussian (weights exp(-j^2 / 2 sigma^2), |j| up to
    int(4 sigma + 0.5), normalised) run along each axis over a delta, the signal extended by
    reflection (d c b a | a b c d | d c b a); the 2-D result is the outer product."""
    radius = int(4 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    weights /= weights.sum()

    def reflect(index: int) -> int:
        index %= 2 * size
        return index if index < size else 2 * size - 1 - index

    line = np.zeros(size)
    for i in range(size):
        line[i] = sum(w for j, w in zip(offsets, weights, strict=True) if reflect(i + j) == size // 2)
    return np.outer(line, line)


@pytest.mark.parametrize(("size", "sigma"), [(11, 5.0), (5, 1.0), (7, 2.5)])
def test_rise_kernel_is_gkern(size, sigma):
    kernel = rise_kernel(size, sigma).numpy()
    np.testing.assert_allclose(kernel, gkern_from_its_description(size, sigma), rtol=1e-6, atol=1e-9)
    assert abs(kernel.sum() - 1) < 1e-6 and np.allclose(kernel, kernel.T)


def test_rise_blur_is_a_zero_padded_correlation_with_gkern():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 9, 13, generator=generator)
    kernel = gkern_from_its_description(5, 2.0)
    padded = np.pad(images.double().numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    expected = np.zeros(images.shape)
    for y in range(9):
        for x in range(13):
            expected[:, :, y, x] = (padded[:, :, y : y + 5, x : x + 5] * kernel).sum(axis=(2, 3))
    got = gaussian_blur(images, 5, 2.0).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    flat = torch.full((1, 3, 12, 12), 0.7)
    rise = gaussian_blur(flat)
    assert torch.allclose(rise[..., 5:-5, 5:-5], flat[..., 5:-5, 5:-5])  # inside: unchanged
    assert float(rise[0, 0, 0, 0]) < 0.7 * 0.5  # the corner fades towards zero


def test_blur_keeps_a_constant_image_and_bad_input_raises():
    flat = torch.full((1, 3, 12, 12), 0.7)
    assert torch.allclose(gaussian_blur(flat, substrate="replicate"), flat)
    with pytest.raises(SalmapError, match="substrate"):
        gaussian_blur(flat, substrate="mirror")
    maps, images = maps_and_image()
    with pytest.raises(SalmapError):
        deletion(evidence_model(), images, maps[:, :4])
    with pytest.raises(SalmapError):
        deletion(evidence_model().train(), images, maps)


def test_deletion_fill_value_is_what_removed_pixels_become() -> None:
    import torch
    from torch import nn

    from salmap.metrics import deletion

    # a model that sees only the mean of the image: deleting towards fill = mean keeps its score
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.full((16,), 1.0), torch.zeros(16)]))
        model[1].bias.zero_()
    x = torch.full((1, 1, 4, 4), 0.5)
    maps = torch.rand(1, 4, 4)
    kept = deletion(model, x, maps, 0, steps=4, fill=0.5)
    assert torch.allclose(kept.curve, kept.curve[:, :1].expand_as(kept.curve))
    dropped = deletion(model, x, maps, 0, steps=4)
    assert dropped.curve[0, -1] < dropped.curve[0, 0]
