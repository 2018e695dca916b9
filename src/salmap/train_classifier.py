"""Train the digits CNN on the `single` cluttered digits (CPU, a few minutes).

Every epoch draws fresh clutter and placements for the training sources; the weights with the best
validation accuracy are kept and the test accuracy is measured once at the end. The checkpoint is
written atomically (`salmap.io`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from salmap.data.digits import DigitsSplit, build_split
from salmap.errors import SalmapError
from salmap.io import check_output_file, refuse_existing, write_atomically
from salmap.models.digits import DigitsCNN, digits_checkpoint


@dataclass
class TrainResult:
    """What training produced: the checkpoint path, accuracies, wall time and per-step losses."""

    checkpoint: Path
    val_accuracy: float
    test_accuracy: float
    seconds: float
    losses: list[float]


@torch.no_grad()
def accuracy(model: nn.Module, data: DigitsSplit, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` on a generated split (the model is left in eval mode)."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        logits = model(data.images[start : start + batch_size])
        correct += int((logits.argmax(1) == data.labels[start : start + batch_size]).sum())
    return correct / len(data)


def train_digits_classifier(
    out: str | Path,
    *,
    epochs: int = 6,
    samples_per_epoch: int = 6000,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    canvas_size: int = 64,
    val_samples: int = 1000,
    test_samples: int = 2000,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train `DigitsCNN` on the `single` train split and write the checkpoint to `out`."""
    out = check_output_file(out)
    refuse_existing([out], overwrite)
    if min(epochs, samples_per_epoch, batch_size, val_samples, test_samples) < 1:
        raise SalmapError("epochs, sample counts and batch size must be positive")
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = DigitsCNN()
    steps_per_epoch = -(-samples_per_epoch // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    val = build_split("val", val_samples, seed=seed, canvas_size=canvas_size)
    best_accuracy, best_state, losses = -1.0, None, []
    bar = tqdm(total=epochs * steps_per_epoch, desc="train digits-cnn", disable=not progress)
    for epoch in range(epochs):
        train = build_split("train", samples_per_epoch, seed=seed * 1000 + epoch, canvas_size=canvas_size)
        order = torch.randperm(len(train))
        model.train()
        for start in range(0, len(train), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(train.images[batch]), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        val_accuracy = accuracy(model, val)
        bar.write(f"epoch {epoch + 1}/{epochs}: val accuracy {val_accuracy:.4f}")
        if val_accuracy > best_accuracy:
            best_accuracy, best_state = val_accuracy, copy.deepcopy(model.state_dict())
    bar.close()
    model.load_state_dict(best_state)
    test_accuracy = accuracy(model, build_split("test", test_samples, seed=seed, canvas_size=canvas_size))
    seconds = time.perf_counter() - started
    state = digits_checkpoint(
        model,
        canvas_size,
        val_accuracy=best_accuracy,
        test_accuracy=test_accuracy,
        train_seconds=round(seconds, 1),
        seed=seed,
    )
    write_atomically(out, lambda temporary: torch.save(state, temporary))
    return TrainResult(out, best_accuracy, test_accuracy, seconds, losses)
