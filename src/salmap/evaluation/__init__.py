"""Evaluating every method on the same data with the same metrics (`salmap evaluate`)."""

from .protocols import PROTOCOLS, Protocol, protocol
from .report import summarize, write_outputs
from .runner import Evaluation, evaluate
from .sources import EvalBatch, EvalSource, digits_source, imagenet_source, parse_source

__all__ = [
    "PROTOCOLS",
    "EvalBatch",
    "EvalSource",
    "Evaluation",
    "Protocol",
    "digits_source",
    "evaluate",
    "imagenet_source",
    "parse_source",
    "protocol",
    "summarize",
    "write_outputs",
]
