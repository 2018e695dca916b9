"""The page's only door into salmap: the model, the methods, decoding uploads, maps, boxes,
deletion and insertion curves, downloads and the results record. Every other module of
`salmap.serve` speaks HTTP or holds state, and calls the library only through `Engine`."""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from salmap.boxes import cam_rule_boxes, casm_rule_boxes
from salmap.cli.demo import PHOTOS, write_photos
from salmap.errors import SalmapError
from salmap.evaluation.columns import GROUPS
from salmap.explain import MapRecord
from salmap.explain.records import results_document
from salmap.explainers import Explainer
from salmap.images import map_to_image, overlay, to_rgb
from salmap.io import encode_png
from salmap.metrics import deletion, insertion
from salmap.models import LoadedModel, load
from salmap.models.transforms import crop_geometry
from salmap.registry import make_explainer, method_names, methods, trained_checkpoints
from salmap.targets import OutputReader

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
MAX_PIXELS = 40_000_000
VIEW_PIXELS = 640
TOP_CLASSES = 5
BOX_RULES = {"cam": "CAM rule: largest region above 20% of the max", "casm": "CASM rule: m >= mean(m)"}
COLORMAPS = ("inferno", "viridis", "magma", "turbo", "jet", "gray")


class NotAnImage(SalmapError):
    """An upload that is not an image the page can read."""


@dataclass(frozen=True)
class MethodInfo:
    """A method the page offers: its name, one-line description, family, and whether its map
    depends on the class (the trained mappers' maps do not)."""

    name: str
    description: str
    family: str
    class_dependent: bool


@dataclass(frozen=True)
class Prediction:
    """A class and the model's softmax probability for it."""

    index: int
    name: str
    probability: float


@dataclass
class Picture:
    """A decoded image with what the page shows of it: the model input `x`, its digest (the key
    of its maps), the class probabilities, and a smaller copy for the screen."""

    name: str
    image: Image.Image
    x: torch.Tensor
    digest: str
    probabilities: torch.Tensor
    view: Image.Image

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "image"


@dataclass
class ComputedMap:
    """One method's map of one image for one class, at the model's input resolution, with the
    method's settings, the choices made for the user, and how long it took."""

    method: str
    target: int | None
    saliency: torch.Tensor
    settings: dict[str, Any]
    choices: dict[str, str]
    seconds: float
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)


@dataclass
class Curves:
    """Deletion and insertion (RISE, Petsiuk et al. 2018) of one map: AUCs, curves and x axis."""

    steps: int
    deletion_auc: float
    insertion_auc: float
    deletion: list[float]
    insertion: list[float]
    fractions: list[float]
    seconds: float


def safe_name(filename: str | None) -> str:
    """The last part of a client-given file name, reduced to letters, digits, `.`, `-` and `_`
    (never a path)."""
    raw = PureWindowsPath(PurePosixPath(filename or "").name).name
    cleaned = re.sub(r"[^\w.\-]+", "_", raw).strip("._")[:80]
    return cleaned or "image"


