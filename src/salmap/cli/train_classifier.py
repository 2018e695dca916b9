"""`salmap train-classifier`: train the digits CNN on the cluttered digits and save a checkpoint."""

from __future__ import annotations

import argparse

from salmap.train_classifier import train_digits_classifier


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `train-classifier` subcommand."""
    parser = subparsers.add_parser(
        "train-classifier",
        help="train the small digits CNN on the cluttered digits (CPU, a few minutes)",
        description="Train the digits CNN on the `single` cluttered digits with fresh clutter "
        "every epoch, keep the best validation weights, report the test accuracy and write the "
        "checkpoint atomically.",
    )
    parser.add_argument("--out", default="digits_cnn.pt", help="checkpoint path (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=6, help="default: %(default)s")
    parser.add_argument(
        "--samples-per-epoch",
        type=int,
        default=6000,
        help="generated images per epoch (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--canvas-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument(
        "--val-samples", type=int, default=1000, help="validation images (default: %(default)s)"
    )
    parser.add_argument("--test-samples", type=int, default=2000, help="test images (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train, print the accuracies and wall time."""
    result = train_digits_classifier(
        args.out,
        epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        canvas_size=args.canvas_size,
        val_samples=args.val_samples,
        test_samples=args.test_samples,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {result.checkpoint}: validation accuracy {result.val_accuracy:.4f}, "
        f"test accuracy {result.test_accuracy:.4f}, {result.seconds:.0f} s"
    )
    return 0
