"""`salmap serve`: a local web page to explore saliency maps (any image, any class, every
method side by side, deletion and insertion on the same screen, evaluation reports)."""

from .app import create_app
from .engine import Engine
from .reports import read_reports

__all__ = ["Engine", "create_app", "read_reports"]
