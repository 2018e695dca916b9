"""salmap: saliency maps for image classifiers, behind one call.

import salmap
loaded = salmap.models.load("efficientnet_lite0")
x = loaded.preprocess(salmap.load_image("cat.jpg"))[None]
maps = salmap.GradCAM(loaded.model)(x)          # (1, 224, 224) in [0, 1]
"""

from . import models
from .errors import SalmapError
from .explainers import (
    CAM,
    CAMERAS,
    RISE,
    EigenCAM,
    Explainer,
    Explanation,
    GradCAM,
    GradCAMPlusPlus,
    Gradient,
    GuidedBackprop,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
)
from .images import load_image, map_to_image, overlay
from .registry import make_explainer, method_names, register
from .targets import Target

__version__ = "0.1.0"

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
    "Occlusion",
    "SalmapError",
    "ScoreCAM",
    "SmoothGrad",
    "Target",
    "XGradCAM",
    "__version__",
    "load_image",
    "make_explainer",
    "map_to_image",
    "method_names",
    "models",
    "overlay",
    "register",
]
