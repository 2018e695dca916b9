"""Arguments and checks shared by several subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch import nn

from salmap import distributed
from salmap.cost import FORCE_ABOVE, costs
from salmap.errors import SalmapError
from salmap.explainers import Explainer
from salmap.images import pixel_limit
from salmap.models import DEFAULT_MODEL, LoadedModel
from salmap.registry import make_explainer, methods, trained_checkpoints


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model name or checkpoint file (default: {DEFAULT_MODEL}; see `salmap models`)",
    )
    parser.add_argument(
        "--arch", default=None, help="architecture of a state-dict checkpoint given as --model"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def check_device(name: str) -> str:
    """The device name, checked: one that runs a model (the CPU, or CUDA or MPS when this
    machine has it)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SalmapError(f"unknown device {name!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SalmapError("CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SalmapError(f"no GPU {device.index} on this machine: it has {torch.cuda.device_count()}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SalmapError("MPS is not available on this machine; use --device cpu")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise SalmapError(f"device {name!r} cannot run a model: use cpu or cuda")
    return name


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the commands that read image files."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="read images of up to N pixels (default: Pillow's guard against decompression bombs, "
        f"{pixel_limit() or 0:,}); larger JPEGs are read at a reduced size, others are skipped",
    )


def check_cost(explainers: dict[str, Explainer], loaded: LoadedModel, force: bool) -> None:
    """Refuse, unless `force`, a method whose settings take more than `FORCE_ABOVE` times its
    default time per image; say so on stderr when forced."""
    for cost in costs(explainers, loaded):
        if cost.ratio > FORCE_ABOVE:
            text = cost.describe(loaded.input_size)
            if not force:
                raise SalmapError(f"{text}; pass --force to run it")
            print(f"salmap: {text}", file=sys.stderr)


def add_method_settings(parser: argparse.ArgumentParser, speed: bool = False) -> None:
    """`--<method>-<setting>` for every setting of every registered method (see `salmap
    methods`); the speed benchmark's own defaults when `speed`."""
    group = parser.add_argument_group(
        "method settings",
        None
        if speed
        else "Settings that multiply the work (CAMERAS steps, SmoothGrad n, ...) are checked before "
        f"a run starts: one estimated at more than {FORCE_ABOVE:.0f}x the method's default time per "
        "image needs --force.",
    )
    for method in methods().values():
        for option in method.options:
            default = option.speed_default if speed and option.speed_default is not None else option.default
            shown = "the method's" if default is None else default
            flags = [option.flag(method.name)]
            group.add_argument(
                *flags,
                dest=_dest(method.name, option.name),
                type=_parse_bool if option.type is bool else option.type,
                default=default,
                metavar=option.type.__name__.upper(),
                help=f"{method.name}: {option.help} (default: {shown})",
            )
            if option.alias:
                group.add_argument(
                    option.alias,
                    dest=_dest(method.name, option.name),
                    type=_parse_bool if option.type is bool else option.type,
                    help=argparse.SUPPRESS,
                )


def _parse_bool(text: str) -> bool:
    """yes/no, true/false, on/off or 1/0."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def _dest(method: str, option: str) -> str:
    return f"setting__{method}__{option}"


def method_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings given on the command line, by method (those left at None are left out)."""
    settings: dict[str, dict[str, Any]] = {}
    for method in methods().values():
        for option in method.options:
            value = getattr(args, _dest(method.name, option.name), None)
            if value is not None:
                settings.setdefault(method.name, {})[option.name] = value
    return settings


def add_explainer_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that builds explainers shares, and each method's settings."""
    parser.add_argument(
        "--layer", default=None, help="target layer of the layer methods (dotted module name)"
    )
    parser.add_argument(
        "--output-key", default=None, help="field of a dict or object model output that holds the logits"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="trained checkpoint for one trained method (casm or baseline)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"run settings estimated at more than {FORCE_ABOVE:.0f}x a method's default time per image",
    )
    add_method_settings(parser)


def explainer_factory(
    args: argparse.Namespace, loaded: LoadedModel, names: list[str]
) -> Callable[[str, nn.Module], Explainer]:
    """`build(name, model)`: the method's explainer with the command line's layer, output key,
    checkpoint and settings (the model is the loaded one, or a copy of it)."""
    checkpoints = trained_checkpoints(names, args.checkpoint, loaded.name)
    settings = method_settings(args)

    def build(name: str, model: nn.Module) -> Explainer:
        return make_explainer(
            name,
            model,
            layer=args.layer,
            output_key=args.output_key,
            checkpoint=checkpoints.get(name),
            normalization=(loaded.mean, loaded.std),
            **settings.get(name, {}),
        )

    return build


def probe_batch(loaded: LoadedModel) -> torch.Tensor:
    """One black image preprocessed for the model, on its device: enough to make the choices that
    depend on the model (they depend on shapes, not on content)."""
    height, width = loaded.input_size
    device = next(loaded.model.parameters(), torch.empty(0)).device
    return loaded.preprocess(Image.new("RGB", (width, height)))[None].to(device)


def _choice_line(name: str, choices: dict[str, str]) -> str:
    words = [value if key == "reading" else f"{key} {value}" for key, value in choices.items()]
    return f"{name}: {'; '.join(words)}"


def prepare_explainers(
    explainers: dict[str, Explainer], loaded: LoadedModel, leave_out_refused: bool
) -> tuple[dict[str, Explainer], list[str]]:
    """The explainers prepared on a probe image (`Explainer.prepare`), and the lines that show the
    choices made for the user (the output field once, then each method's layer and how it is
    read; see `show`). A method that refuses the model is left out, with a line that gives its
    reason, when `leave_out_refused` (all methods were asked for); otherwise its refusal is the
    error."""
    probe = probe_batch(loaded)
    kept: dict[str, Explainer] = {}
    lines: list[str] = []
    output = None
    for name, explainer in explainers.items():
        try:
            choices = explainer.prepare(probe)
        except SalmapError as error:
            if not leave_out_refused:
                raise
            lines.append(f"{name}: left out: {error}")
            continue
        kept[name] = explainer
        output = choices.pop("output", None) or output
        if choices:
            lines.append(_choice_line(name, choices))
    if output:
        lines.insert(0, f"output: {output}")
    if not kept:
        raise SalmapError(f"none of the methods can explain {loaded.name}: {'; '.join(lines)}")
    return kept, lines


def show(lines: list[str]) -> None:
    """Print `lines` on stderr, from one process only under `torchrun`."""
    if distributed.rank() == 0:
        for line in lines:
            print(line, file=sys.stderr)
