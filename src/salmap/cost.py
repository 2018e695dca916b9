"""What a method's settings cost: the passes through the model it makes per image, counted at the
model's input size (a pass at twice the side counts four times), against its default settings.

Settings such as CAMERAS' `steps` or SmoothGrad's `n` multiply the time and memory of a run; a
run far above the defaults is refused unless forced (`salmap explain --force`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from salmap.explainers import Explainer
from salmap.models import LoadedModel
from salmap.registry import make_explainer, method

# a method estimated at more than this multiple of its default cost needs --force
FORCE_ABOVE = 10.0


def passes(explainer: Explainer, input_size: tuple[int, int], channels: int = 3) -> float:
    """The passes of `explainer` for one image of `input_size`, each weighted by its pixel count
    relative to `input_size` (from `Explainer.floor_passes`)."""
    height, width = input_size
    x = torch.zeros(1, channels, height, width)
    return sum(h * w for h, w in explainer.floor_passes(x)) / (height * width)


@dataclass(frozen=True)
class Cost:
    """A method's estimated passes per image with the chosen settings and with its defaults."""

    method: str
    passes: float
    default: float

    @property
    def ratio(self) -> float:
        """How many times the default cost the chosen settings take."""
        return self.passes / self.default

    def describe(self, input_size: tuple[int, int]) -> str:
        return (
            f"{self.method} with these settings takes about {self.ratio:.0f}x its default time per "
            f"image ({self.passes:,.0f} passes through the model at {input_size[0]}x{input_size[1]} "
            f"instead of {self.default:,.0f})"
        )


def costs(explainers: dict[str, Explainer], loaded: LoadedModel) -> list[Cost]:
    """The cost of each post-hoc method of `explainers` (by method name) against its defaults;
    trained mappers cost one pass whatever their settings."""
    channels = len(loaded.mean)
    found = []
    for name, explainer in explainers.items():
        if method(name).trained:
            continue
        default = make_explainer(name, loaded.model)
        found.append(
            Cost(
                name,
                passes(explainer, loaded.input_size, channels),
                passes(default, loaded.input_size, channels),
            )
        )
    return found
