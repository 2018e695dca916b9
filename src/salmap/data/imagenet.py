"""ImageNet-style folders with ILSVRC XML boxes, boxes transformed exactly like the images.

Images: `ROOT/<split>/<wnid>/*.JPEG` (also `.jpg`, `.jpeg`, `.png`, any case) for split `train`
or `val`. Boxes: PASCAL VOC style XML files (`<annotation><size><width/><height/></size>
<object><name>wnid</name><bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object></annotation>`)
named after the image stem, looked up in this order, each with or without a `<wnid>/` level:

1. `boxes_dir` when given (e.g. Kaggle's `ILSVRC/Annotations/CLS-LOC/val`);
2. next to the image (`ROOT/<split>/<wnid>/<stem>.xml`);
3. `ROOT/<split>_boxes/` (e.g. `ROOT/val_boxes/<stem>.xml` from `ILSVRC2012_bbox_val_v3.tgz`);
4. `ROOT/bbox/<split>/`.

Only objects named after the image's wnid are kept. XML coordinates are read as 1-based inclusive
pixel indices (the VOC convention) and become `(xmin - 1, ymin - 1, xmax, ymax)`, i.e.
`(x0, y0, x1, y1)` with x1, y1 exclusive; when the XML's `<size>` differs from the image's, the
boxes are rescaled to the image. An image without an XML file has no boxes.

The image transform is: resize the shorter side to `resize` (bilinear; the longer side is
`int(resize * long / short)` as in torchvision), centre crop `crop` x `crop`, scale to [0, 1],
normalise with `mean`/`std`. `transform_boxes` applies the same geometry to boxes and clips them
(`box_geometry="crop"`). `box_geometry="casm"` follows the CASM authors' scoring code instead
(`casm_boxes`): the XML's numbers scaled and shifted, truncated to integers, clipped to the crop,
empty boxes kept, and each box's area before clipping given as `box_areas` (their IoU union and
F1 recall use it).

For training, `transform` replaces the resize and crop (e.g. `random_crop_transform`, the
authors' random resized crop and flip); such items carry no boxes.

Class indices: sorted wnids of the split folder, like torchvision's `ImageFolder` (when all 1,000
ImageNet-1k classes are present this is the ImageNet-1k order); pass `class_to_idx="imagenet-1k"`
to use ImageNet-1k indices for a subset of classes, or a mapping of your own.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from salmap.errors import SalmapError
from salmap.images import IMAGE_SUFFIXES
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD, crop_geometry


def transform_image(
    image: Image.Image, resize: int, crop: int, resample: int = Image.BILINEAR
) -> Image.Image:
    """Resize the shorter side to `resize`, then take the centre `crop` x `crop` square."""
    if crop > resize:
        raise SalmapError(f"the crop ({crop}) must not exceed the resize ({resize})")
    (height, width), (top, left) = crop_geometry((image.height, image.width), resize, (crop, crop))
    return image.resize((width, height), resample).crop((left, top, left + crop, top + crop))


def random_crop_transform(
    size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[Image.Image], torch.Tensor]:
    """The training transform of the CASM authors' code (and torchvision's ImageNet recipe):
    `RandomResizedCrop(size)` (area 8-100% of the image, aspect ratio 3/4-4/3, bilinear),
    a horizontal flip with probability 1/2, [0, 1] pixels normalised with `mean` and `std`."""
    import torchvision.transforms.v2 as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(mean), list(std)),
        ]
    )


def transform_boxes(
    boxes: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    orig_size: tuple[int, int],
    resize: int,
    crop: int,
) -> torch.Tensor:
    """Map `(K, 4)` boxes `(x0, y0, x1, y1)` of an image of `orig_size` (width, height) through
    `transform_image`'s resize and centre crop; coordinates are clipped to `[0, crop]`.

    Returns float32 `(K, 4)`; a box outside the crop comes back empty (`x0 == x1` or `y0 == y1`).
    """
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    width, height = orig_size
    (new_height, new_width), (top, left) = crop_geometry((height, width), resize, (crop, crop))
    scale = torch.tensor([new_width / width, new_height / height] * 2)
    offset = torch.tensor([left, top] * 2, dtype=torch.float32)
    return (boxes * scale - offset).clamp(0, crop)


def casm_boxes(
    boxes: np.ndarray, size: tuple[int, int], resize: int, crop: int
) -> tuple[np.ndarray, np.ndarray]:
    """The box geometry of the CASM authors' `score.py` for `(K, 4)` XML numbers
    `(xmin, ymin, xmax, ymax)` of an image of `size` (width, height) resized so that its shorter
    side is `resize` and centre cropped to `crop`: each coordinate becomes
    `int(scale * v - cut)` (truncated toward zero), scale = resize / shorter side, cut = half of
    what the crop removes on that axis; returns the boxes clipped to `[0, crop]` and their areas
    `(x1 - x0)(y1 - y0)` before clipping. A box outside the crop comes back empty."""
    width, height = size
    scale = resize / min(width, height)
    cut = np.array([(width * scale - crop) / 2, (height * scale - crop) / 2] * 2)
    moved = np.trunc(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale - cut)
    areas = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    return np.clip(moved, 0, crop).astype(np.float32), areas.astype(np.float32)


def read_boxes(path: str | Path, wnid: str | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Boxes `(K, 4)` `(x0, y0, x1, y1)` of an ILSVRC/VOC XML file and its `(width, height)`.

    With `wnid`, only objects of that name are kept. The size is None when the file has none.
    """
    try:
        root = ET.parse(path).getroot()
        boxes = []
        for obj in root.iter("object"):
            if wnid is not None and (obj.findtext("name") or "").strip() != wnid:
                continue
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        size = root.find("size")
        dims = None if size is None else (int(size.findtext("width")), int(size.findtext("height")))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as error:
        raise SalmapError(f"cannot read boxes from {path}: {error}") from None
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), dims


