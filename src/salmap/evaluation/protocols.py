"""Evaluation protocols: the rules `evaluate` scores maps by, and the tables it reports.

`casm` is the CASM paper's evaluation as the authors' code computes it (Zolna et al. 2019,
kondiz/casme `score.py` and `eval.py`): the box of the largest 4-connected component of the
authors' binarisation (the most salient pixels, as many as the map's mean times the pixel count),
LE and OM (OM with the top-1 of the classifier each map comes from: a trained mapper's own
co-trained classifier), F1 / F1a of the continuous map, mask statistics of the raw masks, and
the top-1 of the model on masked-in, masked-out and inpainted images, the pixels blacked out; on
ImageNet the images are resized (shorter side) straight to the crop size and centre cropped, and
the boxes follow the authors' integer geometry, their areas before clipping dividing IoU and
recall. These are the columns of the paper's Table 1 (OM, LE, F1 and the mask statistics) and
of its masked-image classification.

`salmap` is every metric of `salmap evaluate`, each paper-named one by its paper's rule (the CASM
rule as above, RISE's insertion substrate, TorchRay's strict pointing tolerance, Adebayo et al.'s
signed and absolute Spearman), with salmap's own choices where they are named: three box rules,
BoxAcc with a held-out threshold, the model's own preprocessing and clipped boxes on ImageNet,
both OM variants, and deletion / insertion scored for the class the maps explain (the ground
truth) unless `causal_target="prediction"` (RISE: the model's top-1). In both protocols the
masked images (a CASM paper evaluation) and the coverage of evidence objects take the binary
masks of the CASM rule, and masked pixels are black.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from salmap.errors import SalmapError

from .accumulators import (
    Accumulator,
    Boxes,
    Causal,
    Evidence,
    MaskedClassification,
    MaskStatistics,
    Pointing,
    Sanity,
)

CAUSAL_TARGETS = ("label", "prediction")


@dataclass(frozen=True)
class Table:
    """A table of report.md: its title and the metric keys of its columns, in order."""

    title: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Protocol:
    """How `evaluate` scores maps: its accumulators, the box rules and whether to sweep box
    thresholds, the ImageNet box geometry ("casm" or "crop"), the class deletion / insertion
    score ("label" or "prediction"), the report's tables (None: one per column group) and the
    paragraph that states it in report.md."""

    name: str
    statement: str
    accumulators: tuple[type[Accumulator], ...]
    box_rules: tuple[str, ...]
    box_sweep: bool
    box_geometry: str
    causal_target: str = "label"
    tables: tuple[Table, ...] | None = None

    def with_causal_target(self, target: str) -> Protocol:
        """The protocol with deletion / insertion scored for `target` ("label" or "prediction")."""
        if target not in CAUSAL_TARGETS:
            raise SalmapError(f"unknown causal target {target!r}; use {' or '.join(CAUSAL_TARGETS)}")
        return replace(self, causal_target=target)


CASM = Protocol(
    name="casm",
    statement=(
        "Protocol `casm`: the CASM paper's evaluation as the authors' code computes it (Zolna et al. "
        "2019, kondiz/casme score.py and eval.py). Box: the largest 4-connected component of the "
        "authors' binarisation (keep the pixels above the k-th smallest value, k = 1 + "
        "floor((N - 1)(1 - mean) + 1/2), so that the binary area is the mean of the map; an empty "
        "mask is a miss). LE / OM: IoU > 0.5; OM takes the top-1 of the classifier each map comes "
        "from (a trained mapper's own classifier). F1 / F1a of the continuous map (raw masks for "
        "trained mappers). On ImageNet: shorter side resized to the crop size, centre crop, boxes "
        "in the authors' integer geometry with their areas before clipping. Masked images: "
        "masked pixels black (0 before normalisation), binarised by the CASM rule."
    ),
    accumulators=(Boxes, MaskStatistics, MaskedClassification),
    box_rules=("casm",),
    box_sweep=False,
    box_geometry="casm",
    tables=(
        Table(
            "CASM paper, Table 1 (percent for OM, LE, F1, F1a; mask statistics of the continuous maps)",
            ("om_casm_own", "le_casm", "f1", "f1a", "mask_mean", "mask_std", "entropy", "total_variation"),
        ),
        Table(
            "Classification of masked images by the model (percent; CASM rule, masked pixels black)",
            ("masked_in", "masked_out", "inpainted"),
        ),
    ),
)

SALMAP = Protocol(
    name="salmap",
    statement=(
        "Protocol `salmap`: every metric, the paper-named ones by their papers' rules. Box rules "
        "are fixed (CAM: largest region above 20% of the max; CASM: the authors' binarisation, the "
        "binary area equal to the map's mean, largest 4-connected component, an empty mask a miss; "
        "GraphCut: seeds above the 95th / below the 30th percentile). OM with the model's top-1, "
        "and with each map's own classifier (a trained mapper's co-trained one). BoxAcc chooses its "
        "threshold on the other half of the images (two folds); MaxBoxAcc takes the best threshold "
        "on the images it scores, an upper bound (Choe et al. 2020). Pointing game: a hit when the "
        "peak is closer than 15 px to the object (TorchRay). Insertion starts from RISE's blur "
        "(gkern 11 x 11, sigma 5, zero padding). Sanity check: Spearman of absolute maps and of the "
        "signed attributions (Adebayo et al.), maps that turn constant counted as 0. Masked images "
        "and the coverage of evidence objects: binary masks by the CASM rule, masked pixels black "
        "(as the CASM authors). Trained mappers are scored on their raw masks."
    ),
    accumulators=(Boxes, Pointing, Causal, Evidence, MaskStatistics, MaskedClassification, Sanity),
    box_rules=("cam", "casm", "graphcut"),
    box_sweep=True,
    box_geometry="crop",
)

PROTOCOLS = {protocol.name: protocol for protocol in (CASM, SALMAP)}


def protocol(name: str) -> Protocol:
    """The protocol called `name` (casm or salmap)."""
    if name not in PROTOCOLS:
        raise SalmapError(f"unknown protocol {name!r}; use {' or '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
