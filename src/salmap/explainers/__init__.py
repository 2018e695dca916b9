"""Saliency methods behind one call: `explainer(images, target=None) -> (B, H, W)` maps.

Importing this package registers every method (see `salmap.registry`).
"""

from .base import Explainer, Explanation, LayerExplainer, normalize_maps
from .cam import CAM
from .cameras import CAMERAS
from .eigencam import EigenCAM
from .gradcam import GradCAM
from .gradcam_plus_plus import GradCAMPlusPlus
from .gradient import Gradient
from .guided_backprop import GuidedBackprop
from .hirescam import HiResCAM
from .integrated_gradients import IntegratedGradients
from .layercam import LayerCAM
from .occlusion import Occlusion
from .rise import RISE
from .scorecam import ScoreCAM
from .smoothgrad import SmoothGrad
from .xgradcam import XGradCAM

__all__ = [
    "CAM",
    "CAMERAS",
    "RISE",
    "EigenCAM",
    "Explainer",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GuidedBackprop",
    "HiResCAM",
    "IntegratedGradients",
    "LayerCAM",
    "LayerExplainer",
    "Occlusion",
    "ScoreCAM",
    "SmoothGrad",
    "XGradCAM",
    "normalize_maps",
]
