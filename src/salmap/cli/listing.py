"""`salmap methods` and `salmap models`: what is available, one line each."""

from __future__ import annotations

import argparse

from salmap.models import builtin_models
from salmap.registry import methods


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    methods = subparsers.add_parser("methods", help="list the saliency methods")
    methods.set_defaults(run=list_methods)
    models = subparsers.add_parser("models", help="list the models that load offline")
    models.set_defaults(run=list_models)


def list_methods(_args: argparse.Namespace) -> int:
    """One line per method (trained mappers marked), then its settings and their options."""
    listed = methods()
    width = max(len(name) for name in listed)
    for name, method in listed.items():
        trained = " [trained: needs --checkpoint]" if method.trained else ""
        print(f"{name:<{width}} {method.description}{trained}")
        for option in method.options:
            default = "" if option.default is None else f" (default: {option.default})"
            print(f"{'':<{width}}   {option.flag(name)}: {option.help}{default}")
    return 0


def list_models(_args: argparse.Namespace) -> int:
    for name, description in builtin_models().items():
        print(f"{name:<20} {description}")
    print(
        f"{'<torchvision/timm>':<20} any torchvision or timm architecture whose weights are on this machine"
    )
    print(f"{'<file.pt>':<20} a TorchScript file, or a state dict with --arch NAME")
    return 0
