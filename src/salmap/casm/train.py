"""Algorithm 1 of Zolna et al. 2019 (classifier-agnostic saliency map extraction), with the
details of SPEC section 2 and of the authors' code (kondiz/casme): the classifier pool and its
thinning, score E or C, the adaptive area rule, eq. 8 for the classifier, the authors'
optimisers and schedule, resumable checkpoints and DistributedDataParallel under `torchrun`.

One iteration on a batch (x, y):

1. f runs on the clean batch and returns its logits and multi-scale features; with
   `classifier_update="two_steps"` (the authors' code) f takes its SGD step on CE(f(x), y) now;
2. the mapper turns the (detached) features into masks m(x); masked-out
   x' = x * (1 - m(x)) + v * m(x), v = `fill_value` (0: zero in normalised space, as the paper;
   the digits preset fills with the black background, -mean/std, because its classifier flips on
   a faint grey lift of the background, a shortcut a mapper otherwise learns instead of the digit);
3. with probability p, f' is drawn uniformly from the pool F, otherwise f' = f;
4. mask loss (minimised by m), per image, averaged over the batch:
   -H(softmax f'(x'_i)) for images f classifies correctly [score E], or -CE(f'(x'_i), y_i) for
   every image [score C, as the authors' code], + lambda * mean(m(x_i)) for images that f
   classifies correctly and f' misclassifies masked out (the adaptive area rule);
5. classifier (eq. 8: f learns from clean and masked-out images): with "two_steps", when f' = f,
   a second SGD step on CE(f(x'), y); with "mean" (an option), one step on the mean of
   CE(f(x), y) and CE(f(x'), y) (on CE(f(x), y) alone when f' is drawn from the pool);
6. the mapper's optimiser steps, and f enters the pool when the thinning says so.

The authors' code stepped f in place before back-propagating the mask loss through a graph
that used f's weights (current PyTorch raises; old PyTorch silently mixed old and new weights).
Here the mask loss's gradients are taken first (`backward(inputs=mapper parameters,
retain_graph=True)`), then the classifier's masked-image gradients (`backward(inputs=classifier
parameters)`), and only then does f step, so each gradient is exact for the weights that built
its graph: with "two_steps" f' = f is f after its clean step, as in Algorithm 1 (f(k)); with
"mean" it is f(k-1), one SGD step earlier.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset
from tqdm import tqdm

from salmap import distributed
from salmap.errors import SalmapError
from salmap.io import remove_partials, write_json, write_text
from salmap.models.transforms import IMAGENET_MEAN, IMAGENET_STD
from salmap.workers import exit_with_parent, one_line_errors

from . import checkpoint
from .adapters import StagedClassifier, adapt, backbone_spec
from .mapper import build_mapper
from .pool import ClassifierPool, thinning

SCORES = ("E", "C")
CLASSIFIER_UPDATES = ("two_steps", "mean")
DECODER_STEMS = ("pooled", "conv")
MASK_UPSAMPLING = ("nearest", "bilinear")
TRAIN_CROPS = ("random", "center")


@dataclass
class CASMConfig:
    """Everything that defines a CASM training run (written to `config.json` in the run folder).

    `batch_size` is global (divided among processes); `steps` overrides `epochs`; an epoch is
    `epoch_fraction` of the training set (the authors' "epoch" was 20% of ImageNet);
    `area_weight` None uses the authors' lambda of the thinning strategy and score; `fill_value`
    is the normalised value that masked-out pixels take. The authors' choices are the defaults:
    `classifier_update` "two_steps" (module docstring; "mean" is salmap's earlier one-step
    rule), `decoder_stem` "pooled" (a ResNet's decoder stem is its max-pool output, 1/4 of the
    input; "conv": the stride-2 convolution before it; other backbones have one stem),
    `mask_upsample` "nearest" (the mask is enlarged from the stem's grid to the input by nearest
    neighbour; "bilinear" as an option) and `train_crop` "random" (ImageNet folders: a random
    resized crop and a horizontal flip per image; "center": resize + centre crop).
    """

    preset: str = "digits"
    model: str = "digits_cnn"
    pretrained: bool = True
    data: str | None = "digits"
    thinning: str = "L100"
    score: str = "E"
    area_weight: float | None = None
    share_encoder: bool = True
    decoder_width: int = 16
    fill_value: float = -1 / 3
    batch_size: int = 32
    epochs: int = 12
    steps: int | None = None
    epoch_fraction: float = 1.0
    lr_classifier: float = 1e-3
    lr_mapper: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_norm: float = 10.0
    lr_decay_epochs: float = 8.0
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    num_workers: int = 0
    deterministic: bool = False
    digits_samples: int = 4000
    digits_classes: list[int] | None = None
    digits_seed: int = 0
    image_size: int = 224
    resize: int = 256
    classifier_update: str = "two_steps"
    decoder_stem: str = "pooled"
    mask_upsample: str = "nearest"
    train_crop: str = "random"

    def check(self) -> CASMConfig:
        thinning(self.thinning)
        if self.score.upper() not in SCORES:
            raise SalmapError(f"unknown score {self.score!r}; use E (entropy) or C (classification loss)")
        for name, allowed in (
            ("classifier_update", CLASSIFIER_UPDATES),
            ("decoder_stem", DECODER_STEMS),
            ("mask_upsample", MASK_UPSAMPLING),
            ("train_crop", TRAIN_CROPS),
        ):
            if getattr(self, name) not in allowed:
                raise SalmapError(f"unknown {name} {getattr(self, name)!r}; use {' or '.join(allowed)}")
        if self.data is None:
            raise SalmapError("the training data is missing: pass --data ROOT (an ImageNet-layout folder)")
        if min(self.batch_size, self.epochs, self.checkpoint_every, self.log_every) < 1:
            raise SalmapError("batch size, epochs, checkpoint and log intervals must be positive")
        if self.steps is not None and self.steps < 1:
            raise SalmapError(f"steps must be positive, got {self.steps}")
        if not 0 < self.epoch_fraction <= 1:
            raise SalmapError(f"epoch_fraction must be in (0, 1], got {self.epoch_fraction}")
        return replace(self, score=self.score.upper(), thinning=self.thinning.upper())


PRESETS: dict[str, CASMConfig] = {
    # The paper and the authors' code: ResNet-50 (pretrained), ImageNet train folder with random
    # resized crops and flips, batch 128, 60 epochs of 20%, two classifier steps per iteration,
    # the decoder on the max-pool grid with a nearest-neighbour enlargement.
    "paper": CASMConfig(
        preset="paper",
        model="resnet50",
        decoder_width=64,
        fill_value=0.0,
        data=None,
        batch_size=128,
        epochs=60,
        epoch_fraction=0.2,
        lr_decay_epochs=20,
        checkpoint_every=1000,
        log_every=50,
        num_workers=8,
    ),
    # Cluttered digits on 2 CPU cores: the shipped digits CNN as f(0), 4,000 training images,
    # masked-out pixels set to the black background (-DIGITS_MEAN / DIGITS_STD = -1/3),
    # 12 epochs of 125 steps, a 16-channel decoder (the stem of the digits CNN is at full
    # resolution, where 64 channels per stage cost most of the step time on a CPU), and one
    # classifier step on the mean of the clean and masked losses: on the digits it gave better
    # maps than the authors' two steps (200-step L100 runs, seeds 0 and 1, validation split:
    # F1 66.3 / 65.7 against 58.2 / 64.0, OM with the mapper's own classifier 2.7 / 3.7 against
    # 10.0 / 10.3; experiments/results/casm_reproduction.md).
    "digits": CASMConfig(classifier_update="mean"),
}


def preset(name: str, **overrides: Any) -> CASMConfig:
    """The preset `name` (paper, digits) with `overrides` applied."""
    if name not in PRESETS:
        raise SalmapError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(CASMConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SalmapError(f"unknown CASM settings: {', '.join(unknown)}")
    return replace(PRESETS[name], **overrides)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-row entropy of softmax(logits) in nats, `(B,)`."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def mask_loss(
    masks: torch.Tensor,
    logits_clean: torch.Tensor,
    logits_masked: torch.Tensor,
    labels: torch.Tensor,
    area_weight: float,
    score: str = "E",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mapper's loss: (1/B) sum_i [s_i + lambda * a_i * mean(m_i)], its minimiser is m.

    c_i = f classifies image i correctly (clean); a_i = c_i and f' misclassifies it masked out
    (the adaptive area rule); s_i = -c_i * H(f'(x'_i)) (score E) or -CE(f'(x'_i), y_i) for every
    image (score C, as the authors' code). Returns the loss, c and a (bool, `(B,)`).
    """
    correct = logits_clean.detach().argmax(dim=1) == labels
    fooled = correct & (logits_masked.detach().argmax(dim=1) != labels)
    if score == "E":
        term = -entropy(logits_masked) * correct
    else:
        term = -F.cross_entropy(logits_masked, labels, reduction="none")
    area = masks.flatten(1).mean(dim=1)
    batch = labels.shape[0]
    loss = term.sum() / batch + area_weight * (area * fooled).sum() / batch
    return loss, correct, fooled


class CASMTrainer:
    """The models, optimisers, schedulers and pool of one run; `step(x, y)` is one iteration."""

    def __init__(
        self, config: CASMConfig, classifier: nn.Module, device: torch.device, steps_per_epoch: int = 1
    ) -> None:
        self.config = config = config.check()
        self.strategy = thinning(config.thinning)
        self.area_weight = (
            self.strategy.lambda_for(config.score) if config.area_weight is None else config.area_weight
        )
        self.f: StagedClassifier = adapt(classifier, config.decoder_stem).to(device)
        self.f.requires_grad_(self.strategy.train_classifier)
        self.mapper = build_mapper(
            self.f, config.share_encoder, config.decoder_width, config.mask_upsample
        ).to(device)
        self.scratch = copy.deepcopy(self.f).eval().requires_grad_(False)
        self._scratch_step: int | None = None
        self.pool = ClassifierPool(self.strategy, torch.Generator().manual_seed(config.seed))
        self.pool.start(self.f)
        decay = max(1, round(config.lr_decay_epochs * steps_per_epoch))
        self.opt_m = torch.optim.Adam(
            self.mapper.parameters(), config.lr_mapper, weight_decay=config.weight_decay
        )
        self.sched_m = torch.optim.lr_scheduler.StepLR(self.opt_m, decay, gamma=0.1)
        self.opt_f = self.sched_f = None
        if self.strategy.train_classifier:
            self.opt_f = torch.optim.SGD(
                self.f.parameters(),
                config.lr_classifier,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
            )
            self.sched_f = torch.optim.lr_scheduler.StepLR(self.opt_f, decay, gamma=0.1)
        self.f_run: nn.Module = self.f
        self.mapper_run: nn.Module = self.mapper
        if dist.is_initialized() and dist.get_world_size() > 1:
            ids = [device.index] if device.type == "cuda" else None
            if self.strategy.train_classifier:
                self.f_run = DistributedDataParallel(self.f, device_ids=ids)
            self.mapper_run = DistributedDataParallel(
                self.mapper, device_ids=ids, find_unused_parameters=not config.share_encoder
            )
        self.step_count = 0

    def _opponent(self, x_masked: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Logits of f' on the masked-out batch, and whether f' is the live f."""
        drawn = self.pool.draw()
        if drawn is None:
            return self.f_run(x_masked), True
        if self._scratch_step != self.pool.steps[drawn]:
            self.scratch.load_state_dict(self.pool.states[drawn])
            self._scratch_step = self.pool.steps[drawn]
        return self.scratch(x_masked), False

    def _classifier_step(self, loss: torch.Tensor) -> None:
        """One SGD step of f on `loss` (gradients of f's parameters only)."""
        self.opt_f.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.f.parameters()))
        self.opt_f.step()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One iteration of Algorithm 1 (module docstring); returns the batch's metrics."""
        train_f = self.strategy.train_classifier
        two_steps = train_f and self.config.classifier_update == "two_steps"
        self.f.train(train_f)
        self.mapper.train()
        with torch.set_grad_enabled(train_f):
            features = self.f_run(x, features=True)
        loss_clean = F.cross_entropy(features.logits, y)
        if two_steps:
            self._classifier_step(loss_clean)
        masks = self.mapper_run(x, features)
        weights = masks.unsqueeze(1)
        x_masked = x * (1 - weights) + self.config.fill_value * weights
        logits_masked, live = self._opponent(x_masked)
        loss_m, correct, fooled = mask_loss(
            masks, features.logits, logits_masked, y, self.area_weight, self.config.score
        )
        learns_masked = train_f and live
        # The mask loss's gradients before any later change of f (see the module docstring).
        self.opt_m.zero_grad(set_to_none=True)
        loss_m.backward(inputs=list(self.mapper.parameters()), retain_graph=learns_masked)
        loss_f = loss_clean.detach()
        if learns_masked:
            loss_masked = F.cross_entropy(logits_masked, y)
            loss_f = 0.5 * (loss_f + loss_masked.detach())
            if two_steps:
                self._classifier_step(loss_masked)
            else:
                self._classifier_step(0.5 * (loss_clean + loss_masked))
        elif train_f and not two_steps:
            self._classifier_step(loss_clean)
        nn.utils.clip_grad_norm_(self.mapper.parameters(), self.config.clip_norm)
        self.opt_m.step()
        self.sched_m.step()
        if train_f:
            self.sched_f.step()
        self.step_count += 1
        self.pool.update(self.step_count, self.f)
        masked_right = logits_masked.detach().argmax(dim=1) == y
        return {
            "loss_f": float(loss_f),
            "loss_m": float(loss_m.detach()),
            "area": float(masks.detach().mean()),
            "acc_clean": float(correct.float().mean()),
            "acc_masked": float(masked_right.float().mean()),
            "area_rule": float(fooled.float().mean()),
            "live": float(live),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-exact resume needs (the RNG states are added by `train_casm`)."""
        return {
            "step": self.step_count,
            "classifier": self.f.model.state_dict(),
            "mapper": self.mapper.state_dict(),
            "opt_m": self.opt_m.state_dict(),
            "sched_m": self.sched_m.state_dict(),
            "opt_f": None if self.opt_f is None else self.opt_f.state_dict(),
            "sched_f": None if self.sched_f is None else self.sched_f.state_dict(),
            "pool": self.pool.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.f.model.load_state_dict(state["classifier"])
        self.mapper.load_state_dict(state["mapper"])
        self.opt_m.load_state_dict(state["opt_m"])
        self.sched_m.load_state_dict(state["sched_m"])
        if self.opt_f is not None:
            self.opt_f.load_state_dict(state["opt_f"])
            self.sched_f.load_state_dict(state["sched_f"])
        self.pool.load_state_dict(state["pool"])
        self._scratch_step = None

    def sync_buffers(self) -> None:
        """Copy rank 0's buffers (BatchNorm statistics) to every rank."""
        if dist.is_initialized():
            for module in (self.f, self.mapper):
                for buffer in module.buffers():
                    dist.broadcast(buffer, 0)


def initial_classifier(config: CASMConfig) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """f(0) of a run (pretrained when `config.pretrained`) with its input mean and std."""
    if config.model == "digits_cnn":
        from salmap.data.digits import DIGITS_MEAN, DIGITS_STD
        from salmap.models.digits import DigitsCNN, load_digits_cnn

        model = load_digits_cnn().model if config.pretrained else DigitsCNN()
        return model, DIGITS_MEAN, DIGITS_STD
    if config.pretrained:
        from salmap import models

        loaded = models.load(config.model)
        return loaded.model, loaded.mean, loaded.std
    from .adapters import build_backbone

    return build_backbone({"arch": config.model, "num_classes": 1000}), IMAGENET_MEAN, IMAGENET_STD


def training_data(
    config: CASMConfig, mean: tuple[float, ...], std: tuple[float, ...], classes: int = 1000
) -> Dataset:
    """The training set: cluttered digits (`data="digits"`) or an ImageNet-layout train folder,
    read with random resized crops and flips (`train_crop="random"`) or resized and centre
    cropped, its labels the ImageNet-1k indices for a classifier of 1,000 classes (so that a
    folder with some of the classes keeps a pretrained classifier's indices)."""
    if config.data == "digits":
        from salmap.data.digits import build_split

        split = build_split(
            "train", config.digits_samples, seed=config.digits_seed, classes=config.digits_classes
        )
        return TensorDataset(split.images, split.labels)
    from salmap.data.imagenet import ImageNetFolder, random_crop_transform

    augment = random_crop_transform(config.image_size, mean, std) if config.train_crop == "random" else None
    return ImageNetFolder(
        config.data,
        "train",
        resize=config.resize,
        crop=config.image_size,
        mean=mean,
        std=std,
        class_to_idx="imagenet-1k" if classes == 1000 else None,
        transform=augment,
    )


def _pairs(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate (image, label) tuples or dicts with `image` and `label` into two tensors."""
    if isinstance(items[0], dict):
        items = [(item["image"], item["label"]) for item in items]
    images, labels = zip(*items, strict=True)
    return torch.stack(images), torch.stack([torch.as_tensor(label) for label in labels]).long()


@dataclass
class TrainResult:
    """A finished run: its folder, the resumable checkpoint, the mapper file, steps, wall time,
    the last logged metrics and the trainer (the trained models in memory)."""

    out: Path
    checkpoint: Path
    mapper: Path
    steps: int
    seconds: float
    trainer: CASMTrainer
    last_metrics: dict[str, float] = field(default_factory=dict)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_log(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a run resumes from."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
        write_text(path, "".join(line + "\n" for line in kept))


def mapper_state(trainer: CASMTrainer, spec: dict, mean: tuple, std: tuple) -> dict[str, Any]:
    """The inference checkpoint (`salmap.casm.CASM.from_checkpoint` reads it)."""
    config = trainer.config
    return {
        "format": checkpoint.MAPPER_FORMAT,
        "backbone": spec,
        "classifier": trainer.f.model.state_dict(),
        "mapper": trainer.mapper.state_dict(),
        "config": asdict(config),
        "step": trainer.step_count,
        "mean": list(mean),
        "std": list(std),
    }


def train_casm(
    config: CASMConfig,
    out: str | Path,
    *,
    resume: bool = False,
    classifier: nn.Module | None = None,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_step: Any = None,
) -> TrainResult:
    """Train CASM (or the Baseline, thinning F) and write the run folder `out`:
    `config.json`, `metrics.jsonl` (one line per `log_every` steps), `checkpoint.pt` (resumable,
    every `checkpoint_every` steps and at the end) and `casm.pt` (the trained mapper).

    `classifier` and `dataset` (items `(image, label)` or dicts) replace the config's model and
    data. Under `torchrun` each process trains on its shard (DistributedSampler) and rank 0
    writes. `resume=True` continues from `checkpoint.pt`, bit for bit on one device in
    deterministic mode. `on_step(step)` is called after each step.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(previous or config.deterministic)
    try:
        return _run(config, Path(out), resume, classifier, dataset, progress, on_step)
    finally:
        torch.use_deterministic_algorithms(previous)


@dataclass(frozen=True)
class _Schedule:
    """How the data is shared out: the sampler, images per process and step, steps per epoch and
    the steps of the run."""

    sampler: DistributedSampler
    per_process: int
    steps_per_epoch: int
    total: int

    def batches(self, step: int) -> tuple[int, list[list[int]]]:
        """The epoch of `step` and the batches of that epoch from `step` on."""
        epoch, position = divmod(step, self.steps_per_epoch)
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        size = self.per_process
        return epoch, [order[i * size : (i + 1) * size] for i in range(position, self.steps_per_epoch)]


def _schedule(config: CASMConfig, dataset: Dataset, rank: int, world: int) -> _Schedule:
    per_process = config.batch_size // world
    if per_process < 1:
        raise SalmapError(f"batch size {config.batch_size} is smaller than the {world} processes")
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True
    )
    if len(sampler) < per_process:
        raise SalmapError(f"{len(dataset)} training images make no batch of {per_process} per process")
    # at least one batch per epoch, as the authors' loop (it runs batch 0 whatever the fraction)
    steps_per_epoch = max(1, int(len(sampler) * config.epoch_fraction) // per_process)
    return _Schedule(sampler, per_process, steps_per_epoch, config.steps or config.epochs * steps_per_epoch)


class _MetricsLog:
    """Averages the step metrics over `every` steps (or up to the last step), shows them on the
    progress bar and, on rank 0, appends them to `metrics.jsonl`."""

    def __init__(self, path: Path, every: int, total: int, write: bool) -> None:
        self.path, self.every, self.total, self.write = path, every, total, write
        self.sums: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.started = time.perf_counter()

    def add(self, step: int, epoch: int, metrics: dict[str, float], lr: float, bar: tqdm) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        if step % self.every != 0 and step != self.total:
            return
        count = self.every if step % self.every == 0 else step % self.every
        self.last = {key: value / count for key, value in self.sums.items()}
        self.sums = {}
        last = self.last
        bar.set_postfix(
            lf=f"{last['loss_f']:.3f}",
            lm=f"{last['loss_m']:.3f}",
            area=f"{last['area']:.2f}",
            acc=f"{last['acc_clean']:.2f}",
            acc_out=f"{last['acc_masked']:.2f}",
        )
        if self.write:
            record = {"step": step, "epoch": epoch, "lr_m": lr, **last}
            record["seconds"] = round(time.perf_counter() - self.started, 2)
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def _one_line(loader: DataLoader) -> Any:
    """The loader's batches; an error in a worker comes out as one line."""
    with one_line_errors():
        yield from loader


def _start_or_resume(trainer: CASMTrainer, config: CASMConfig, out: Path, resume: bool, rank: int) -> None:
    """Load the run's checkpoint when resuming (refuse to start over an existing run otherwise),
    and on rank 0 write the configuration."""
    ckpt, log_path = out / "checkpoint.pt", out / "metrics.jsonl"
    if resume and ckpt.is_file():
        state = checkpoint.load(ckpt, (checkpoint.TRAINING_FORMAT,))
        try:
            trainer.load_state_dict(state)
            _set_rng_state(state["rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            raise SalmapError(
                f"{ckpt} does not fit this run: {checkpoint.state_dict_problem(error)}"
            ) from None
        if rank == 0:
            _truncate_log(log_path, trainer.step_count)
    elif ckpt.is_file():
        raise SalmapError(f"{out} holds a run already: pass --resume to continue it, or another --out")
    elif resume and not (out / "config.json").is_file():
        raise SalmapError(f"nothing to resume in {out}: it holds no run; drop --resume to start one")
    if resume and rank == 0:
        for leftover in (ckpt, out / "casm.pt", out / "config.json"):
            remove_partials(leftover)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", asdict(config))
        if not resume:
            log_path.unlink(missing_ok=True)


def _run(
    config: CASMConfig,
    out: Path,
    resume: bool,
    classifier: nn.Module | None,
    dataset: Dataset | None,
    progress: bool,
    on_step: Any,
) -> TrainResult:
    config = config.check()
    device = distributed.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, world = distributed.join(device)
    torch.manual_seed(config.seed)
    if classifier is None:
        classifier, mean, std = initial_classifier(config)
    else:
        mean, std = (0.0,), (1.0,)
    spec = backbone_spec(classifier, config.model)
    dataset = training_data(config, mean, std, int(spec["num_classes"])) if dataset is None else dataset
    schedule = _schedule(config, dataset, rank, world)
    trainer = CASMTrainer(config, classifier, device, schedule.steps_per_epoch)
    _start_or_resume(trainer, config, out, resume, rank)
    ckpt = out / "checkpoint.pt"

    def save() -> None:
        trainer.sync_buffers()
        if rank == 0:
            state = {"format": checkpoint.TRAINING_FORMAT, "config": asdict(config), "backbone": spec}
            state.update(trainer.state_dict(), rng=_rng_state())
            checkpoint.save(state, ckpt)
        if dist.is_initialized():
            dist.barrier()

    log = _MetricsLog(out / "metrics.jsonl", config.log_every, schedule.total, write=rank == 0)
    bar = tqdm(
        total=schedule.total, initial=trainer.step_count, disable=not progress or rank != 0, desc="casm"
    )
    while trainer.step_count < schedule.total:
        epoch, batches = schedule.batches(trainer.step_count)
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=config.num_workers,
            collate_fn=_pairs,
            worker_init_fn=exit_with_parent(),
        )
        for x, y in _one_line(loader):
            metrics = trainer.step(x.to(device), y.to(device))
            step = trainer.step_count
            bar.update(1)
            log.add(step, epoch, metrics, trainer.sched_m.get_last_lr()[0], bar)
            if step % config.checkpoint_every == 0 or step == schedule.total:
                save()
            if on_step is not None:
                on_step(step)
            if step >= schedule.total:
                break
    bar.close()
    trainer.sync_buffers()
    mapper_path = out / "casm.pt"
    if rank == 0:
        checkpoint.save(mapper_state(trainer, spec, mean, std), mapper_path)
    seconds = time.perf_counter() - log.started
    return TrainResult(out, ckpt, mapper_path, trainer.step_count, seconds, trainer, log.last)
