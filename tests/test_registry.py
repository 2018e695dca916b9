"""The method registry: one list of methods for every command, and settings checked by name."""

from __future__ import annotations

import pytest
from conftest import TinyGapNet

from salmap import SalmapError, make_explainer, method_names
from salmap.cli import build_parser, main
from salmap.cli.common import method_settings
from salmap.registry import methods, parse_methods


def test_every_command_lists_the_same_methods(capsys) -> None:
    names = method_names()
    assert main(["methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert listed == names
    assert parse_methods("all", trained=True) == names
    assert parse_methods("all") == method_names(trained=False)
    assert set(method_names(trained=True)) == {"casm", "baseline"}
    speed = build_parser().parse_args(["speed"])
    assert speed.methods == "all"


def test_names_are_normalised_and_unknown_ones_refused() -> None:
    assert parse_methods("GradCAM, guided-backprop,gradcam") == ["gradcam", "guided_backprop"]
    with pytest.raises(SalmapError, match="unknown method 'nope'; choose from gradient"):
        parse_methods("gradient,nope")
    with pytest.raises(SalmapError, match="no method"):
        parse_methods(" , ")


def test_settings_reach_the_explainer_and_unknown_settings_are_refused(tiny_net: TinyGapNet) -> None:
    smooth = make_explainer("smoothgrad", tiny_net, n=7, noise_level=0.2)
    assert smooth.n == 7 and smooth.noise_level == 0.2 and smooth.base.name == "gradient"
    assert make_explainer("cameras", tiny_net, layer="conv2", steps=3).steps == 3
    with pytest.raises(SalmapError, match="gradcam has no setting n"):
        make_explainer("gradcam", tiny_net, n=3)
    with pytest.raises(SalmapError, match="needs a trained checkpoint"):
        make_explainer("casm", tiny_net)


def test_command_line_settings_follow_the_registry() -> None:
    args = build_parser().parse_args(["explain", "x.png", "--smoothgrad-n", "9", "--scales", "3"])
    settings = method_settings(args)
    assert settings["smoothgrad"]["n"] == 9 and settings["cameras"]["steps"] == 3
    flags = {option.flag(name) for name, method in methods().items() for option in method.options}
    assert "--smoothgrad-noise-level" in flags
    speed = build_parser().parse_args(["speed"])
    assert method_settings(speed)["smoothgrad"]["n"] == 10


def test_each_registered_class_carries_its_name_and_description() -> None:
    for name, method in methods().items():
        assert method.cls.name == name
        assert method.description and "\\n" not in method.description


def test_boolean_settings_read_true_and_false() -> None:
    for text, value in (("true", True), ("no", False), ("0", False), ("On", True)):
        args = build_parser().parse_args(["explain", "x.png", "--eigencam-center", text])
        assert method_settings(args)["eigencam"]["center"] is value
    with pytest.raises(SystemExit):
        build_parser().parse_args(["explain", "x.png", "--eigencam-center", "maybe"])
