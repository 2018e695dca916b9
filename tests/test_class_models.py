"""Class model visualisation (Simonyan et al. 2013) on a tiny CNN, and its command line."""

import pytest
import torch
from conftest import tiny_loaded
from torch import nn

from salmap.class_models import visualize_class
from salmap.cli import main
from salmap.errors import SalmapError

GREY = {"input_size": (16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def frozen(model: nn.Module) -> nn.Module:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def test_plain_mode_raises_the_class_score_monotonically(tiny_net):
    result = visualize_class(frozen(tiny_net), 2, steps=40, lr=50.0, l2=0.0, **GREY)
    history = result.history[:, 0]
    assert history.shape == (40,)
    assert bool((history.diff() >= -1e-5).all())
    assert float(result.scores[0]) > float(history[0]) + 0.01
    assert result.images.shape == (1, 3, 16, 16)
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    expected = tiny_net(result.raw).softmax(dim=-1)[0, 2]
    assert float(result.probabilities[0]) == pytest.approx(float(expected), abs=1e-5)


def test_zero_image_is_the_mean_image_for_display(tiny_net):
    result = visualize_class(frozen(tiny_net), 0, steps=1, lr=1e-9, **GREY)
    assert torch.allclose(result.images, torch.full((1, 3, 16, 16), 0.5), atol=1e-6)


@pytest.mark.parametrize("extras", [{}, {"jitter": 3, "blur_every": 2, "decay": 0.9, "clip": True}])
def test_a_batch_of_classes_equals_one_class_at_a_time(tiny_net, extras):
    model, classes = frozen(tiny_net), [3, 0, 4]
    batch = visualize_class(model, classes, steps=12, lr=0.5, l2=1e-2, seed=7, **GREY, **extras)
    for k, c in enumerate(classes):
        one = visualize_class(model, c, steps=12, lr=0.5, l2=1e-2, seed=7, **GREY, **extras)
        assert torch.allclose(batch.raw[k], one.raw[0], atol=1e-5)
        assert torch.allclose(batch.history[:, k], one.history[:, 0], atol=1e-4)
    assert batch.class_indices == classes


def test_bad_arguments_raise_salmap_errors(tiny_net):
    model = frozen(tiny_net)
    with pytest.raises(SalmapError, match="out of range"):
        visualize_class(model, 9, steps=2, **GREY)
    with pytest.raises(SalmapError, match="steps"):
        visualize_class(model, 1, steps=0, **GREY)
    with pytest.raises(SalmapError, match="eval mode"):
        visualize_class(tiny_net.train(), 1, steps=2, **GREY)


@pytest.fixture
def tiny_cli_model(monkeypatch, tiny_net):
    """`--model tiny` loads the tiny CNN."""
    monkeypatch.setattr(
        "salmap.cli.visualize_class.load", lambda name, arch=None, device="cpu": tiny_loaded(tiny_net)
    )
    return "tiny"


@pytest.mark.parametrize(
    ("label", "message"), [("goldfish", "unknown class name"), ("7", "out of range"), ("1,-2", "unknown")]
)
def test_cli_bad_class_exits_2_with_one_line(tmp_path, tiny_cli_model, capsys, label, message):
    out = tmp_path / "grid.png"
    assert main(["visualize-class", "--model", str(tiny_cli_model), "--class", label, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not out.exists()


def test_cli_refuses_to_overwrite_and_writes_with_the_flag(tmp_path, tiny_cli_model, capsys):
    out = tmp_path / "grid.png"
    out.write_bytes(b"precious")
    args = [
        "visualize-class",
        "--model",
        str(tiny_cli_model),
        "--class",
        "bee,3",
        "--out",
        str(out),
        "--steps",
        "2",
    ]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--overwrite" in error
    assert out.read_bytes() == b"precious"
    assert main([*args, "--overwrite"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "probability" in capsys.readouterr().out
