"""CASM as an explainer: one forward pass of the trained classifier and mapper, no target needed.

`CASM.from_checkpoint(path)` reads a `casm.pt` written by `train_casm` (or a training
`checkpoint.pt`); `Baseline` is the same class, for a mapper trained with thinning F against one
fixed classifier (Zolna et al. 2019's classifier-dependent Baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.explainers.base import Explainer, MapsAndPrediction, Target, check_images, normalize_maps

from . import checkpoint
from .adapters import adapt, build_backbone
from .mapper import Mapper, build_mapper


class CASM(Explainer):
    """m(x) of a trained CASM: `explainer(x)` -> `(B, H, W)`; `target` is ignored (the mapper
    needs no class), and `with_prediction(x)` also returns the classifier's logits."""

    name = "casm"

    def __init__(self, classifier: nn.Module, mapper: Mapper, info: dict[str, Any] | None = None) -> None:
        super().__init__(classifier)
        self.staged = adapt(classifier)
        self.mapper = mapper
        self.info = dict(info or {})

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> CASM:
        """The explainer stored in `path` (loaded with `weights_only=True`), in eval mode."""
        state = checkpoint.load(path)
        config = state.get("config", {})
        classifier = build_backbone(state["backbone"])
        try:
            classifier.load_state_dict(state["classifier"])
            mapper = build_mapper(
                adapt(classifier),
                bool(config.get("share_encoder", True)),
                int(config.get("decoder_width", 64)),
            )
            mapper.load_state_dict(state["mapper"])
        except (RuntimeError, KeyError) as error:
            raise SalmapError(f"{path}: the weights do not fit the stored architecture ({error})") from None
        classifier.to(device).eval().requires_grad_(False)
        mapper.to(device).eval().requires_grad_(False)
        info = {
            "checkpoint": str(path),
            "thinning": config.get("thinning"),
            "score": config.get("score"),
            "step": int(state.get("step", 0)),
        }
        return cls(classifier, mapper, info)

    def with_prediction(
        self, x: torch.Tensor, target: Target = None, *, normalize: bool = True
    ) -> MapsAndPrediction:
        """The maps (m(x) itself when `normalize` is False) and the classifier's logits, from one
        forward pass of the classifier; `target` is ignored."""
        x = check_images(x)
        if self.model.training or self.mapper.training:
            raise SalmapError("put the classifier and the mapper in eval mode before explaining")
        with torch.no_grad():
            features = self.staged(x, features=True)
            maps = self.mapper(x, features).float()
        return MapsAndPrediction(normalize_maps(maps) if normalize else maps, features.logits.float())

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        if self.mapper.training:
            raise SalmapError("put the mapper in eval mode (mapper.eval()) before explaining")
        with torch.no_grad():
            return self.mapper(x, self.staged(x, features=True))

    def parameters(self) -> dict[str, Any]:
        return {key: value for key, value in self.info.items() if value is not None}


class Baseline(CASM):
    """The classifier-dependent Baseline: a `CASM` checkpoint trained with thinning F."""

    name = "baseline"

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Baseline:
        explainer = super().from_checkpoint(path, device)
        if explainer.info.get("thinning") != "F":
            raise SalmapError(f"{path} was trained with thinning {explainer.info.get('thinning')}, not F")
        return explainer