class Engine:
    """The loaded model and its explainers, used by one computation at a time (explainers put
    hooks on the shared model for the length of a call)."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        layer: str | None = None,
        output_key: str | None = None,
        checkpoint: str | Path | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.loaded = loaded
        self.layer = layer or loaded.target_layer
        self.output_key = output_key
        self.settings = settings or {}
        self.max_pixels = max_pixels
        self.read_logits = OutputReader(output_key)
        self.device = next(loaded.model.parameters()).device
        self.checkpoints = self._checkpoints(checkpoint)
        self.methods = self._methods()
        self._explainers: dict[str, Explainer] = {}
        self.lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model: str,
        *,
        arch: str | None = None,
        device: str = "cpu",
        layer: str | None = None,
        output_key: str | None = None,
        checkpoint: str | Path | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> Engine:
        """Load `model` (see `salmap.models.load`) once, for every request."""
        loaded = load(model, arch=arch, device=device)
        return cls(loaded, layer=layer, output_key=output_key, checkpoint=checkpoint, settings=settings)

    def _checkpoints(self, checkpoint: str | Path | None) -> dict[str, str | Path]:
        """The trained mappers on offer: with `checkpoint`, each mapper that reads it (a Baseline
        needs thinning F); with the digits classifier, the shipped ones; otherwise none."""
        trained = method_names(True)
        if checkpoint is None:
            return trained_checkpoints(trained, None, self.loaded.name)
        found: dict[str, str | Path] = {}
        errors = []
        for name in trained:
            try:
                make_explainer(name, self.loaded.model, checkpoint=checkpoint)
            except SalmapError as error:
                errors.append(str(error))
                continue
            found[name] = checkpoint
        if not found:
            raise SalmapError(errors[0])
        return found

    def _methods(self) -> dict[str, MethodInfo]:
        registered = methods()
        return {
            name: MethodInfo(name, method.description, method.family, not method.trained)
            for name, method in registered.items()
            if not method.trained or name in self.checkpoints
        }

    @property
    def model_name(self) -> str:
        return self.loaded.name

    @property
    def class_names(self) -> list[str]:
        return list(self.loaded.class_names)

    def method(self, name: str) -> MethodInfo:
        """The offered method called `name`; a clear error for any other name."""
        if name not in self.methods:
            raise SalmapError(f"unknown method {name[:40]!r}; this page offers {', '.join(self.methods)}")
        return self.methods[name]

    def class_index(self, label: int | str) -> int:
        """A class index from an index or a class name."""
        return self.loaded.class_index(label)

    def colormaps(self) -> dict[str, list[list[int]]]:
        """Each colour map the page offers, sampled at 256 levels as 8-bit RGB."""
        from matplotlib import colormaps

        levels = np.linspace(0.0, 1.0, 256)
        return {
            name: np.rint(colormaps[name](levels)[:, :3] * 255).astype(int).tolist() for name in COLORMAPS
        }

    @staticmethod
    def report_groups() -> dict[str, str]:
        """The titles of the evaluation's table groups (the columns of metrics.json name them)."""
        return dict(GROUPS)

    # images

    def decode(self, data: bytes, name: str) -> Image.Image:
        """An uploaded file as 8-bit RGB (EXIF rotation applied); one clear error for an empty
        file, a file that is not a JPEG, PNG, WebP, BMP or TIFF image, one over `max_pixels`,
        and a truncated or damaged one. Nothing is written to disk."""
        if not data:
            raise NotAnImage(f"{name} is empty")
        limit = f"the limit is {self.max_pixels / 1e6:g} megapixels"
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    raise NotAnImage(
                        f"{name} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); {limit}"
                    )
                image.load()
                return to_rgb(image)
        except NotAnImage:
            raise
        except Image.DecompressionBombError:
            raise NotAnImage(f"{name} is too large to open; {limit}") from None
        except UnidentifiedImageError:
            raise NotAnImage(
                f"{name} is not an image in a format this page reads (JPEG, PNG, WebP, BMP, TIFF)"
            ) from None
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise NotAnImage(f"{name} could not be decoded: it is truncated or damaged ({reason})") from None

    def picture(self, image: Image.Image, name: str) -> Picture:
        """Prepare an RGB image for the page: the model input, its digest, the probabilities of
        every class (one forward pass) and the screen copy."""
        x = self.loaded.preprocess(image).unsqueeze(0).to(self.device)
        digest = hashlib.sha256(x.detach().cpu().float().numpy().tobytes()).hexdigest()
        with self.lock, torch.no_grad():
            logits = self.read_logits(self.loaded.model(x))
        probabilities = logits.float().softmax(dim=-1)[0].cpu()
        view = image.copy()
        view.thumbnail((VIEW_PIXELS, VIEW_PIXELS), Image.Resampling.LANCZOS)
        return Picture(name, image, x, digest, probabilities, view)

    def top_classes(self, picture: Picture, count: int = TOP_CLASSES) -> list[Prediction]:
        """The model's `count` most probable classes."""
        indices = picture.probabilities.topk(min(count, picture.probabilities.numel())).indices
        return [self.prediction(picture, int(i)) for i in indices.tolist()]

    def prediction(self, picture: Picture, index: int) -> Prediction:
        """Class `index` with its name and probability for `picture`."""
        return Prediction(index, self.loaded.class_names[index], float(picture.probabilities[index]))

    def sample_photos(self) -> dict[str, Image.Image]:
        """The demo's photos (scikit-image's), by name, read once from a temporary folder."""
        with tempfile.TemporaryDirectory() as folder:
            paths = write_photos(Path(folder))
            photos = {}
            for name, path in zip(PHOTOS, paths, strict=True):
                with Image.open(path) as photo:
                    photos[name] = photo.convert("RGB")
        return photos

    # maps

    def map_key(self, picture: Picture, method: str, target: int | None) -> tuple:
        """What a map depends on: the model input, the model, the method, the class (not for the
        trained mappers) and the settings."""
        info = self.method(method)
        settings = tuple(sorted(self.settings.get(method, {}).items()))
        chosen = target if info.class_dependent else None
        return (picture.digest, self.model_name, method, chosen, settings, self.layer, self.output_key)

    def _explainer(self, method: str) -> Explainer:
        if method not in self._explainers:
            self._explainers[method] = make_explainer(
                method,
                self.loaded.model,
                layer=self.layer,
                output_key=self.output_key,
                checkpoint=self.checkpoints.get(method),
                **self.settings.get(method, {}),
            )
        return self._explainers[method]

    def explain(self, picture: Picture, method: str, target: int) -> ComputedMap:
        """`method`'s map of `picture` for class `target`, with its CAM-rule and CASM-rule boxes
        in the image's pixels."""
        info = self.method(method)
        with self.lock:
            explainer = self._explainer(method)
            started = time.perf_counter()
            saliency = explainer(picture.x, target)[0].detach().float().cpu()
            seconds = time.perf_counter() - started
            choices = explainer.choices()
            settings = explainer.settings()
        computed = ComputedMap(
            method, target if info.class_dependent else None, saliency, settings, choices, seconds
        )
        computed.boxes = self._boxes(picture, saliency)
        return computed

    def _boxes(self, picture: Picture, saliency: torch.Tensor) -> dict[str, tuple[int, int, int, int]]:
        """Each box rule's box on the map at the model's resolution (as the evaluation computes
        them), carried back through the centre crop to the image's pixels."""
        height, width = picture.image.height, picture.image.width
        (resized_h, resized_w), (top, left) = crop_geometry(
            (height, width), self.loaded.resize, self.loaded.input_size
        )
        scale_x, scale_y = width / resized_w, height / resized_h
        found = {"cam": cam_rule_boxes(saliency[None])[0], "casm": casm_rule_boxes(saliency[None])[0]}
        boxes = {}
        for rule, (x0, y0, x1, y1) in found.items():
            boxes[rule] = (
                max(0, min(width, round((int(x0) + left) * scale_x))),
                max(0, min(height, round((int(y0) + top) * scale_y))),
                max(0, min(width, round((int(x1) + left) * scale_x))),
                max(0, min(height, round((int(y1) + top) * scale_y))),
            )
        return boxes

    def view_map(self, picture: Picture, computed: ComputedMap) -> np.ndarray:
        """The map at the screen copy's size, float32 in [0, 1]."""
        size = (picture.view.height, picture.view.width)
        return map_to_image(computed.saliency, size, self.loaded.resize, self.loaded.input_size)

    def full_map(self, picture: Picture, computed: ComputedMap) -> np.ndarray:
        """The map at the image's size, float32 in [0, 1], 0 outside the model's centre crop (as
        `explain` writes it)."""
        size = (picture.image.height, picture.image.width)
        return map_to_image(computed.saliency, size, self.loaded.resize, self.loaded.input_size)

    def map_npy(self, picture: Picture, computed: ComputedMap) -> bytes:
        """The map at the image's size as a `.npy` file."""
        buffer = io.BytesIO()
        np.save(buffer, self.full_map(picture, computed))
        return buffer.getvalue()

    def overlay_png(self, picture: Picture, computed: ComputedMap, alpha: float, colormap: str) -> bytes:
        """The image with its map blended on top (`salmap.overlay`) at the image's size, as PNG."""
        if colormap not in COLORMAPS:
            raise SalmapError(f"unknown colour map {colormap[:40]!r}; choose from {', '.join(COLORMAPS)}")
        if not 0.0 <= alpha <= 1.0:
            raise SalmapError(f"opacity must be in [0, 1], got {alpha}")
        return encode_png(overlay(picture.image, self.full_map(picture, computed), alpha, colormap))

    def curves(self, picture: Picture, computed: ComputedMap, target: int, steps: int | None) -> Curves:
        """Deletion and insertion of `computed`'s map for class `target` with the loaded model;
        `steps` changes of ceil(H*W / steps) pixels (None: the input height, RISE's default)."""
        maps = computed.saliency[None].to(self.device)
        with self.lock:
            started = time.perf_counter()
            removed = deletion(self.loaded.model, picture.x, maps, target, steps=steps)
            revealed = insertion(self.loaded.model, picture.x, maps, target, steps=steps)
            seconds = time.perf_counter() - started
        return Curves(
            steps=len(removed.fractions) - 1,
            deletion_auc=float(removed.auc[0]),
            insertion_auc=float(revealed.auc[0]),
            deletion=[round(v, 5) for v in removed.curve[0].tolist()],
            insertion=[round(v, 5) for v in revealed.curve[0].tolist()],
            fractions=[round(v, 5) for v in removed.fractions.tolist()],
            seconds=seconds,
        )

    def results(
        self,
        picture: Picture,
        computed: list[ComputedMap],
        target: int,
        files: dict[str, tuple[str, str]],
        curves: dict[str, Curves],
    ) -> dict[str, Any]:
        """`results.json` as `explain` writes it (model, versions, choices, records), each record
        with its boxes in image pixels and, where computed, its deletion and insertion AUCs."""
        shown = self.prediction(picture, target)
        records = [
            MapRecord(
                image=picture.name,
                method=item.method,
                target=shown.index,
                target_name=shown.name,
                score=round(shown.probability, 6),
                map=files[item.method][0],
                overlay=files[item.method][1],
                settings=item.settings,
                choices=item.choices,
            )
            for item in computed
        ]
        document = results_document(
            self.model_name, records, [], {item.method: item.choices for item in computed}
        )
        for record, item in zip(document["records"], computed, strict=True):
            record["boxes"] = {f"{rule}_rule": list(box) for rule, box in item.boxes.items()}
            if item.method in curves:
                found = curves[item.method]
                record["deletion_auc"] = round(found.deletion_auc, 6)
                record["insertion_auc"] = round(found.insertion_auc, 6)
                record["curve_steps"] = found.steps
        return document
