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
normalise with `mean`/`std`. `transform_boxes` applies the same geometry to boxes and clips them.

Class indices: sorted wnids of the split folder, like torchvision's `ImageFolder` (when all 1,000
ImageNet-1k classes are present this is the ImageNet-1k order); pass `class_to_idx="imagenet-1k"`
to use ImageNet-1k indices for a subset of classes, or a mapping of your own.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
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
    ) -> None:
        self.root = Path(root)
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

    def crop_boxes(self, image_path: Path, wnid: str, size: tuple[int, int]) -> torch.Tensor:
        """The boxes of `wnid` in an image of `size` (width, height), in crop pixels (empty
        ones dropped); none without a box file."""
        boxes = np.zeros((0, 4), dtype=np.float32)
        xml = self.box_file(image_path, wnid)
        if xml is not None:
            boxes, xml_size = read_boxes(xml, wnid)
            if xml_size is not None and xml_size != size:
                boxes = boxes * np.array([size[0] / xml_size[0], size[1] / xml_size[1]] * 2)
        boxes = transform_boxes(boxes, size, self.resize, self.crop)
        return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]

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
            boxes = self.crop_boxes(path, wnid, size)
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
        boxes = self.crop_boxes(path, wnid, image.size)
        pixels = np.asarray(transform_image(image, self.resize, self.crop), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)
        return {
            "image": (tensor - self.mean) / self.std,
            "label": torch.tensor(self.class_to_idx[wnid]),
            "boxes": boxes,
            "path": str(path),
        }


def collate(items: list[dict]) -> dict:
    """Batch `ImageNetFolder` items: images and labels stacked, boxes and paths as lists."""
    return {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.stack([item["label"] for item in items]),
        "boxes": [item["boxes"] for item in items],
        "path": [item["path"] for item in items],
    }
