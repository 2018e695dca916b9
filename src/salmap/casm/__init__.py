"""CASM (Zolna et al. 2019): train a classifier-agnostic saliency mapper and explain with it.

`train_casm(preset("digits"), "runs/casm")` trains; `CASM.from_checkpoint(path)` explains.
"""

from .adapters import Features, StagedClassifier, adapt
from .explainer import CASM, Baseline
from .mapper import Decoder, Mapper, build_mapper
from .pool import ClassifierPool, Thinning, thinning
from .train import PRESETS, CASMConfig, CASMTrainer, TrainResult, mask_loss, preset, train_casm

__all__ = [
    "CASM",
    "PRESETS",
    "Baseline",
    "CASMConfig",
    "CASMTrainer",
    "ClassifierPool",
    "Decoder",
    "Features",
    "Mapper",
    "StagedClassifier",
    "Thinning",
    "TrainResult",
    "adapt",
    "build_mapper",
    "mask_loss",
    "preset",
    "thinning",
    "train_casm",
]
