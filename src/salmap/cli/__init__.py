"""The `salmap` command: a thin layer over the library, one module per subcommand.

Every command keeps one error contract: bad input (a SalmapError, an unusable file or an unknown
option) is one line on stderr and exit code 2; an unexpected failure is one line that names the
command, the model, the method when one was running, and the exception, and exit code 1. The
full traceback is printed only with `--debug`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from salmap.errors import SalmapError

from . import (
    attack,
    demo,
    evaluate,
    explain,
    listing,
    serve,
    speed,
    train_casm,
    train_classifier,
    visualize_class,
)

COMMANDS = (
    explain,
    demo,
    listing,
    evaluate,
    speed,
    train_classifier,
    visualize_class,
    attack,
    train_casm,
    serve,
)
DEBUG_HELP = "print the full traceback of an error"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="salmap", description="Saliency maps for image classifiers.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    for subparser in dict.fromkeys(subparsers.choices.values()):
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _first_line(error: BaseException) -> str:
    """The message's first line; for an error inside TorchScript, its last (the first one says
    only that the interpreter failed)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("The following operation failed in the TorchScript") else lines[0]


def failure_message(args: argparse.Namespace, error: Exception) -> str:
    """One line for an unexpected failure: the command, the model, the method and the error."""
    parts = [f"{args.command} failed"]
    model = getattr(args, "model", None)
    if model:
        arch = getattr(args, "arch", None)
        parts.append(f"on model {model}" + (f" ({arch})" if arch else ""))
    method = getattr(error, "salmap_method", None)
    if method:
        parts.append(f"in method {method}")
    reason = _first_line(error).removeprefix(f"{type(error).__name__}: ")
    described = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    return f"{' '.join(parts)}: {described} (--debug shows the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand under the error contract of the module's docstring."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("salmap: interrupted", file=sys.stderr)
        return 130
    except (SalmapError, OSError) as error:
        if args.debug:
            traceback.print_exc()
        method = getattr(error, "salmap_method", None)
        prefix = f"{method}: " if method and isinstance(error, SalmapError) else ""
        print(f"salmap: error: {prefix}{_first_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        print(f"salmap: error: {failure_message(args, error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
