"""Arguments and checks shared by several subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from salmap.errors import SalmapError
from salmap.explainers import Explainer
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
    """The device name, checked: CUDA only when it is available."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SalmapError(f"unknown device {name!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SalmapError("CUDA is not available on this machine; use --device cpu")
    return name


def add_method_settings(parser: argparse.ArgumentParser, speed: bool = False) -> None:
    """`--<method>-<setting>` for every setting of every registered method (see `salmap
    methods`); the speed benchmark's own defaults when `speed`."""
    group = parser.add_argument_group("method settings")
    for method in methods().values():
        for option in method.options:
            default = option.speed_default if speed and option.speed_default is not None else option.default
            shown = "the method's" if default is None else default
            flags = [option.flag(method.name)]
            group.add_argument(
                *flags,
                dest=_dest(method.name, option.name),
                type=_parser(option.type),
                default=default,
                metavar=option.type.__name__.upper(),
                help=f"{method.name}: {option.help} (default: {shown})",
            )
            if option.alias:
                group.add_argument(
                    option.alias,
                    dest=_dest(method.name, option.name),
                    type=_parser(option.type),
                    help=argparse.SUPPRESS,
                )


def _boolean(text: str) -> bool:
    """true/yes/on/1 or false/no/off/0."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser(kind: type) -> Callable[[str], Any]:
    """How the command line reads a setting of type `kind` (`bool("false")` would be True)."""
    return _boolean if kind is bool else kind


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
            layer=args.layer or loaded.target_layer,
            output_key=args.output_key,
            checkpoint=checkpoints.get(name),
            normalization=(loaded.mean, loaded.std),
            **settings.get(name, {}),
        )

    return build
