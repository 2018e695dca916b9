"""The registry of saliency methods. Each explainer class registers itself with `@register`:
its name, its description (the first line of its docstring), whether it is a trained mapper, and
the settings a user may choose (`Option`s, passed to its `build`). The command line, the
evaluation, the speed benchmark and the attack all read this registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from salmap.errors import SalmapError

if TYPE_CHECKING:
    from salmap.explainers.base import Explainer

# the modules whose classes register methods, imported on first use of the registry
PROVIDERS = ("salmap.explainers", "salmap.casm")
# the (mean, std) per channel that a model's inputs were normalised with
Normalization = tuple[Sequence[float], Sequence[float]]
# how methods are grouped and listed: gradients of the input, perturbations of it, maps made from a
# layer's activations (the CAM family), and trained mappers
FAMILIES = ("gradient", "perturbation", "cam", "mapper")


@dataclass(frozen=True)
class Option:
    """A setting of a method: the constructor argument `name`, its type, default and help, and
    the value the speed benchmark uses when it differs (to bound its time), and an older option
    name the command line still accepts."""

    name: str
    type: type
    default: Any
    help: str
    speed_default: Any = None
    alias: str | None = None

    def flag(self, method: str) -> str:
        """The command line option: `--<method>-<name>`, with dashes."""
        return f"--{method}-{self.name}".replace("_", "-")


@dataclass(frozen=True)
class Method:
    """A registered method."""

    name: str
    cls: type
    description: str
    family: str
    options: tuple[Option, ...]

    @property
    def trained(self) -> bool:
        """A trained mapper, which needs a checkpoint."""
        return self.family == "mapper"

    def build(
        self,
        model: nn.Module,
        *,
        layer: Any = None,
        output_key: str | None = None,
        checkpoint: str | Path | None = None,
        reshape: Callable[[Any], Any] | None = None,
        normalization: Normalization | None = None,
        **settings: Any,
    ) -> Explainer:
        """The method's explainer for `model` with `settings` (a subset of its options);
        `normalization`, the (mean, std) of the model's inputs, reaches the methods that read it
        (`uses_normalization`, such as a black baseline)."""
        unknown = sorted(set(settings) - {option.name for option in self.options})
        if unknown:
            known = ", ".join(option.name for option in self.options) or "none"
            raise SalmapError(f"{self.name} has no setting {', '.join(unknown)} (settings: {known})")
        if normalization is not None and getattr(self.cls, "uses_normalization", False):
            settings["normalization"] = normalization
        return self.cls.build(
            model, layer=layer, output_key=output_key, checkpoint=checkpoint, reshape=reshape, **settings
        )


_REGISTRY: dict[str, Method] = {}


def register(name: str, family: str, *, options: Iterable[Option] = ()) -> Callable[[type], type]:
    """Class decorator: register an explainer class as the method `name` of a family (one of
    `FAMILIES`)."""
    if family not in FAMILIES:
        raise SalmapError(f"unknown method family {family!r}; choose from {', '.join(FAMILIES)}")

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise SalmapError(f"a method named {name!r} is already registered")
        cls.name = name
        description = (cls.__doc__ or name).strip().splitlines()[0].strip()
        _REGISTRY[name] = Method(name, cls, description, family, tuple(options))
        return cls

    return decorate


def methods() -> dict[str, Method]:
    """Every registered method by name, family by family, in registration order."""
    for provider in PROVIDERS:
        importlib.import_module(provider)
    ordered = sorted(_REGISTRY.values(), key=lambda method: FAMILIES.index(method.family))
    return {method.name: method for method in ordered}


def method(name: str) -> Method:
    """The method called `name` (case and `-` / `_` do not matter)."""
    known = methods()
    key = name.strip().lower().replace("-", "_")
    if key not in known:
        raise SalmapError(f"unknown method {name!r}; choose from {', '.join(known)}")
    return known[key]


def method_names(trained: bool | None = None) -> list[str]:
    """The registered names: all, or only the post-hoc (False) or trained (True) ones."""
    return [name for name, found in methods().items() if trained is None or found.trained == trained]


def parse_methods(spec: str, trained: bool = False) -> list[str]:
    """Method names from a comma-separated list; "all" is every post-hoc method, plus the trained
    mappers when `trained` (a checkpoint is at hand)."""
    if spec.strip() == "all":
        return method_names(False) + (method_names(True) if trained else [])
    names = [name for name in spec.split(",") if name.strip()]
    if not names:
        raise SalmapError(f"no method in {spec!r}; choose from {', '.join(methods())} or all")
    return list(dict.fromkeys(method(name).name for name in names))


def make_explainer(
    name: str,
    model: nn.Module,
    *,
    layer: Any = None,
    output_key: str | None = None,
    checkpoint: str | Path | None = None,
    reshape: Callable[[Any], Any] | None = None,
    normalization: Normalization | None = None,
    **settings: Any,
) -> Explainer:
    """The explainer of the method `name` for `model`: `layer` and `reshape` (the layer's output
    as feature maps, see `salmap.layers`) for the layer methods, `checkpoint` for the trained
    mappers (which carry their own classifier), `normalization` (mean, std) for the methods that
    read it, `settings` among the method's options (see `salmap methods`)."""
    return method(name).build(
        model,
        layer=layer,
        output_key=output_key,
        checkpoint=checkpoint,
        reshape=reshape,
        normalization=normalization,
        **settings,
    )


def trained_checkpoints(
    names: list[str], checkpoint: str | Path | None, model_name: str
) -> dict[str, str | Path]:
    """Which checkpoint each requested trained method reads: `checkpoint` for the one requested,
    or the checkpoints that ship with salmap when explaining the shipped digits classifier."""
    requested = [name for name in names if method(name).trained]
    if checkpoint is not None:
        if len(requested) != 1:
            raise SalmapError(
                f"--checkpoint goes with exactly one of the methods {', '.join(method_names(True))}"
            )
        return {requested[0]: checkpoint}
    if model_name == "digits_cnn":
        return {name: method(name).cls.shipped_checkpoint() for name in requested}
    return {}
