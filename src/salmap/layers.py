"""Target layers: finding one, reading its output as feature maps `(B, C, h, w)`, and capturing
its activations (and the gradients of a score with respect to them, the backward pass stopping at
the layer).

A layer's output is read as
- feature maps `(B, C, h, w)`, PyTorch's layout (CNNs; ConvNeXt and MaxViT stage outputs);
- channels-last maps `(B, h, w, C)` (Swin blocks and norms in timm and torchvision), permuted;
- tokens `(B, N, C)` (ViT, DeiT, BEiT, EVA): the prefix tokens (class, distillation, register
  tokens) are dropped and the others laid out on the patch grid, both taken from the model
  (timm's `patch_embed` and `num_prefix_tokens`, torchvision's `image_size` and `patch_size`).
  Only for a model that states neither is the grid inferred: the one grid of square patches that
  tiles the input exactly after at most 8 prefix tokens, and the reading says so; with none or
  several such grids the layer is refused.
Which of the first two a 4-D output is follows from the input's aspect ratio (the spatial sides
of a feature map have it) and, where both fit, from the layer's own modules (a convolution or
batch norm over dimension 1, a LayerNorm or Linear over the last one); a tie is PyTorch's layout.
A layer that reads as none of them is refused; a user's `reshape(output) -> (B, C, h, w)`
replaces the reading for models salmap cannot understand. Like pytorch-grad-cam's
`reshape_transform` it must only select and rearrange values: the gradients go through it too,
so they are the gradients of the reshaped activations.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision
from torch import nn

from salmap.errors import SalmapError

LayerSpec = str | nn.Module | None
Reshape = Callable[[torch.Tensor], torch.Tensor]

# the most prefix tokens a grid is inferred behind (a class token, a distillation token, registers)
MAX_PREFIX_TOKENS = 8
# the spatial sides of a feature map have the input's aspect ratio within this factor
ASPECT_TOLERANCE = 2.0


@dataclass(frozen=True)
class Reading:
    """How a layer's output becomes feature maps `(B, C, h, w)`: `kind` is "maps" (already),
    "channels_last" (permuted), "tokens" (`prefix` tokens dropped, the rest laid out on `grid`,
    which came from `source`) or "custom" (the user's `reshape`)."""

    kind: str
    grid: tuple[int, int] | None = None
    prefix: int = 0
    source: str = ""
    reshape: Reshape | None = None

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if self.kind == "maps":
            return output
        if self.kind == "channels_last":
            return output.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            height, width = self.grid
            tokens = output[:, self.prefix :]
            return tokens.transpose(1, 2).reshape(output.shape[0], output.shape[2], height, width)
        maps = self.reshape(output)
        if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != output.shape[0]:
            shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
            raise SalmapError(f"reshape must return feature maps (B, C, h, w) for a batch of B, got {shape}")
        return maps

    def describe(self, shape: tuple[int, ...]) -> str:
        """How an output of `shape` is read, in words ("" for feature maps)."""
        if self.kind == "maps":
            return ""
        dims = _dims(shape)
        if self.kind == "channels_last":
            return f"channels-last {dims} read as {shape[3]} channels on {shape[1]}x{shape[2]}"
        if self.kind == "tokens":
            tokens = "token" if self.prefix == 1 else "tokens"
            after = f" after {self.prefix} prefix {tokens}" if self.prefix else ""
            return f"tokens {dims} read as a {self.grid[0]}x{self.grid[1]} grid{after} ({self.source})"
        return f"{dims} read by the given reshape"


def _aspect_error(height: int, width: int, size: tuple[int, int]) -> float:
    """|log| of the ratio between the aspect of an h x w grid and the input's."""
    return abs(math.log((height / width) / (size[0] / size[1])))


def _exact_grid(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether an h x w grid of at least two cells tiles the input exactly with square patches
    of one integer size."""
    return (
        height * width > 1
        and size[0] % height == 0
        and size[1] % width == 0
        and size[0] // height == size[1] // width
    )


def _dims(shape: tuple[int, ...]) -> str:
    return "(B, " + ", ".join(str(side) for side in shape[1:]) + ")"


def _layout_evidence(module: nn.Module, channels_first: int, channels_last: int) -> tuple[bool, bool]:
    """Whether `module` or its children act on dimension 1 with `channels_first` channels
    (convolutions, batch or group norms) and on the last dimension with `channels_last` (LayerNorm
    or Linear)."""
    first = last = False
    for part in module.modules():
        if isinstance(part, nn.Conv2d):
            first |= part.out_channels == channels_first
        elif isinstance(part, nn.BatchNorm2d):
            first |= part.num_features == channels_first
        elif isinstance(part, nn.GroupNorm):
            first |= part.num_channels == channels_first
        elif isinstance(part, nn.LayerNorm) and not type(part).__name__.endswith("2d"):
            last |= tuple(part.normalized_shape) == (channels_last,)
        elif isinstance(part, nn.Linear):
            last |= part.out_features == channels_last
    return first, last


def _map_reading(module: nn.Module, shape: tuple[int, ...], size: tuple[int, int]) -> Reading:
    _, a, b, c = shape
    limit = math.log(ASPECT_TOLERANCE)
    first_fits = b * c > 1 and _aspect_error(b, c, size) <= limit
    last_fits = a * b > 1 and _aspect_error(a, b, size) <= limit
    if first_fits and last_fits:
        first, last = _layout_evidence(module, a, c)
        if first != last:
            return Reading("channels_last" if last else "maps")
        return Reading("channels_last" if _aspect_error(a, b, size) < _aspect_error(b, c, size) else "maps")
    if first_fits or last_fits:
        return Reading("maps" if first_fits else "channels_last")
    raise SalmapError(
        f"neither (B, C, h, w) nor (B, h, w, C) has the input's aspect ratio {size[0]}x{size[1]}"
    )


def _timm_grid(embed: nn.Module, size: tuple[int, int]) -> tuple[int, int] | None:
    if hasattr(embed, "dynamic_feat_size"):
        with contextlib.suppress(Exception):
            return tuple(int(side) for side in embed.dynamic_feat_size(size))
    patch = getattr(embed, "patch_size", None)
    if isinstance(patch, int):
        patch = (patch, patch)
    if isinstance(patch, (tuple, list)) and len(patch) == 2:
        return size[0] // int(patch[0]), size[1] // int(patch[1])
    return None


def patch_grid(model: nn.Module, size: tuple[int, int]) -> tuple[tuple[int, int], int | None, str] | None:
    """The patch grid a vision transformer lays an input of `size` (h, w) on, its number of
    prefix tokens (None when the model does not say), and where both came from; None for a model
    without a patch embedding that salmap knows."""
    for module in model.modules():
        if isinstance(module, torchvision.models.VisionTransformer):
            patch = module.patch_size
            return (size[0] // patch, size[1] // patch), 1, "torchvision image and patch size"
        embed = getattr(module, "patch_embed", None)
        if isinstance(embed, nn.Module):
            grid = _timm_grid(embed, size)
            if grid is not None:
                prefix = getattr(module, "num_prefix_tokens", None)
                return grid, None if prefix is None else int(prefix), "timm patch_embed"
    return None


def _token_reading(model: nn.Module, tokens: int, size: tuple[int, int]) -> Reading:
    stated = patch_grid(model, size)
    if stated is not None:
        (height, width), prefix, source = stated
        prefixes = [prefix] if prefix is not None else range(MAX_PREFIX_TOKENS + 1)
        for count in prefixes:
            if tokens == count + height * width:
                return Reading("tokens", (height, width), count, source)
        # the later stages of a hierarchical model: the patch grid halved k times, no prefix
        for k in range(1, 6):
            grid = (math.ceil(height / 2**k), math.ceil(width / 2**k))
            if tokens == grid[0] * grid[1]:
                return Reading("tokens", grid, 0, f"{source}, stride x{2**k}")
        count = "" if prefix is None else f" after {prefix} prefix tokens"
        raise SalmapError(f"{tokens} tokens do not fit the model's {height}x{width} patch grid{count}")
    found = [
        (count, (height, (tokens - count) // height))
        for count in range(min(MAX_PREFIX_TOKENS, tokens - 1) + 1)
        for height in range(1, tokens - count + 1)
        if (tokens - count) % height == 0 and _exact_grid(height, (tokens - count) // height, size)
    ]
    if len(found) != 1:
        raise SalmapError(
            f"the model states no patch grid and {'no' if not found else 'more than one'} grid of the "
            f"input's aspect ratio fits {tokens} tokens"
        )
    count, grid = found[0]
    return Reading("tokens", grid, count, "grid inferred from the token count")


def read_output(
    model: nn.Module, module: nn.Module, shape: tuple[int, ...], batch: int, size: tuple[int, int]
) -> Reading:
    """How the output of `module` (of `shape`, for a batch of `batch` inputs of `size` (h, w))
    becomes feature maps (see the module's docstring); a SalmapError says why it cannot."""
    if len(shape) not in (3, 4):
        raise SalmapError(f"a {len(shape)}-D output {shape} has no spatial positions")
    if shape[0] != batch:
        raise SalmapError(f"its first dimension is not the batch of {batch} (windows or heads?)")
    if len(shape) == 4:
        return _map_reading(module, shape, size)
    return _token_reading(model, shape[1], size)


def reading_for(
    model: nn.Module, module: nn.Module, output: Any, x: torch.Tensor, reshape: Reshape | None = None
) -> Reading:
    """The reading of `module`'s `output` for the input `x`: the user's `reshape` when given,
    else `read_output`; a SalmapError names the layer and says what to do."""
    if reshape is not None:
        return Reading("custom", reshape=reshape)
    if not isinstance(output, torch.Tensor):
        raise SalmapError(f"layer {layer_name(model, module)} returns {type(output).__name__}, not a tensor")
    try:
        return read_output(model, module, tuple(output.shape), x.shape[0], (x.shape[-2], x.shape[-1]))
    except SalmapError as error:
        raise SalmapError(
            f"cannot read layer {layer_name(model, module)}'s output {_dims(tuple(output.shape))} as feature "
            f"maps: {error}; choose another layer, or pass reshape= to turn it into (B, C, h, w)"
        ) from None


def layer_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of `module` in `model` ("(model)" for the model itself)."""
    return next((name or "(model)" for name, part in model.named_modules() if part is module), "(unnamed)")


@dataclass
class _Run:
    """A module's part in one forward pass: when it started and finished (in call order), how
    often it ran, and its last output's shape (None when not a tensor)."""

    module: nn.Module
    start: int = -1
    finish: int = -1
    calls: int = 0
    shape: tuple[int, ...] | None = None


def _probe(model: nn.Module, x: torch.Tensor) -> dict[str, _Run]:
    """Every named module's run in one no-grad forward pass of the first image of `x`."""
    order = itertools.count()
    runs = {name: _Run(module) for name, module in model.named_modules() if name}
    handles = []
    for run in runs.values():

        def started(_module: nn.Module, _inputs: object, run: _Run = run) -> None:
            if run.start < 0:
                run.start = next(order)

        def finished(_module: nn.Module, _inputs: object, output: object, run: _Run = run) -> None:
            run.finish = next(order)
            run.calls += 1
            run.shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        handles.append(run.module.register_forward_pre_hook(started))
        handles.append(run.module.register_forward_hook(finished))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return runs


def _readable(model: nn.Module, run: _Run, size: tuple[int, int]) -> Reading | None:
    if run.calls != 1 or run.shape is None:
        return None
    try:
        return read_output(model, run.module, run.shape, 1, size)
    except SalmapError:
        return None


def _grid(reading: Reading, shape: tuple[int, ...]) -> tuple[int, int]:
    if reading.kind == "tokens":
        return reading.grid
    return (shape[1], shape[2]) if reading.kind == "channels_last" else (shape[2], shape[3])


def _last_spatial(model: nn.Module, runs: dict[str, _Run], size: tuple[int, int]) -> str:
    spatial = [name for name, run in runs.items() if _readable(model, run, size) is not None]
    if not spatial:
        raise SalmapError(
            "found no layer whose output reads as feature maps (B, C, h, w), channels-last maps or "
            "patch tokens; name a target layer"
        )
    return max(spatial, key=lambda name: runs[name].finish)


def find_last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The dotted name of the last module, in order of completion, that runs once per forward
    pass and whose output reads as feature maps larger than 1x1 (one no-grad forward pass): the
    input of the global pooling in a CNN or a Swin, the final norm in a ViT."""
    return _last_spatial(model, _probe(model, x), (x.shape[-2], x.shape[-1]))


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def find_target_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer Grad-CAM-style methods read by default (one no-grad forward pass).

    In a transformer (a model with attention modules whose last block reads tokens or
    channels-last maps): the normalisation before the last block's attention, `blocks.11.norm1`
    in a timm ViT, DeiT, BEiT or EVA, `layers.3.blocks.1.norm1` in a timm Swin,
    `encoder.layers.encoder_layer_11.ln_1` in torchvision's ViT: the layer pytorch-grad-cam's
    documentation recommends. After the last attention the class token no longer reads the
    other tokens, so a layer after it carries no gradient at the patches of a class-token model.
    The norm must run once per pass on the same grid as the last spatial layer. Otherwise (CNNs,
    and models whose last attention reads windows, such as torchvision's MaxViT): the last
    spatial layer (`find_last_spatial_layer`).
    """
    size = (x.shape[-2], x.shape[-1])
    runs = _probe(model, x)
    last = _last_spatial(model, runs, size)
    attentions = [name for name, run in runs.items() if run.start >= 0 and _is_attention(run.module)]
    if not attentions:
        return last
    attention = max(attentions, key=lambda name: runs[name].start)
    block = attention.rpartition(".")[0]
    last_grid = _grid(_readable(model, runs[last], size), runs[last].shape)
    norms = []
    for name, run in runs.items():
        inside = not block or name.startswith(block + ".")
        if not inside or name == attention or name.startswith(attention + "."):
            continue
        if "Norm" not in type(run.module).__name__ or not 0 <= run.finish < runs[attention].start:
            continue
        reading = _readable(model, run, size)
        if reading is not None and reading.kind != "maps" and _grid(reading, run.shape) == last_grid:
            norms.append(name)
    return max(norms, key=lambda name: runs[name].finish) if norms else last


def resolve_layer(
    model: nn.Module,
    layer: LayerSpec,
    x: torch.Tensor,
    find: Callable[[nn.Module, torch.Tensor], str] = find_target_layer,
) -> tuple[str, nn.Module]:
    """The (name, module) for a dotted name, a module of `model`, or None (found by `find`)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise SalmapError(
            "TorchScript models take no hooks, so layer methods cannot read them; "
            "load the model as an nn.Module (a state dict with --arch)"
        )
    modules = dict(model.named_modules())
    if layer is None:
        name = find(model, x)
        return name, modules[name]
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise SalmapError("the target layer module is not part of the model")
    if layer not in modules:
        raise SalmapError(f"the model has no layer named {layer!r}")
    return layer, modules[layer]


@dataclass
class Capture:
    """The activations of a layer in the last forward pass, made a leaf that gradients reach."""

    activations: list[torch.Tensor] = field(default_factory=list)

    @property
    def value(self) -> torch.Tensor:
        if not self.activations:
            raise SalmapError("the target layer did not run in the forward pass")
        return self.activations[-1]


@contextlib.contextmanager
def capture_layer(module: nn.Module) -> Iterator[Capture]:
    """Record `module`'s output as a leaf tensor that requires grad, and stop autograd below it.

    The model goes on with a copy of the leaf, so in-place operations after the layer work.

    The forward pass runs without recording a graph up to the layer and with one after it, so a
    backward pass from the score ends at the layer: nothing below it is differentiated.
    """
    capture = Capture()

    def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise SalmapError(f"the target layer returns {type(output).__name__}, not a tensor")
        torch.set_grad_enabled(True)
        leaf = output.detach().requires_grad_(True)
        capture.activations.append(leaf)
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    previous = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    try:
        yield capture
    finally:
        torch.set_grad_enabled(previous)
        handle.remove()


def layer_activations_and_gradients(
    model: nn.Module,
    module: nn.Module,
    x: torch.Tensor,
    score: Callable[[Any], torch.Tensor],
    reshape: Reshape | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """A = the layer's activations as feature maps `(B, C, h, w)`, G = d score / dA (the
    backward pass stopped at the layer; G goes through the same reading as A) and the model's
    output, for one forward pass of `x`; `score(output)` gives one score per image. Refused when
    the score does not depend on the layer's positions (G is zero everywhere)."""
    with capture_layer(module) as capture:
        output = model(x)
    scores = score(output)
    raw = capture.value
    reading = reading_for(model, module, raw, x, reshape)
    gradients = None
    if scores.requires_grad:
        (gradients,) = torch.autograd.grad(scores.sum(), raw, allow_unused=True)
    if gradients is None:
        raise SalmapError(f"the score does not depend on layer {layer_name(model, module)}")
    gradients = reading(gradients)
    if not bool(gradients.any()):
        raise SalmapError(
            f"the score's gradient is zero at every position of layer {layer_name(model, module)}: "
            "it does not read them (in a class-token transformer, choose a layer before the last "
            "attention, such as the last block's norm1)"
        )
    return reading(raw.detach()), gradients, output


def layer_activations(
    model: nn.Module, module: nn.Module, x: torch.Tensor, reshape: Reshape | None = None
) -> tuple[torch.Tensor, Any]:
    """The layer's activations as feature maps `(B, C, h, w)` and the model's output, for one
    forward pass of `x` without autograd (for methods that need no gradient)."""
    outputs: list[Any] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        handle.remove()
    if not outputs:
        raise SalmapError("the target layer did not run in the forward pass")
    return reading_for(model, module, outputs[-1], x, reshape)(outputs[-1]), output
