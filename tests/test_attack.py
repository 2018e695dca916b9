"""Targeted PGD with saliency-weighted steps on a tiny CNN, and the `salmap attack` command."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_loaded
from PIL import Image

from salmap.attack import attack_maps, attack_report, focus_weights, pgd, random_map
from salmap.cli import main
from salmap.errors import SalmapError

PLAIN = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(tiny_net):
    for parameter in tiny_net.parameters():
        parameter.requires_grad_(False)
    return tiny_net


@pytest.fixture
def x():
    torch.manual_seed(3)
    return (torch.rand(3, 3, 16, 16) - 0.5) / 0.25


def pixels(images):
    return images * 0.25 + 0.5


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.03), ("l2", 0.4)])
@pytest.mark.parametrize("guided", [False, True])
def test_stays_in_the_eps_ball_and_the_valid_range(model, x, norm, eps, guided):
    saliency = (
        random_map(3, (16, 16), cells=4, generator=torch.Generator().manual_seed(0)) if guided else None
    )
    result = pgd(
        model,
        x,
        eps=eps,
        steps=25,
        step_size=eps / 3,
        norm=norm,
        saliency=saliency,
        focus=2.0,
        early_stop=False,
        **PLAIN,
    )
    length = result.l2 if norm == "l2" else result.linf
    assert bool((length <= eps + 1e-5).all()) and bool((length > 0).all())
    adversarial = pixels(result.adversarial)
    assert float(adversarial.min()) >= -1e-6 and float(adversarial.max()) <= 1 + 1e-6
    assert torch.allclose(adversarial - pixels(x), result.perturbation, atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_reaches_the_least_likely_class_and_stops_there(model, x, norm):
    least = model(x).argmin(dim=-1)
    eps, step = (0.5, 0.02) if norm == "linf" else (20.0, 0.3)
    result = pgd(model, x, eps=eps, steps=300, step_size=step, norm=norm, **PLAIN)
    assert torch.equal(result.target, least)
    assert bool(result.success.all())
    assert torch.equal(model(result.adversarial).argmax(dim=-1), least)
    assert bool((result.iterations > 0).all()) and bool((result.iterations < 300).all())


def test_a_zero_saliency_map_leaves_the_image_unchanged(model, x):
    result = pgd(model, x, steps=10, saliency=torch.zeros(3, 16, 16), **PLAIN)
    assert torch.equal(result.adversarial, x)
    assert float(result.perturbation.abs().max()) == 0
    assert not bool(result.success.any()) and bool((result.iterations == 10).all())


def test_the_perturbation_concentrates_where_the_map_is_high(model, x):
    saliency = torch.zeros(3, 16, 16)
    saliency[:, 4:8, 4:8] = 1.0
    saliency[:, 10:, 10:] = 0.5
    result = pgd(model, x, steps=5, step_size=0.01, saliency=saliency, focus=50.0, early_stop=False, **PLAIN)
    moved = result.perturbation.abs().amax(dim=1)
    assert float(moved[:, 4:8, 4:8].min()) > 0
    assert float(moved[:, 10:, 10:].max()) < 1e-10
    assert float(moved[:, :4].max()) == 0


def test_focus_weights_form():
    saliency = torch.tensor([[[0.0, 0.5, 2.0]], [[0.0, 0.0, 0.0]]])
    weights = focus_weights(saliency, 2.0)
    assert weights.shape == (2, 1, 1, 3)
    assert torch.allclose(weights[0, 0, 0], torch.tensor([0.0, 0.0625, 1.0]))
    assert float(weights[1].abs().max()) == 0
    with pytest.raises(SalmapError, match="focus"):
        focus_weights(saliency, 0.0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_batch_equals_its_images_one_by_one(model, x, norm):
    model, x = model.double(), x.double()
    saliency = random_map(3, (16, 16), cells=4, generator=torch.Generator().manual_seed(1)).double()
    eps, step = (0.3, 0.02) if norm == "linf" else (8.0, 0.3)
    batch = pgd(model, x, eps=eps, step_size=step, steps=60, norm=norm, saliency=saliency, focus=3.0, **PLAIN)
    for i in range(3):
        one = pgd(
            model,
            x[i : i + 1],
            eps=eps,
            step_size=step,
            steps=60,
            norm=norm,
            saliency=saliency[i : i + 1],
            focus=3.0,
            **PLAIN,
        )
        assert torch.allclose(batch.adversarial[i], one.adversarial[0], atol=1e-9)
        assert int(batch.iterations[i]) == int(one.iterations[0])
        assert bool(batch.success[i]) == bool(one.success[0])


def test_report_compares_each_method_with_plain_pgd(model, x):
    settings = {"eps": 0.5, "steps": 200, "step_size": 0.02, **PLAIN}
    results = {
        m: pgd(model, x, saliency=attack_maps(model, x, m), focus=1.0, **settings)
        for m in ("none", "random", "gradient")
    }
    report = attack_report(results, ["a", "b", "c"])
    plain = report["aggregate"]["none"]
    assert plain["success_rate"] == 1.0 and plain["l2_ratio"] == pytest.approx(1.0)
    first = report["images"][0]["methods"]["random"]
    assert first["l2_ratio"] == pytest.approx(first["l2"] / report["images"][0]["methods"]["none"]["l2"])
    assert set(report["aggregate"]) == {"none", "random", "gradient"}


def test_bad_arguments_raise_salmap_errors(model, x):
    with pytest.raises(SalmapError, match="norm"):
        pgd(model, x, norm="l1", **PLAIN)
    with pytest.raises(SalmapError, match="least_likely"):
        pgd(model, x, target="most_likely", **PLAIN)
    with pytest.raises(SalmapError, match="saliency must have shape"):
        pgd(model, x, saliency=torch.ones(2, 16, 16), **PLAIN)
    with pytest.raises(SalmapError, match="out of range"):
        pgd(model, x, target=7, **PLAIN)
    with pytest.raises(SalmapError, match="unknown attack method"):
        attack_maps(model, x, "lime")


@pytest.fixture
def tiny_cli_model(monkeypatch, tiny_net):
    """`--model tiny` loads the tiny CNN."""
    monkeypatch.setattr("salmap.cli.attack.load", lambda name, arch=None, device="cpu": tiny_loaded(tiny_net))
    return "tiny"


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_writes_figure_and_numbers(tmp_path, tiny_cli_model, photo, capsys):
    out = tmp_path / "out"
    args = [
        "attack",
        str(photo),
        "--model",
        str(tiny_cli_model),
        "--method",
        "gradient,random",
        "--out",
        str(out),
        "--steps",
        "3",
        "--eps",
        "0.1",
    ]
    assert main(args) == 0
    report = json.loads((out / "attack.json").read_text())
    assert set(report["aggregate"]) == {"none", "gradient", "random"}
    assert report["images"][0]["image"] == "photo"
    assert (out / "attack.png").read_bytes()[:4] == b"\x89PNG"
    assert "L2/plain" in capsys.readouterr().out
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--overwrite" in error


@pytest.mark.parametrize(
    ("extra", "message"), [(["--method", "lime"], "unknown method"), (["missing.png"], "no such file")]
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, tiny_cli_model, photo, capsys, extra, message):
    args = ["attack", str(photo), *extra, "--model", str(tiny_cli_model), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
