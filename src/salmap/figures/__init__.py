"""Every figure salmap draws, in one package (the only place that imports matplotlib)."""

from .attack import save_attack_figure
from .class_models import save_class_grid
from .evaluation import write_curves, write_gallery
from .grid import method_grid
from .masks import mask_figure
from .sanity import plot_sanity

__all__ = [
    "mask_figure",
    "method_grid",
    "plot_sanity",
    "save_attack_figure",
    "save_class_grid",
    "write_curves",
    "write_gallery",
]
