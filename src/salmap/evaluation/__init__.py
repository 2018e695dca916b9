"""Evaluating every method on the same data with the same metrics (`salmap evaluate`)."""

from .report import summarize, write_outputs
from .runner import Evaluation, evaluate
from .sources import EvalBatch, EvalSource, digits_source, imagenet_source, parse_source

__all__ = [
    "EvalBatch",
    "EvalSource",
    "Evaluation",
    "digits_source",
    "evaluate",
    "imagenet_source",
    "parse_source",
    "summarize",
    "write_outputs",
]
