import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from salmap.data.imagenet import (
    ImageNetFolder,
    collate,
    read_boxes,
    transform_boxes,
    transform_image,
)
from salmap.errors import SalmapError

CAT, FISH, SHARK = "n02123045", "n01440764", "n01443537"


def write_xml(path, wnid_boxes, size):
    objects = "".join(
        f"<object><name>{wnid}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for wnid, (x0, y0, x1, y1) in wnid_boxes
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth>"
        f"</size>{objects}</annotation>"
    )


def write_jpeg(path, size, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


@pytest.fixture
def tree(tmp_path):
    """val: one box file per layout; train: no boxes."""
    write_jpeg(tmp_path / "val" / FISH / "ILSVRC2012_val_00000001.JPEG", (500, 375))
    write_xml(  # flat val_boxes folder, as extracted from ILSVRC2012_bbox_val_v3.tgz
        tmp_path / "val_boxes" / "ILSVRC2012_val_00000001.xml",
        [(FISH, (101, 51, 300, 250)), (SHARK, (1, 1, 10, 10))],
        (500, 375),
    )
    write_jpeg(tmp_path / "val" / SHARK / "ILSVRC2012_val_00000002.JPEG", (300, 400))
    write_xml(  # next to the image, with a <size> that differs from the image: rescaled
        tmp_path / "val" / SHARK / "ILSVRC2012_val_00000002.xml",
        [(SHARK, (1, 1, 150, 200))],
        (150, 200),
    )
    write_jpeg(tmp_path / "val" / CAT / "ILSVRC2012_val_00000003.jpg", (256, 256))
    write_xml(  # bbox/<split>/<wnid>/ layout, two objects
        tmp_path / "bbox" / "val" / CAT / "ILSVRC2012_val_00000003.xml",
        [(CAT, (1, 1, 64, 64)), (CAT, (129, 129, 256, 256))],
        (256, 256),
    )
    write_jpeg(tmp_path / "train" / CAT / f"{CAT}_1.JPEG", (320, 240))
    (tmp_path / "train" / CAT / "notes.txt").write_text("not an image")
    return tmp_path


def mask_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("size", [(500, 375), (300, 400), (224, 224), (1000, 257), (97, 333)])
def test_transform_boxes_matches_transforming_a_mask_image(size):
    rng = np.random.default_rng(size[0])
    for _ in range(10):
        x0, x1 = sorted(rng.choice(size[0], 2, replace=False))
        y0, y1 = sorted(rng.choice(size[1], 2, replace=False))
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[y0:y1, x0:x1] = 255
        out = np.asarray(transform_image(Image.fromarray(mask), 256, 224, Image.NEAREST)) > 0
        box = transform_boxes([[x0, y0, x1, y1]], size, 256, 224)[0]
        if not out.any():
            assert box[2] - box[0] < 1.5 or box[3] - box[1] < 1.5
            continue
        assert np.allclose(box.numpy(), mask_box(out), atol=1.0), (box, mask_box(out))


def test_transform_boxes_known_values():
    # 500x375 -> 341x256 (int(256 * 500 / 375)), crop origin (58.5 -> 58, 16)
    boxes = transform_boxes([[0, 0, 500, 375], [100, 50, 300, 250], [0, 0, 50, 30]], (500, 375), 256, 224)
    scale = 256 / 375
    assert torch.allclose(boxes[0], torch.tensor([0.0, 0.0, 224.0, 224.0]))
    expected = [100 * 341 / 500 - 58, 50 * scale - 16, 300 * 341 / 500 - 58, 250 * scale - 16]
    assert torch.allclose(boxes[1], torch.tensor(expected))
    assert boxes[2, 2] == boxes[2, 0] == 0  # outside the crop: empty


def test_read_boxes_voc_convention_and_name_filter(tree):
    boxes, size = read_boxes(tree / "val_boxes" / "ILSVRC2012_val_00000001.xml", FISH)
    assert size == (500, 375)
    assert boxes.tolist() == [[100, 50, 300, 250]]
    everything, _ = read_boxes(tree / "val_boxes" / "ILSVRC2012_val_00000001.xml")
    assert len(everything) == 2


def test_folder_labels_boxes_and_layouts(tree):
    data = ImageNetFolder(tree, "val")
    assert data.classes == sorted([CAT, FISH, SHARK])
    items = {item["path"].split("/")[-2]: item for item in data}
    assert {wnid: int(item["label"]) for wnid, item in items.items()} == {FISH: 0, SHARK: 1, CAT: 2}
    assert all(item["image"].shape == (3, 224, 224) for item in items.values())
    fish = items[FISH]["boxes"]
    assert torch.allclose(fish, transform_boxes([[100, 50, 300, 250]], (500, 375), 256, 224))
    shark = items[SHARK]["boxes"]  # XML size 150x200, image 300x400: doubled
    assert torch.allclose(shark, transform_boxes([[0, 0, 300, 400]], (300, 400), 256, 224))
    assert items[CAT]["boxes"].shape == (2, 4)
    # Normalised with ImageNet statistics: denormalised pixels are in [0, 1].
    pixel = items[CAT]["image"] * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    pixel += torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    assert pixel.min() >= -1e-5 and pixel.max() <= 1 + 1e-5


def test_train_split_without_boxes_and_collate(tree):
    data = ImageNetFolder(tree, "train", resize=160, crop=128, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert len(data) == 1
    batch = next(iter(DataLoader(data, batch_size=2, collate_fn=collate)))
    assert batch["image"].shape == (1, 3, 128, 128)
    assert batch["boxes"][0].shape == (0, 4)


def test_explicit_boxes_dir(tree, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("annotations")
    write_xml(elsewhere / FISH / "ILSVRC2012_val_00000001.xml", [(FISH, (1, 1, 500, 375))], (500, 375))
    data = ImageNetFolder(tree, "val", boxes_dir=elsewhere)
    fish = next(item for item in data if FISH in item["path"])
    assert torch.allclose(fish["boxes"], torch.tensor([[0.0, 0.0, 224.0, 224.0]]))


def test_imagenet_1k_indices_and_custom_mapping(tree):
    data = ImageNetFolder(tree, "val", class_to_idx="imagenet-1k")
    assert data.class_to_idx == {FISH: 0, SHARK: 1, CAT: 281}
    data = ImageNetFolder(tree, "val", class_to_idx={FISH: 5, SHARK: 6, CAT: 7})
    assert sorted(int(item["label"]) for item in data) == [5, 6, 7]
    with pytest.raises(SalmapError, match="no index"):
        ImageNetFolder(tree, "val", class_to_idx={FISH: 0})


def test_unreadable_image_and_bad_tree_raise_one_line_errors(tree, tmp_path_factory):
    (tree / "val" / FISH / "broken.JPEG").write_bytes(b"not a jpeg at all")
    data = ImageNetFolder(tree, "val")
    index = next(i for i, (path, _) in enumerate(data.samples) if path.name == "broken.JPEG")
    with pytest.raises(SalmapError, match="cannot read image") as error:
        data[index]
    assert "\n" not in str(error.value)
    with pytest.raises(SalmapError, match="no test folder"):
        ImageNetFolder(tree, "test")
    with pytest.raises(SalmapError, match="no images"):
        empty = tmp_path_factory.mktemp("empty")
        (empty / "val" / FISH).mkdir(parents=True)
        ImageNetFolder(empty, "val")
    (tree / "val_boxes" / "ILSVRC2012_val_00000001.xml").write_text("<annotation><object>")
    fish = next(i for i, (path, _) in enumerate(data.samples) if "00000001" in path.name)
    with pytest.raises(SalmapError, match="cannot read boxes"):
        data[fish]
