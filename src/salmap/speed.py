"""Speed and memory of every method against its arithmetic floor and against peer libraries,
measured in one process so that the ratios hold on a noisy machine (`salmap speed`)."""

from __future__ import annotations

import copy
import functools
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from salmap.casm.adapters import adapt
from salmap.casm.mapper import build_mapper
from salmap.explainers import Explainer, Gradient, SmoothGrad
from salmap.io import write_json, write_text
from salmap.layers import resolve_layer
from salmap.models import load
from salmap.registry import Method
from salmap.registry import methods as methods_registry
from salmap.speed_peers import peer_calls

Call = Callable[[], object]


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every half millisecond (CPU), or
    the CUDA allocator's peak (GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    @staticmethod
    def _resident() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self._resident()
        self.running = True

        def sample() -> None:
            while self.running:
                self.peak = max(self.peak, self._resident() - self.start)
                time.sleep(0.0005)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
            return
        self.running = False
        self.thread.join()


def _seconds(call: Call, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(
    calls: dict[str, Call], device: torch.device, repeats: int, optional: Collection[str] = ()
) -> dict[str, float]:
    """Median seconds of each call over `repeats` rounds after one warm-up round; the calls take
    turns within a round, so a change of machine load hits them all alike. A call named in
    `optional` that fails in the warm-up round (a peer that cannot take these inputs, such as
    pytorch-grad-cam under bf16 autocast) is named on stdout and left out of the result."""
    calls = dict(calls)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, call in list(calls.items()):
            try:
                seconds = _seconds(call, device)
            except (RuntimeError, TypeError, ValueError) as error:
                if round_ or name not in optional:
                    raise
                print(f"{name} fails here and is left out: {type(error).__name__}: {error}", flush=True)
                del calls[name], times[name]
                continue
            if round_:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(call: Call, device: torch.device) -> int:
    """Peak memory of one call, in bytes above the level before it."""
    with PeakMemory(device) as memory:
        call()
    return memory.peak


def gradient_floor(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Call:
    """One forward and one backward to the input only (no parameter gradients)."""

    def call() -> torch.Tensor:
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            scores = model(leaf).gather(1, target[:, None]).sum()
            return torch.autograd.grad(scores, leaf)[0]

    return call


def layer_floor(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Call:
    """One forward and a backward that stops at `layer` (its output made a leaf)."""

    def call() -> torch.Tensor:
        kept: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: object, output: torch.Tensor) -> torch.Tensor:
            kept.append(output.detach().requires_grad_(True))
            return kept[-1] * 1

        handle = layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                scores = model(x).gather(1, target[:, None]).sum()
                return torch.autograd.grad(scores, kept[-1])[0]
        finally:
            handle.remove()

    return call


def forward_floor(model: nn.Module, x: torch.Tensor) -> Call:
    def call() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return call


@dataclass
class Row:
    model: str
    device: str
    autocast: str
    batch: int
    method: str
    ms_per_image: float
    floor_ms_per_image: float
    floor_ratio: float
    peak_mb: float
    best_peer: str
    peer_ms_per_image: float
    peer_ratio: float


def our_explainer(method: Method, model: nn.Module, layer_name: str, settings: dict[str, Any]) -> Explainer:
    """The method's explainer for `model`; a trained mapper gets a freshly initialised decoder,
    which has the same arithmetic as a trained one."""
    if method.trained:
        parameter = next(model.parameters())
        mapper = build_mapper(adapt(model)).to(parameter.device).eval().requires_grad_(False)
        return method.cls(model, mapper)
    return method.build(model, layer=layer_name, **settings)


def floor_calls(
    explainer: Explainer, model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> list[Call]:
    """The arithmetic floor of `explainer` on `x`: one call per pass it makes (`floor_passes`),
    each of its `floor` kind, calls of the same input size shared."""
    kinds = {
        "input_gradient": lambda xs: gradient_floor(model, xs, target),
        "layer_gradient": lambda xs: layer_floor(model, layer, xs, target),
        "forward": lambda xs: forward_floor(model, xs),
    }
    calls: dict[tuple[int, int], Call] = {}
    for size in explainer.floor_passes(x):
        if size not in calls:
            sized = x if size == tuple(x.shape[-2:]) else F.interpolate(x, size=size, mode="bilinear")
            calls[size] = kinds[explainer.floor](sized)
    return [calls[size] for size in explainer.floor_passes(x)]


def bench_model(
    name: str,
    model: nn.Module,
    layer_name: str,
    device: torch.device,
    batch: int,
    methods: list[str],
    repeats: int,
    settings: dict[str, dict[str, Any]],
    autocast: str,
) -> list[Row]:
    """Rows for one model and batch size: ms per image, peak memory, the ratio to the floor, and
    the ratio to the fastest peer (below 1: salmap is faster)."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.no_grad():
        target = model(x).argmax(1)
    _, layer = resolve_layer(model, layer_name, x)
    registry = methods_registry()
    ours = {m: our_explainer(registry[m], model, layer_name, settings.get(m, {})) for m in methods}
    peer_model = copy.deepcopy(model).requires_grad_(True)  # pytorch-grad-cam needs trainable weights
    peer_layer = dict(peer_model.named_modules())[layer_name]
    rows = []
    context = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if autocast == "bf16"
        else torch.autocast(device.type, enabled=False)
    )
    with context:
        for method, explainer in ours.items():
            floors = floor_calls(explainer, model, layer, x, target)
            unique = {id(call): call for call in floors}
            peers = peer_calls(explainer, peer_model, peer_layer, x, target)
            calls = {"ours": lambda e=explainer: e(x, target), **peers}
            calls.update({f"floor {key}": call for key, call in unique.items()})
            timed = measure(calls, device, repeats, optional=peers)
            seconds = timed.pop("ours")
            floor_seconds = sum(timed[f"floor {id(call)}"] for call in floors)
            for key in unique:
                del timed[f"floor {key}"]
            peak = peak_memory(calls["ours"], device)
            best = min(timed, key=timed.get) if timed else "-"
            peer_seconds = timed.get(best, float("nan"))
            rows.append(
                Row(
                    name,
                    device.type,
                    autocast,
                    batch,
                    method,
                    1000 * seconds / batch,
                    1000 * floor_seconds / batch,
                    seconds / floor_seconds,
                    peak / 2**20,
                    best,
                    1000 * peer_seconds / batch,
                    seconds / peer_seconds,
                )
            )
            row = rows[-1]
            print(
                f"{name} b{batch} {method}: {row.ms_per_image:.1f} ms/image, "
                f"floor x{row.floor_ratio:.2f}, "
                + ("no peer" if best == "-" else f"{best} x{row.peer_ratio:.2f}"),
                flush=True,
            )
    return rows


@dataclass
class MemoryRow:
    model: str
    device: str
    batch: int
    samples: int
    ms_per_image: float
    peak_mb: float


def smoothgrad_memory(
    name: str, model: nn.Module, device: torch.device, batch: int, samples: list[int]
) -> list[MemoryRow]:
    """SmoothGrad's time and peak memory for each number of noisy copies: flat in n when the
    copies run in bounded chunks."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.no_grad():
        target = model(x).argmax(1)
    rows = []
    for n in samples:
        explainer = SmoothGrad(Gradient(model), n=n)
        call = functools.partial(explainer, x, target)
        seconds = measure({"ours": call}, device, repeats=1)["ours"]
        rows.append(
            MemoryRow(name, device.type, batch, n, 1000 * seconds / batch, peak_memory(call, device) / 2**20)
        )
        print(f"{name} b{batch} smoothgrad n={n}: peak {rows[-1].peak_mb:.0f} MB", flush=True)
    return rows


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": str(torch.get_num_threads()),
        "cores": str(os.cpu_count()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def benchmark_models(device: torch.device) -> dict[str, tuple[nn.Module, str]]:
    """ResNet-50 (torchvision architecture; speed does not depend on the weights) and the
    pretrained EfficientNet-Lite0, with their target layers."""
    resnet = torchvision.models.resnet50(weights=None).eval().requires_grad_(False).to(device)
    lite = load("efficientnet_lite0", device=str(device))
    return {"resnet50": (resnet, "layer4"), "efficientnet_lite0": (lite.model, lite.target_layer)}


def memory_markdown(rows: list[MemoryRow]) -> str:
    lines = [
        "| model | device | batch | SmoothGrad n | ms / image | peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.device} | {r.batch} | {r.samples} | {r.ms_per_image:.1f} | {r.peak_mb:.0f} |"
        )
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| model | device | autocast | batch | method | ms / image | floor ms / image | x floor | peak MB "
        "| fastest peer | peer ms / image | x peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.device} | {r.autocast} | {r.batch} | {r.method} | {r.ms_per_image:.1f} | "
            f"{r.floor_ms_per_image:.1f} | {r.floor_ratio:.2f} | {r.peak_mb:.0f} | {r.best_peer} | "
            + ("- | - |" if r.best_peer == "-" else f"{r.peer_ms_per_image:.1f} | {r.peer_ratio:.2f} |")
        )
    return "\n".join(lines)


def run_benchmark(
    out: Path,
    models: list[str],
    batches: list[int],
    methods: list[str],
    device_name: str = "cpu",
    repeats: int = 3,
    settings: dict[str, dict[str, Any]] | None = None,
    memory_samples: tuple[int, ...] = (10, 50, 200),
) -> tuple[list[Row], list[MemoryRow]]:
    """Measure every (model, batch, method), then SmoothGrad's peak memory for each of
    `memory_samples` at the smallest batch; `out/speed-<device>.json` and `.md` are rewritten after
    every step, so an interrupted run keeps what it measured."""
    device = torch.device(device_name)
    available = benchmark_models(device)
    autocasts = ["none", "bf16"] if device.type == "cuda" else ["none"]
    rows: list[Row] = []
    memory: list[MemoryRow] = []
    out.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        document = {
            "machine": machine(),
            "settings": settings or {},
            "repeats": repeats,
            "rows": [asdict(r) for r in rows],
            "smoothgrad_memory": [asdict(r) for r in memory],
        }
        write_json(out / f"speed-{device.type}.json", document)
        write_text(out / f"speed-{device.type}.md", markdown(rows) + "\n\n" + memory_markdown(memory) + "\n")

    for name in models:
        model, layer = available[name]
        for autocast in autocasts:
            for batch in batches:
                rows += bench_model(
                    name, model, layer, device, batch, methods, repeats, settings or {}, autocast
                )
                write()
    for name in models:
        if memory_samples:
            memory += smoothgrad_memory(name, available[name][0], device, min(batches), list(memory_samples))
            write()
    return rows, memory
