"""The `salmap` command: a thin layer over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salmap", description="Saliency maps for image classifiers.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; bad input prints one line on stderr and exits with code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SalmapError as error:
        print(f"salmap: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("salmap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
