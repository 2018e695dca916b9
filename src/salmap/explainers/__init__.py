"""Saliency methods behind one call: `explainer(images, target=None) -> (B, H, W)` maps."""

from .base import Explainer, MapsAndPrediction, logits_of, normalize_maps
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
    "GradCAM",
    "Gradient",
    "GuidedBackprop",
    "MapsAndPrediction",
    "SmoothGrad",
    "logits_of",
    "normalize_maps",
]
