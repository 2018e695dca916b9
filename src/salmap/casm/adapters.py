"""Backbone adapters: run a classifier and expose its stem and each stage's features.

The CASM mapper's encoder is the classifier's own multi-scale features (Zolna et al. 2019). An
adapter wraps an unchanged classifier (`adapter.model`, so its state dict keeps the original
keys) and returns, in one forward pass, the logits, the stem features and the features after
each stage. Adapters exist for torchvision ResNets, timm EfficientNet(-Lite) models and the
digits CNN (`salmap.models.digits.DigitsCNN`); `adapt(model)` picks the right one.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import NamedTuple

import torch
from torch import nn

from salmap.errors import SalmapError


class Features(NamedTuple):
    """One forward pass: logits `(B, classes)`, stem `(B, C0, H0, W0)`, one tensor per stage."""

    logits: torch.Tensor
    stem: torch.Tensor
    stages: list[torch.Tensor]


class StagedClassifier(nn.Module):
    """A classifier split into stem, stages and head; `forward(x)` gives the logits and
    `forward(x, features=True)` gives `Features` (logits, stem and stage outputs)."""

    def __init__(self, model: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.model = model
        self.in_channels = in_channels

    @abstractmethod
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's output (the highest-resolution features the decoder uses)."""

    @abstractmethod
    def stage_modules(self) -> list[nn.Module]:
        """The stages, applied in order after the stem."""

    @abstractmethod
    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the last stage's output."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The stem's output and each stage's output, without the head."""
        h = self.stem(x)
        stem, stages = h, []
        for stage in self.stage_modules():
            h = stage(h)
            stages.append(h)
        return stem, stages

    def features(self, x: torch.Tensor) -> Features:
        stem, stages = self.encode(x)
        return Features(self.head(stages[-1]), stem, stages)

    def forward(self, x: torch.Tensor, features: bool = False) -> torch.Tensor | Features:
        """The logits, or `Features` when `features` is True (one pass either way)."""
        return self.features(x) if features else self.features(x).logits

    @torch.no_grad()
    def channels(self, size: int = 64) -> tuple[int, list[int]]:
        """Channels of the stem and of each stage, from a probe pass in eval mode."""
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            probe = next(self.parameters()).new_zeros(1, self.in_channels, size, size)
            out = self.features(probe)
        finally:
            for module, training in modes:
                module.training = training
        return out.stem.shape[1], [s.shape[1] for s in out.stages]


class ResNetStages(StagedClassifier):
    """torchvision ResNet: stem = conv1 + bn1 + relu (stride 2); stages = maxpool + layer1,
    layer2, layer3, layer4; head = avgpool + fc."""

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.relu(m.bn1(m.conv1(x)))

    def stage_modules(self) -> list[nn.Module]:
        m = self.model
        return [nn.Sequential(m.maxpool, m.layer1), m.layer2, m.layer3, m.layer4]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.fc(torch.flatten(self.model.avgpool(h), 1))


class EfficientNetStages(StagedClassifier):
    """timm EfficientNet / EfficientNet-Lite: stem = conv_stem + bn1 (stride 2); stages = the
    blocks grouped by output stride 4, 8, 16 and 32 (the last with conv_head + bn2);
    head = `forward_head` (global pool + classifier)."""

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.bn1(self.model.conv_stem(x))

    def stage_modules(self) -> list[nn.Module]:
        blocks = list(self.model.blocks)
        cuts = [2, 3, 5, len(blocks)]
        groups, start = [], 0
        for end in cuts:
            groups.append(nn.Sequential(*blocks[start:end]))
            start = end
        groups[-1] = nn.Sequential(*groups[-1], self.model.conv_head, self.model.bn2)
        return groups

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(h)


class DigitsStages(StagedClassifier):
    """The digits CNN: stem; stages stage1, stage2, stage3; head = pool + flatten + fc."""

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.stem(x)

    def stage_modules(self) -> list[nn.Module]:
        return [self.model.stage1, self.model.stage2, self.model.stage3]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.fc(m.flatten(m.pool(h)))


def adapt(model: nn.Module) -> StagedClassifier:
    """The adapter for `model` (torchvision ResNet, timm EfficientNet, digits CNN)."""
    if isinstance(model, StagedClassifier):
        return model
    names = {name for name, _ in model.named_children()}
    if {"conv1", "bn1", "relu", "maxpool", "layer1", "layer4", "avgpool", "fc"} <= names:
        return ResNetStages(model, model.conv1.in_channels)
    if {"conv_stem", "bn1", "blocks", "conv_head", "bn2"} <= names and hasattr(model, "forward_head"):
        if len(model.blocks) != 7:
            raise SalmapError(f"expected 7 EfficientNet block groups, got {len(model.blocks)}")
        return EfficientNetStages(model, model.conv_stem.in_channels)
    if {"stem", "stage1", "stage2", "stage3", "pool", "flatten", "fc"} <= names:
        return DigitsStages(model, model.stem[0].in_channels)
    raise SalmapError(
        f"no CASM backbone adapter for {type(model).__name__}: use a torchvision ResNet, a timm "
        "EfficientNet or the digits CNN, or subclass salmap.casm.StagedClassifier"
    )


def backbone_spec(model: nn.Module, arch: str) -> dict:
    """What `build_backbone` needs to rebuild `model`'s architecture (stored in checkpoints)."""
    from salmap.models.digits import DigitsCNN

    if isinstance(model, DigitsCNN):
        return {"arch": "digits_cnn", "num_classes": model.fc.out_features, "widths": list(model.widths)}
    classes = getattr(model, "num_classes", None) or model.fc.out_features
    return {"arch": arch, "num_classes": int(classes)}


def build_backbone(spec: dict) -> nn.Module:
    """A randomly initialised classifier of the architecture described by `backbone_spec`."""
    arch, classes = spec["arch"], int(spec["num_classes"])
    if arch == "digits_cnn":
        from salmap.models.digits import DigitsCNN

        return DigitsCNN(num_classes=classes, widths=tuple(spec["widths"]))
    from salmap.models.imagenet import build_architecture

    return build_architecture(arch, classes)
