import numpy as np
import torch
import torch.nn.functional as F

from salmap.boxes import (
    as_box_list,
    cam_rule_boxes,
    casm_rule_boxes,
    draw_boxes,
    graphcut_boxes,
    threshold_boxes,
)
from salmap.metrics import box_iou


def two_regions() -> torch.Tensor:
    """A diagonal line of 5 pixels (one 8-connected region, five 4-connected ones) and a 2x2
    block, on a 12x12 map."""
    saliency = torch.zeros(1, 12, 12)
    for i in range(5):
        saliency[0, 1 + i, 1 + i] = 1.0
    saliency[0, 8:10, 6:8] = 0.9
    return saliency


def test_cam_rule_uses_8_connectivity_and_exclusive_corners():
    assert cam_rule_boxes(two_regions()).tolist() == [[1, 1, 6, 6]]


def test_casm_rule_keeps_the_largest_4_connected_component():
    assert casm_rule_boxes(two_regions()).tolist() == [[6, 8, 8, 10]]


def casm_reference_box(saliency: np.ndarray) -> list[int]:
    """The authors' pipeline from its description: binarise (k-th value threshold, clamped,
    strict), label with scipy (4-connected), the component with most pixels (lowest label on a
    tie), its inclusive row/column extent; an empty mask stays an empty box."""
    from scipy import ndimage

    values = saliency.reshape(-1)
    k = 1 + int((values.size - 1) * (1 - values.mean()) + 0.5)
    threshold = min(max(np.sort(values)[k - 1], 1e-6), 1 - 1e-6)
    binary = saliency > threshold
    if not binary.any():
        return [0, 0, 0, 0]
    labels, _ = ndimage.label(binary)
    largest = labels == np.argmax(np.bincount(labels.reshape(-1), weights=binary.reshape(-1)))
    rows, columns = np.nonzero(largest)
    return [int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1]


def test_casm_rule_boxes_match_the_authors_pipeline():
    generator = torch.Generator().manual_seed(3)
    smooth = F.avg_pool2d(torch.rand(40, 1, 28, 28, generator=generator), 5, 1, 2)[:, 0]
    maps = (smooth - smooth.amin(dim=(1, 2), keepdim=True)) ** 4
    maps = maps / maps.amax(dim=(1, 2), keepdim=True)
    got = casm_rule_boxes(maps).tolist()
    assert got == [casm_reference_box(m.double().numpy()) for m in maps]
    assert casm_rule_boxes(torch.zeros(1, 5, 5)).tolist() == [[0, 0, 0, 0]]


def test_cam_rule_fraction_and_flat_map():
    saliency = torch.zeros(1, 10, 10)
    saliency[0, 2:8, 2:8] = 0.1
    saliency[0, 4:6, 4:6] = 1.0
    assert cam_rule_boxes(saliency).tolist() == [[4, 4, 6, 6]]
    assert cam_rule_boxes(saliency, fraction=0.05).tolist() == [[2, 2, 8, 8]]
    assert cam_rule_boxes(torch.zeros(2, 4, 6)).tolist() == [[0, 0, 6, 4]] * 2


def test_threshold_boxes_gives_an_empty_box_above_the_max():
    assert threshold_boxes(two_regions(), 1.5).tolist() == [[0, 0, 0, 0]]


def test_graphcut_finds_a_coloured_square_from_a_rough_map():
    size, box = 64, (20, 16, 44, 40)
    rng = np.random.default_rng(0)
    image = np.full((3, size, size), 0.8) + rng.normal(0, 0.02, (3, size, size))
    image[:, box[1] : box[3], box[0] : box[2]] = np.array([0.9, 0.1, 0.1]).reshape(3, 1, 1)
    images = torch.tensor(image, dtype=torch.float32).clamp(0, 1).unsqueeze(0)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (32 + 3, 28 + 2)  # offset from the square's centre (32, 28)
    saliency = torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 9.0**2))
    saliency = F.avg_pool2d(saliency.view(1, 1, size, size), 5, 1, 2).view(1, size, size)
    predicted = graphcut_boxes(images, saliency / saliency.max())
    assert float(box_iou(predicted, torch.tensor([box]))) > 0.8
    rough = cam_rule_boxes(saliency / saliency.max())
    assert float(box_iou(rough, torch.tensor([box]))) < float(box_iou(predicted, torch.tensor([box])))


def test_draw_boxes_marks_the_border():
    picture = draw_boxes(torch.zeros(3, 10, 10), torch.tensor([[2, 3, 6, 8]]), [(255, 0, 0)])
    assert picture.shape == (10, 10, 3) and picture.dtype == np.uint8
    assert tuple(picture[3, 2]) == (255, 0, 0) and tuple(picture[7, 5]) == (255, 0, 0)
    assert tuple(picture[8, 6]) == (0, 0, 0) and tuple(picture[5, 4]) == (0, 0, 0)


def test_box_list_formats():
    assert [b.shape for b in as_box_list(torch.zeros(2, 4, dtype=torch.long), 2)] == [(1, 4)] * 2
    ragged = as_box_list([torch.tensor([0, 0, 2, 2]), torch.zeros(3, 4)], 2)
    assert [b.shape[0] for b in ragged] == [1, 3]
