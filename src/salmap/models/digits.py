"""A compact CNN for the cluttered digits, with global average pooling so CAM applies exactly.

The module has named stages (`stem`, `stage1`, `stage2`, `stage3`) so that multi-scale features
are easy to hook; `stage3` is the last spatial stage (stride 4) and the default target layer.
`pool`, `flatten` and a single `fc` follow, so a class's logit is a linear function of the
pooled `stage3` features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from salmap.data.digits import DIGITS_MEAN, DIGITS_STD
from salmap.errors import SalmapError
from salmap.models.loaded import LoadedModel

DEFAULT_WIDTHS = (16, 32, 64, 96)
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "digits_cnn.pt"
CHECKPOINT_FORMAT = "salmap-digits-cnn-v1"


def _block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class DigitsCNN(nn.Module):
    """Conv blocks (BatchNorm + ReLU) -> global average pooling -> one linear layer.

    Input `(B, 1, H, W)` normalised with `DIGITS_MEAN`/`DIGITS_STD`; any H, W (multiples of 4
    keep the feature grid exact). Output logits `(B, num_classes)`.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int] = DEFAULT_WIDTHS):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.stem = nn.Sequential(*_block(1, w0))
        self.stage1 = nn.Sequential(*_block(w0, w1, stride=2), *_block(w1, w1))
        self.stage2 = nn.Sequential(*_block(w1, w2, stride=2), *_block(w2, w2))
        self.stage3 = nn.Sequential(*_block(w2, w3), *_block(w3, w3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def digits_checkpoint(model: DigitsCNN, canvas_size: int, **metadata: float | int | str) -> dict:
    """The checkpoint dictionary `load_digits_cnn` reads (loadable with `weights_only=True`)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "state_dict": model.state_dict(),
        "widths": list(model.widths),
        "num_classes": model.fc.out_features,
        "canvas_size": canvas_size,
        **metadata,
    }


def load_digits_cnn(checkpoint: str | Path | None = None) -> LoadedModel:
    """The digits CNN in eval mode; `None` loads the checkpoint shipped with salmap.

    `preprocess` turns a PIL image (converted to greyscale, resized to the training canvas) into a
    normalised `(1, H, W)` tensor; the default target layer is `stage3`.
    """
    path = SHIPPED_CHECKPOINT if checkpoint is None else Path(checkpoint)
    if not path.is_file():
        raise SalmapError(f"no digits checkpoint at {path}; train one with `salmap train-classifier`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SalmapError(f"cannot read digits checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SalmapError(f"{path} is not a salmap digits checkpoint ({CHECKPOINT_FORMAT})")
    model = DigitsCNN(num_classes=state["num_classes"], widths=tuple(state["widths"]))
    model.load_state_dict(state["state_dict"])
    model.eval()
    size = int(state["canvas_size"])

    def preprocess(image: Image.Image) -> torch.Tensor:
        grey = image.convert("L")
        if grey.size != (size, size):
            grey = grey.resize((size, size), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)
        return ((pixels - DIGITS_MEAN[0]) / DIGITS_STD[0]).unsqueeze(0)

    return LoadedModel(
        name="digits_cnn" if checkpoint is None else str(path),
        model=model,
        preprocess=preprocess,
        input_size=(size, size),
        class_names=[str(c) for c in range(state["num_classes"])],
        target_layer="stage3",
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
    )
