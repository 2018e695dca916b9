"""Metrics for saliency maps: batched inputs in, one value per image out (aggregate yourself).

Each function's docstring gives its definition, its paper and whether lower or higher is better.
"""

from .classification import (
    MASK_KINDS,
    VARIANTS,
    Predictions,
    classify,
    masked_classification,
    random_masks_like,
)
from .faithfulness import CausalCurve, deletion, gaussian_blur, insertion
from .localization import (
    BoxF1,
    MaxBoxAccuracy,
    best_iou,
    box_accuracy_sweep,
    box_f1,
    box_iou,
    default_thresholds,
    held_out_box_accuracy,
    localization_error,
    max_box_accuracy,
    official_metric_error,
    two_fold_box_accuracy,
)
from .pixel import covers_all, object_coverage, pixel_auroc
from .pointing import map_peaks, pointing_accuracy, pointing_hits
from .ranking import average_ranks, spearman
from .sanity import (
    SanityResult,
    cascading_randomization,
    default_blocks,
    reinitialize,
    ssim,
)
from .statistics import (
    MaskStatistics,
    mask_entropy,
    mask_mean,
    mask_statistics,
    mask_total_variation,
    summarize_mask_statistics,
)

__all__ = [
    "MASK_KINDS",
    "VARIANTS",
    "BoxF1",
    "CausalCurve",
    "MaskStatistics",
    "MaxBoxAccuracy",
    "Predictions",
    "SanityResult",
    "average_ranks",
    "best_iou",
    "box_accuracy_sweep",
    "box_f1",
    "box_iou",
    "cascading_randomization",
    "classify",
    "covers_all",
    "default_blocks",
    "default_thresholds",
    "deletion",
    "gaussian_blur",
    "held_out_box_accuracy",
    "insertion",
    "localization_error",
    "map_peaks",
    "mask_entropy",
    "mask_mean",
    "mask_statistics",
    "mask_total_variation",
    "masked_classification",
    "max_box_accuracy",
    "object_coverage",
    "official_metric_error",
    "pixel_auroc",
    "pointing_accuracy",
    "pointing_hits",
    "random_masks_like",
    "reinitialize",
    "spearman",
    "ssim",
    "summarize_mask_statistics",
    "two_fold_box_accuracy",
]
