"""The CASM mapper m(x): the classifier's multi-scale features -> a mask in [0, 1] per pixel.

Decoder (SPEC section 2, after Zolna et al. 2019): for each stage, a 1x1 convolution to `width`
channels + BatchNorm + ReLU, upsampled (bilinear) to the stem's resolution; these are
concatenated with the stem features; a 3x3 convolution to one channel and a sigmoid give the
mask, which is enlarged to the input size: nearest neighbour (the authors' code; for a ResNet
the stem grid is 1/4 of the input, so each mask value covers 4x4 pixels) or bilinear.

The 3x3 convolution is linear and mixes channels only, and bilinear upsampling acts on each
channel alone, so the two commute: each stage's features are first reduced to the 9 taps of
the convolution at their own resolution, those 9 channels are upsampled (instead of `width`),
summed over stages, and a fixed kernel adds each tap at its offset. The result equals the
concatenate-then-convolve form without building the wide tensor at the stem's resolution.

The encoder is the classifier's own features, detached before the decoder (`share_encoder=True`,
the paper's choice), or a separate copy of the backbone trained with the mapper
(`share_encoder=False`, the ablation of the paper's Table 2).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import Features, StagedClassifier


class Decoder(nn.Module):
    """Stage features + stem features -> mask logits at the stem's resolution, then the mask."""

    def __init__(
        self, stem_channels: int, stage_channels: Sequence[int], width: int = 64, upsample: str = "nearest"
    ) -> None:
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"unknown mask upsampling {upsample!r}; use nearest or bilinear")
        self.upsample = upsample
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            for c in stage_channels
        )
        self.out = nn.Conv2d(stem_channels + width * len(stage_channels), 1, 3, padding=1)
        self.stem_channels = stem_channels
        self.width = width

    def forward(
        self, stem: torch.Tensor, stages: Sequence[torch.Tensor], size: tuple[int, int]
    ) -> torch.Tensor:
        """The mask `(B, H, W)` in [0, 1] at `size` = the input's (H, W)."""
        grid = stem.shape[-2:]
        stem_weight, *stage_weights = self.out.weight.split(
            [self.stem_channels] + [self.width] * len(self.lateral), dim=1
        )
        taps = None
        for lateral, features, weight in zip(self.lateral, stages, stage_weights, strict=True):
            per_tap = F.conv2d(lateral(features), weight[0].permute(1, 2, 0).reshape(9, self.width, 1, 1))
            upsampled = F.interpolate(per_tap, size=grid, mode="bilinear", align_corners=False)
            taps = upsampled if taps is None else taps + upsampled
        offsets = torch.eye(9, dtype=taps.dtype, device=taps.device).view(1, 9, 3, 3)
        logits = F.conv2d(stem, stem_weight, self.out.bias, padding=1) + F.conv2d(taps, offsets, padding=1)
        mask = torch.sigmoid(logits)
        if self.upsample == "nearest":
            return F.interpolate(mask, size=size, mode="nearest").squeeze(1)
        return F.interpolate(mask, size=size, mode="bilinear", align_corners=False).squeeze(1)


class Mapper(nn.Module):
    """m(x) = decoder(encoder features of x); `forward(x, features)` -> `(B, H, W)` in [0, 1].

    With a shared encoder, pass the classifier's `Features` of `x` (they are detached here);
    with a separate encoder (`encoder` given) the features are computed by it and trained.
    """

    def __init__(self, decoder: Decoder, encoder: StagedClassifier | None = None) -> None:
        super().__init__()
        self.decoder = decoder
        self.encoder = encoder

    @property
    def share_encoder(self) -> bool:
        return self.encoder is None

    def forward(self, x: torch.Tensor, features: Features | None = None) -> torch.Tensor:
        if self.encoder is not None:
            stem, stages = self.encoder.encode(x)
        else:
            if features is None:
                raise ValueError("a mapper that shares the classifier's encoder needs its features")
            stem, stages = features.stem.detach(), [s.detach() for s in features.stages]
        return self.decoder(stem, stages, tuple(x.shape[-2:]))


def build_mapper(
    classifier: StagedClassifier, share_encoder: bool = True, width: int = 64, upsample: str = "nearest"
) -> Mapper:
    """A mapper for `classifier`: a new decoder whose mask is enlarged to the input by `upsample`
    (nearest or bilinear), and a deep copy of the backbone as the encoder when `share_encoder` is
    False."""
    stem_channels, stage_channels = classifier.channels()
    encoder = None if share_encoder else copy.deepcopy(classifier).requires_grad_(True)
    return Mapper(Decoder(stem_channels, stage_channels, width, upsample), encoder)
