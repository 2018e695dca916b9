"""Saliency methods behind one call: `explainer(images, target=None) -> (B, H, W)` maps.

Importing this package registers every method (see `salmap.registry`).
"""

from .base import Explainer, Explanation, LayerExplainer, normalize_maps
from .cam import CAM
from .cameras import CAMERAS
from .gradcam import GradCAM
from .gradient import Gradient
from .guided_backprop import GuidedBackprop
from .smoothgrad import SmoothGrad

__all__ = [
    "CAM",
    "CAMERAS",
    "Explainer",
    "Explanation",
    "GradCAM",
    "Gradient",
    "GuidedBackprop",
    "LayerExplainer",
    "SmoothGrad",
    "normalize_maps",
]
