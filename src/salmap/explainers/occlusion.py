"""Occlusion (Zeiler and Fergus 2014, "Visualizing and understanding convolutional networks")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.registry import Option, register
from salmap.targets import Target

from .base import Explainer
from .perturbation import check_batch_size, check_score, class_scores, perturbed_scores


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Where the windows along one side of `size` pixels start: every `stride` pixels, plus one
    window flush with the far edge when the stride does not reach it, so every pixel is covered."""
    if window > size:
        raise SalmapError(f"the occlusion window ({window} px) is larger than the image side ({size} px)")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def _coverage(starts: list[int], window: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """`(len(starts), size)`: 1 where window i covers the pixel."""
    pixels = torch.arange(size, device=like.device)
    begin = torch.tensor(starts, device=like.device)[:, None]
    return ((pixels >= begin) & (pixels < begin + window)).to(like.dtype)


@register(
    "occlusion",
    "perturbation",
    options=[
        Option("window", int, None, "side of the square occluder in pixels (default: input height / 7)"),
        Option(
            "stride",
            int,
            None,
            "pixels between occluder positions (default: half the window)",
            speed_default=32,
        ),
        Option("baseline", float, 0.0, "value of occluded pixels in normalised space (0: the mean colour)"),
        Option("score", str, "probability", "probability (as in the paper) or logit"),
    ],
)
class Occlusion(Explainer):
    """Occlusion: the drop in the class score when a square of the image is covered (Zeiler 2014).

    A `window` x `window` occluder filled with `baseline` (in the model's normalised space; 0 is
    the data set's mean colour, the paper's grey square) slides over the image every `stride`
    pixels, plus a last position flush with each far edge; the map at a pixel is the mean of
    s(x) - s(x occluded) over the positions that cover it, with s the softmax probability of the
    class (the paper's Fig. 7) or, with `score="logit"`, its pre-softmax score. Forward passes
    only, in inference mode, `batch_size` images per pass (default: one copy of the batch on the
    CPU, 256 images on a GPU).

    captum's `Occlusion` spreads the score drops over the pixels the same way but places no
    window flush with the far edge, so with a stride that does not reach the edge it leaves the
    last rows and columns at 0; with sizes where the stride does reach the edge the two agree.
    """

    floor = "forward"

    def __init__(
        self,
        model: nn.Module,
        window: int | None = None,
        stride: int | None = None,
        baseline: float = 0.0,
        score: str = "probability",
        batch_size: int | None = None,
        output_key: str | None = None,
    ) -> None:
        super().__init__(model, output_key)
        if (window is not None and window < 1) or (stride is not None and stride < 1):
            raise SalmapError(f"occlusion window and stride must be >= 1, got {window} and {stride}")
        self.window = window
        self.stride = stride
        self.baseline = baseline
        self.score_kind = check_score(score)
        self.batch_size = check_batch_size(batch_size)

    def geometry(self, height: int, width: int) -> tuple[int, int, list[int], list[int]]:
        """The window, the stride and the window starts along the height and the width."""
        window = self.window or max(1, round(height / 7))
        stride = self.stride or max(1, window // 2)
        return window, stride, window_starts(height, window, stride), window_starts(width, window, stride)

    def floor_passes(self, x: torch.Tensor) -> list[tuple[int, int]]:
        _, _, rows, columns = self.geometry(x.shape[-2], x.shape[-1])
        return [(x.shape[-2], x.shape[-1])] * (1 + len(rows) * len(columns))

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        height, width = x.shape[-2:]
        window, _, rows, columns = self.geometry(height, width)
        probability = self.score_kind == "probability"
        with torch.inference_mode():
            output = self.model(x)
            if target.kind != "score":
                target.resolve(self.read_logits(output))
            clean = class_scores(output, target, self.read_logits, probability).float()
        positions = [(top, left) for top in rows for left in columns]

        def occluded(start: int, stop: int) -> torch.Tensor:
            copies = x.unsqueeze(0).repeat(stop - start, 1, 1, 1, 1)
            for copy, (top, left) in enumerate(positions[start:stop]):
                copies[copy, :, :, top : top + window, left : left + window] = self.baseline
            return copies

        scores = perturbed_scores(
            self.model,
            self.read_logits,
            x,
            target,
            len(positions),
            occluded,
            probability=probability,
            batch_size=self.batch_size,
        )
        drops = (clean.unsqueeze(0) - scores).T.reshape(x.shape[0], len(rows), len(columns))
        cover_rows = _coverage(rows, window, height, drops)
        cover_columns = _coverage(columns, window, width, drops)
        total = cover_rows.T @ drops @ cover_columns
        count = cover_rows.sum(dim=0)[:, None] * cover_columns.sum(dim=0)[None, :]
        return total / count

    def explain_signed(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        """The map itself: the mean drop of the score is not rectified."""
        return self.explain(x, target)

    def settings(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "stride": self.stride,
            "baseline": self.baseline,
            "score": self.score_kind,
        }
