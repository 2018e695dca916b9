"""Small models shared by the tests: fast on two CPU cores, with known structure."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from salmap.models import LoadedModel
from salmap.models.transforms import classifier_transform


class TinyGapNet(nn.Module):
    """conv - functional relu - conv - ReLU (module, in-place) - GAP - linear: CAM applies."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and do not fight other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_net() -> TinyGapNet:
    torch.manual_seed(0)
    return TinyGapNet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 3, 16, 16)


def tiny_loaded(model: nn.Module) -> LoadedModel:
    """The tiny CNN as `salmap.models.load` would return it: 16 px input, five named classes."""
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(
        name="tiny",
        model=model.eval(),
        preprocess=classifier_transform(None, (16, 16), mean, std),
        input_size=(16, 16),
        class_names=["ant", "bee", "cat", "dog", "eel"],
        target_layer="conv2",
        mean=mean,
        std=std,
    )


def unprivileged(command: list[str]) -> list[str]:
    """`command` run without root's power to ignore file permissions: as it is for an ordinary
    user; for root, as an ordinary user of a user namespace (unshare), or the test is skipped."""
    if os.geteuid() != 0:
        return command
    wrapper = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    if shutil.which("unshare") is None or subprocess.run([*wrapper, "true"], check=False).returncode != 0:
        pytest.skip("root here, and no user namespace to drop its rights")
    return [*wrapper, *command]
