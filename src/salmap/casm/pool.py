"""The classifier pool F of Algorithm 1 (Zolna et al. 2019) and its thinning strategies.

Algorithm 1 samples f' from all past classifiers {f(0), ..., f(k)}; thinning keeps a small
subset. A strategy says whether the pool starts with f(0), how often a copy of f is added
(`every`), the pool's capacity (a random member is evicted when a copy arrives at a full pool),
the probability `p` of drawing f' from the pool (otherwise f' is the live classifier f, which
then also learns from the masked-out batch, eq. 8), whether f is trained at all, and the
authors' area weight lambda. The live f is never stored: "latest" means f itself.

| name | pool | p | f trained | lambda |
|---|---|---|---|---|
| F (Baseline) | {f(0)}, f frozen | 1 | no | 2.5 |
| L | {} | 0 | yes | 14 |
| FL | {f(0)} | 0.5 | yes | 7.5 |
| L100 / L1000 | f(0) + a copy every 100 / 1000 steps, at most 30 | 0.5 | yes | 10 |
| L<k> or L<k>/<s> | f(0) + a copy every k steps, at most s (default 30) | 0.5 | yes | 10 |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from salmap.errors import SalmapError

MAX_POOL = 30


@dataclass(frozen=True)
class Thinning:
    """A thinning strategy (see the module docstring)."""

    name: str
    keep_first: bool
    every: int | None
    size: int
    pool_probability: float
    train_classifier: bool
    area_weight: float
    area_weight_c: float

    def lambda_for(self, score: str) -> float:
        """The authors' area weight for score E (entropy) or C (classification loss)."""
        return self.area_weight_c if score.upper() == "C" else self.area_weight


_NAMED = {
    "F": Thinning("F", True, None, 1, 1.0, False, 2.5, 9.0),
    "L": Thinning("L", False, None, 0, 0.0, True, 14.0, 18.0),
    "FL": Thinning("FL", True, None, 1, 0.5, True, 7.5, 11.0),
}


def thinning(name: str) -> Thinning:
    """The strategy called `name`: F, L, FL, L<k> (e.g. L100, L1000) or L<k>/<s> (pool size s)."""
    key = name.strip().upper()
    if key in _NAMED:
        return _NAMED[key]
    match = re.fullmatch(r"L(\d+)(?:/(\d+))?", key)
    if not match:
        raise SalmapError(f"unknown thinning {name!r}; use F, L, FL, L100, L1000 or L<k>/<size>")
    every, size = int(match[1]), int(match[2] or MAX_POOL)
    if every < 1 or not 1 <= size <= MAX_POOL:
        raise SalmapError(f"thinning {name!r}: need every >= 1 and a pool size in 1..{MAX_POOL}")
    return Thinning(key, True, every, size, 0.5, True, 10.0, 17.0)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


class ClassifierPool:
    """Snapshots (step, state dict) of the classifier, kept by a `Thinning` strategy.

    `generator` drives every random choice (drawing from the pool, eviction), so a run resumed
    from `state_dict()` makes the same choices as an uninterrupted one.
    """

    def __init__(self, strategy: Thinning, generator: torch.Generator | None = None) -> None:
        self.strategy = strategy
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.steps: list[int] = []
        self.states: list[dict[str, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self.steps)

    def start(self, classifier: nn.Module) -> None:
        """Initialise F(0): {f(0)} when the strategy keeps the first classifier, else empty."""
        self.steps, self.states = [], []
        if self.strategy.keep_first:
            self._add(0, classifier)

    def _add(self, step: int, classifier: nn.Module) -> None:
        if len(self.steps) >= self.strategy.size:
            victim = int(torch.randint(len(self.steps), (1,), generator=self.generator))
            del self.steps[victim], self.states[victim]
        self.steps.append(step)
        self.states.append(_snapshot(classifier))

    def update(self, step: int, classifier: nn.Module) -> None:
        """After training step `step` (1, 2, ...): add a copy of f when `step` is a multiple of
        `every`, evicting a uniformly drawn member of a full pool."""
        every = self.strategy.every
        if every is not None and step % every == 0:
            self._add(step, classifier)

    def draw(self) -> int | None:
        """Algorithm 1's Sample: with probability p the index of a uniformly drawn pool member,
        otherwise None (f' is the live classifier). One Bernoulli and one index drawn each call
        so that the generator advances the same way whatever the outcome."""
        coin = float(torch.rand((), generator=self.generator))
        pick = int(torch.randint(max(len(self.steps), 1), (1,), generator=self.generator))
        if coin < self.strategy.pool_probability and self.steps:
            return pick
        return None

    def state_dict(self) -> dict:
        return {
            "steps": list(self.steps),
            "states": list(self.states),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = [int(s) for s in state["steps"]]
        self.states = list(state["states"])
        self.generator.set_state(state["generator"])
