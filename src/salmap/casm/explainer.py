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
from salmap.explainers.base import Explainer, Explanation, normalize_maps, uncompiled
from salmap.inputs import check_images
from salmap.registry import register
from salmap.targets import Target, TargetSpec, as_target

from . import checkpoint
from .adapters import adapt, build_backbone
from .mapper import Mapper, build_mapper

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


@register("casm", "mapper")
class CASM(Explainer):
    """Classifier-agnostic saliency mapper, trained against a pool of classifiers (Zolna 2019).

    m(x) of a trained CASM: `explainer(x)` -> `(B, H, W)`; `target` is ignored (the mapper
    needs no class), and `with_prediction(x)` also returns the classifier's logits.
    """

    shipped = "casm_digits.pt"
    floor = "forward"

    def __init__(
        self,
        classifier: nn.Module,
        mapper: Mapper,
        info: dict[str, Any] | None = None,
        decoder_stem: str = "pooled",
    ) -> None:
        super().__init__(classifier)
        self.staged = adapt(classifier, decoder_stem)
        self.mapper = mapper
        self.info = dict(info or {})

    @classmethod
    def build(cls, model: nn.Module, *, checkpoint: str | Path | None = None, **_: Any) -> CASM:
        """The mapper in `checkpoint`, on `model`'s device; it carries its own classifier."""
        if checkpoint is None:
            raise SalmapError(f"{cls.name} needs a trained checkpoint: pass --checkpoint PATH")
        device = next(model.parameters(), torch.empty(0)).device
        explainer = cls.from_checkpoint(checkpoint, device)
        explainer.check_matches(model)
        return explainer

    def check_matches(self, model: nn.Module) -> None:
        """An error unless `model` has the architecture of the classifier the mapper was trained
        with (same module type, same parameter names and shapes): the mapper reads that
        classifier's features and inputs prepared for it."""
        model = uncompiled(model)

        def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
            return {key: tuple(value.shape) for key, value in module.state_dict().items()}

        if type(model) is not type(self.model) or shapes(model) != shapes(self.model):
            backbone = self.info.get("backbone", {})
            raise SalmapError(
                f"{self.info.get('checkpoint')} holds a mapper trained with a {backbone.get('arch')} "
                f"classifier ({backbone.get('num_classes')} classes), not the {type(model).__name__} "
                "being explained; use a checkpoint trained on this model (salmap train-casm --model ...)"
            )

    @classmethod
    def shipped_checkpoint(cls) -> Path:
        """The checkpoint trained on the cluttered digits that ships with salmap."""
        return WEIGHTS / cls.shipped

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> CASM:
        """The explainer stored in `path` (loaded with `weights_only=True`), in eval mode. A
        checkpoint that does not record its decoder layout predates the choice and used a ResNet's
        pre-pool stem and bilinear enlargement."""
        state = checkpoint.load(path)
        checkpoint.require(state, path, ("backbone", "classifier", "mapper"))
        config = state.get("config", {})
        try:
            classifier = build_backbone(state["backbone"])
        except (KeyError, TypeError, ValueError) as error:
            raise SalmapError(
                f"{path} describes no known classifier ({type(error).__name__}: {error})"
            ) from None
        decoder_stem = str(config.get("decoder_stem", "conv"))
        try:
            classifier.load_state_dict(state["classifier"])
            mapper = build_mapper(
                adapt(classifier, decoder_stem),
                bool(config.get("share_encoder", True)),
                int(config.get("decoder_width", 64)),
                str(config.get("mask_upsample", "bilinear")),
            )
            mapper.load_state_dict(state["mapper"])
        except (RuntimeError, KeyError, TypeError, ValueError) as error:
            raise SalmapError(
                f"{path} does not fit its stored architecture: {checkpoint.state_dict_problem(error)}"
            ) from None
        classifier.to(device).eval().requires_grad_(False)
        mapper.to(device).eval().requires_grad_(False)
        info = {
            "checkpoint": str(path),
            "backbone": state["backbone"],
            "thinning": config.get("thinning"),
            "score": config.get("score"),
            "step": int(state.get("step", 0)),
        }
        return cls(classifier, mapper, info, decoder_stem)

    def with_prediction(
        self, x: torch.Tensor, target: TargetSpec = None, *, normalize: bool = True
    ) -> Explanation:
        """The maps (m(x) itself when `normalize` is False) and the classifier's logits, from one
        forward pass of the classifier; the target is the classifier's top-1 class (the map does
        not depend on it)."""
        x = check_images(x)
        goal = as_target(target, x.shape[0])
        if self.model.training or self.mapper.training:
            raise SalmapError("put the classifier and the mapper in eval mode before explaining")
        with torch.no_grad():
            features = self.staged(x, features=True)
            maps = self.mapper(x, features).float()
        goal.resolve(features.logits)
        logits = features.logits.float()
        return Explanation(normalize_maps(maps) if normalize else maps, logits, goal)

    def explain(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        if self.mapper.training:
            raise SalmapError("put the mapper in eval mode (mapper.eval()) before explaining")
        with torch.no_grad():
            return self.mapper(x, self.staged(x, features=True))

    def settings(self) -> dict[str, Any]:
        return {key: value for key, value in self.info.items() if value is not None and key != "backbone"}


@register("baseline", "mapper")
class Baseline(CASM):
    """CASM's classifier-dependent Baseline: the mapper trained against one fixed classifier.

    A `CASM` checkpoint trained with thinning F (Zolna et al. 2019).
    """

    shipped = "baseline_digits.pt"

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Baseline:
        explainer = super().from_checkpoint(path, device)
        if explainer.info.get("thinning") != "F":
            raise SalmapError(f"{path} was trained with thinning {explainer.info.get('thinning')}, not F")
        return explainer
