"""What `salmap.models.load` returns: a model together with what is needed to use it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn


@dataclass
class LoadedModel:
    """A classifier in eval mode plus its preprocessing, class names and default target layer.

    `preprocess` turns a PIL image into the normalised `(C, H, W)` float tensor the model expects;
    `target_layer` is the dotted module name that CAM-style methods find automatically
    (`salmap.layers.find_target_layer`; None for TorchScript models, which take no hooks);
    `resize` is the shorter side an image is resized to before the centre crop to `input_size`
    (None: the image is resized straight to it).
    """

    name: str
    model: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    input_size: tuple[int, int]
    class_names: list[str]
    target_layer: str | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None
    pretrained: bool = True

    def class_index(self, label: int | str) -> int:
        """The class index for an index or a class name: the class spelled exactly so, else the
        one class whose name matches ignoring case; several matches are an error that lists
        them."""
        from salmap.errors import SalmapError

        count = len(self.class_names)
        if isinstance(label, int) or (isinstance(label, str) and label.strip().isdigit()):
            index = int(label)
            if not 0 <= index < count:
                raise SalmapError(f"class index {index} is out of range for {self.name} (0..{count - 1})")
            return index
        wanted = str(label).strip()
        exact = [index for index, name in enumerate(self.class_names) if name == wanted]
        if len(exact) == 1:
            return exact[0]
        matches = [
            index for index, name in enumerate(self.class_names) if name.casefold() == wanted.casefold()
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            listed = ", ".join(f"{index} ({self.class_names[index]})" for index in matches)
            raise SalmapError(f"class name {label!r} matches several classes: {listed}; give the index")
        raise SalmapError(
            f"unknown class name {label!r} for {self.name}; give a name or an index 0..{count - 1}"
        )

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: `(B, C, H, W)` back to [0, 1] pixel values."""
        from salmap.models.transforms import to_pixels

        return to_pixels(x, self.mean, self.std)