def _imagenet1k_wnids() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


class ImageNetFolder(Dataset):
    """`ROOT/<split>/<wnid>/*.JPEG` with boxes (see the module docstring for layouts and rules).

    Items are dicts: `image (3, crop, crop)` normalised, `label ()` int64, `boxes (K, 4)` float32
    in crop pixels (empty boxes dropped), `path` str; use `collate` with a `DataLoader`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        resize: int = 256,
        crop: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        class_to_idx: Mapping[str, int] | str | None = None,
        boxes_dir: str | Path | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        box_geometry: str = "crop",
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        if box_geometry not in ("crop", "casm"):
            raise SalmapError(f"unknown box geometry {box_geometry!r}; use crop or casm")
        self.box_geometry = box_geometry
        folder = self.root / split
        if not folder.is_dir():
            raise SalmapError(f"no {split} folder in {self.root}; expected {folder}/<wnid>/*.JPEG")
        if crop > resize:
            raise SalmapError(f"the crop ({crop}) must not exceed the resize ({resize})")
        self.resize, self.crop = resize, crop
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        self.class_to_idx = self._class_indices(class_to_idx)
        self.samples = [
            (path, wnid)
            for wnid in self.classes
            for path in sorted((folder / wnid).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.samples:
            raise SalmapError(f"no images in {folder}/<wnid>/ (looked for .JPEG, .jpg, .png)")
        candidates = [boxes_dir, None, self.root / f"{split}_boxes", self.root / "bbox" / split]
        self.box_roots = [c if c is None else Path(c) for c in candidates]
        self.box_roots = [c for c in self.box_roots if c is None or c.is_dir()]

    def _class_indices(self, class_to_idx: Mapping[str, int] | str | None) -> dict[str, int]:
        if class_to_idx is None:
            return {wnid: index for index, wnid in enumerate(self.classes)}
        if isinstance(class_to_idx, str):
            if class_to_idx != "imagenet-1k":
                raise SalmapError(f"unknown class mapping {class_to_idx!r}; use 'imagenet-1k'")
            class_to_idx = {wnid: index for index, wnid in enumerate(_imagenet1k_wnids())}
        missing = [wnid for wnid in self.classes if wnid not in class_to_idx]
        if missing:
            raise SalmapError(f"the class mapping has no index for {', '.join(missing[:5])}")
        return {wnid: int(class_to_idx[wnid]) for wnid in self.classes}

    def box_file(self, image_path: Path, wnid: str) -> Path | None:
        """The XML file of an image, or None (lookup order in the module docstring)."""
        name = image_path.stem + ".xml"
        for root in self.box_roots:
            options = [image_path.with_suffix(".xml")] if root is None else [root / wnid / name, root / name]
            for option in options:
                if option.is_file():
                    return option
        return None

    def problem(self, index: int) -> str | None:
        """Why image `index` cannot be used for localisation, or None: its image or box file
        cannot be read, or no box of its class lies inside the centre crop (reads the image's
        header and the box file only)."""
        path, wnid = self.samples[index]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    size = opened.size
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
            return f"cannot read the image ({type(error).__name__})"
        try:
            boxes = self.boxes_of(path, wnid, size)["boxes"]
        except SalmapError as error:
            return str(error)
        if len(boxes) == 0:
            return f"no box of {wnid} inside the centre crop"
        return None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        path, wnid = self.samples[index]
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SalmapError(f"cannot read image {path}: {reason}") from None
        label = torch.tensor(self.class_to_idx[wnid])
        if self.transform is not None:
            return {
                "image": self.transform(image),
                "label": label,
                "boxes": torch.zeros(0, 4),
                "path": str(path),
            }
        pixels = np.asarray(transform_image(image, self.resize, self.crop), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)
        item = {"image": (tensor - self.mean) / self.std, "label": label, "path": str(path)}
        return item | self.boxes_of(path, wnid, image.size)

    def boxes_of(self, path: Path, wnid: str, size: tuple[int, int]) -> dict:
        """`boxes` of `wnid` in crop pixels (and, in the CASM geometry, `box_areas`) of an image of
        `size` (width, height); none without a box file."""
        boxes = np.zeros((0, 4), dtype=np.float32)
        xml_size = None
        xml = self.box_file(path, wnid)
        if xml is not None:
            boxes, xml_size = read_boxes(xml, wnid)
        if self.box_geometry == "casm":
            # the XML's own numbers, scaled by the XML's size as the authors' code does
            clipped, areas = casm_boxes(
                boxes + np.array([1, 1, 0, 0]), xml_size or size, self.resize, self.crop
            )
            return {"boxes": torch.from_numpy(clipped), "box_areas": torch.from_numpy(areas)}
        if xml_size is not None and xml_size != size:
            boxes = boxes * np.array([size[0] / xml_size[0], size[1] / xml_size[1]] * 2)
        boxes = transform_boxes(boxes, size, self.resize, self.crop)
        return {"boxes": boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]}


def collate(items: list[dict]) -> dict:
    """Batch `ImageNetFolder` items: images and labels stacked, boxes (and box areas, when the
    items have them) and paths as lists."""
    batch = {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.stack([item["label"] for item in items]),
        "boxes": [item["boxes"] for item in items],
        "path": [item["path"] for item in items],
    }
    if all("box_areas" in item for item in items):
        batch["box_areas"] = [item["box_areas"] for item in items]
    return batch
