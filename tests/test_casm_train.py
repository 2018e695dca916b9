"""CASM training: one step, the area rule, the Baseline, resume after a kill, safe loading."""

import pytest
import torch
from torch.utils.data import TensorDataset

from salmap.casm import CASMConfig, CASMTrainer, mask_loss, train_casm
from salmap.casm.checkpoint import load
from salmap.errors import SalmapError
from salmap.models.digits import DigitsCNN


def tiny_config(**overrides) -> CASMConfig:
    settings = dict(
        preset="test", data="given", batch_size=8, steps=12, decoder_width=4, checkpoint_every=4, log_every=2
    )
    settings.update(overrides)
    return CASMConfig(**settings)


def tiny_data(n: int = 48) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 1, 16, 16, generator=generator), torch.arange(n) % 3)


def tiny_classifier(seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    return DigitsCNN(num_classes=3, widths=(4, 4, 6, 8))


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("name", ["L", "FL", "L1/3"])
def test_one_step_changes_f_and_m_and_keeps_the_pool_small(name):
    trainer = CASMTrainer(tiny_config(thinning=name), tiny_classifier(), torch.device("cpu"))
    x, y = tiny_data(8).tensors
    f_before, m_before = parameters(trainer.f), parameters(trainer.mapper)
    for _ in range(5):
        metrics = trainer.step(x, y)
        assert len(trainer.pool) <= trainer.strategy.size
    assert changed(f_before, trainer.f) and changed(m_before, trainer.mapper)
    assert 0 <= metrics["area"] <= 1 and metrics["loss_f"] > 0


def sgd_step(module: torch.nn.Module, loss: torch.Tensor, buffers: list, lr=1e-3, momentum=0.9, decay=1e-4):
    """SGD with momentum and weight decay written out (PyTorch's rule: buf = m * buf + g + wd * p)."""
    grads = torch.autograd.grad(loss, list(module.parameters()), retain_graph=True)
    with torch.no_grad():
        for index, (parameter, grad) in enumerate(zip(module.parameters(), grads, strict=True)):
            step = grad + decay * parameter
            buffers[index] = step if buffers[index] is None else momentum * buffers[index] + step
            parameter -= lr * buffers[index]


@pytest.mark.parametrize("update", ["two_steps", "mean"])
def test_live_classifier_steps_and_mapper_gradient_follow_the_update_rule(update):
    """two_steps (the authors' code): f steps on the clean batch, f' = f(k) runs on the masked
    batch, the mapper's gradient is taken there, then f steps on the masked batch. mean: one
    step on the mean of both losses, f' = f(k-1). No in-place defect: each gradient belongs to
    the weights that built its graph."""
    trainer = CASMTrainer(
        tiny_config(thinning="L", classifier_update=update), tiny_classifier(), torch.device("cpu")
    )
    x, y = tiny_data(8).tensors
    reference = CASMTrainer(tiny_config(thinning="L"), tiny_classifier(), torch.device("cpu"))
    reference.mapper.load_state_dict(trainer.mapper.state_dict())
    reference.f.train()
    buffers = [None] * len(list(reference.f.parameters()))
    features = reference.f(x, features=True)
    clean_loss = torch.nn.functional.cross_entropy(features.logits, y)
    if update == "two_steps":
        sgd_step(reference.f, clean_loss, buffers)
    masks = reference.mapper(x, features)
    weights = masks.unsqueeze(1)
    logits = reference.f(x * (1 - weights) + reference.config.fill_value * weights)
    loss, _, _ = mask_loss(masks, features.logits, logits, y, reference.area_weight)
    expected = torch.autograd.grad(loss, list(reference.mapper.parameters()), retain_graph=True)
    masked_loss = torch.nn.functional.cross_entropy(logits, y)
    if update == "two_steps":
        sgd_step(reference.f, masked_loss, buffers)
    else:
        sgd_step(reference.f, 0.5 * (clean_loss + masked_loss), buffers)
    seen = []
    trainer.opt_m.register_step_pre_hook(
        lambda *_: seen.extend(p.grad.clone() for p in trainer.mapper.parameters())
    )
    trainer.config.clip_norm = 1e9
    trainer.step(x, y)
    for got, want in zip(seen, expected, strict=True):
        torch.testing.assert_close(got, want)
    for got, want in zip(trainer.f.parameters(), reference.f.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_area_rule_applies_to_correct_clean_and_wrong_masked_only():
    labels = torch.tensor([0, 1, 2, 0])
    clean = torch.eye(3)[[0, 1, 0, 0]] * 5  # image 2 is wrong when clean
    masked = torch.eye(3)[[1, 1, 2, 2]] * 5  # images 0 and 3 are wrong when masked out
    masks = torch.full((4, 5, 5), 0.5, requires_grad=True)
    loss, correct, fooled = mask_loss(masks, clean, masked, labels, area_weight=2.0, score="E")
    assert correct.tolist() == [True, True, False, True]
    assert fooled.tolist() == [True, False, False, True]
    (grad,) = torch.autograd.grad(loss, masks)
    per_image = grad.flatten(1).sum(1)
    torch.testing.assert_close(per_image, torch.tensor([2.0, 0, 0, 2.0]) / 4)


def test_score_e_covers_images_correct_when_clean_and_score_c_every_image():
    """Score E: -H(f'(x')) on the images f gets right; score C: -CE(f'(x'), y) on every image,
    as the authors' code (`casme_loss += -classifier_loss_m`, the batch mean)."""
    labels = torch.tensor([0, 1])
    clean = torch.eye(3)[[0, 0]] * 5  # image 1 is wrong when clean
    masked = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    masks = torch.zeros(2, 4, 4)
    loss, _, _ = mask_loss(masks, clean, masked, labels, 1.0, "E")
    (grad,) = torch.autograd.grad(loss, masked)
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0
    p = torch.softmax(masked.detach()[0], 0)
    torch.testing.assert_close(loss, (p * p.log()).sum() / 2)
    loss, _, _ = mask_loss(masks, clean, masked, labels, 1.0, "C")
    (grad,) = torch.autograd.grad(loss, masked)
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    ce = [torch.logsumexp(row, 0) - row[label] for row, label in zip(masked.detach(), labels, strict=True)]
    torch.testing.assert_close(loss, -(ce[0] + ce[1]) / 2)


@pytest.mark.parametrize(
    ("name", "e", "c"), [("F", 2.5, 9), ("L", 14, 18), ("FL", 7.5, 11), ("L100", 10, 17), ("L1000", 10, 17)]
)
def test_area_weight_is_the_authors_per_thinning_and_score(name, e, c):
    for score, weight in (("E", e), ("C", c)):
        trainer = CASMTrainer(tiny_config(thinning=name, score=score), tiny_classifier(), torch.device("cpu"))
        assert trainer.area_weight == weight


def test_baseline_keeps_the_classifier_frozen():
    trainer = CASMTrainer(tiny_config(thinning="F"), tiny_classifier(), torch.device("cpu"))
    x, y = tiny_data(8).tensors
    f_state = {k: v.clone() for k, v in trainer.f.state_dict().items()}
    m_before = parameters(trainer.mapper)
    for _ in range(3):
        assert trainer.step(x, y)["live"] == 0
    assert all(torch.equal(v, trainer.f.state_dict()[k]) for k, v in f_state.items())
    assert changed(m_before, trainer.mapper)


def test_separate_encoder_is_trained_with_the_mapper():
    trainer = CASMTrainer(tiny_config(share_encoder=False), tiny_classifier(), torch.device("cpu"))
    before = parameters(trainer.mapper.encoder)
    x, y = tiny_data(8).tensors
    trainer.step(x, y)
    assert changed(before, trainer.mapper.encoder)


def final_weights(out, resume=False, stop_at=None, steps=12):
    def kill(step):
        if step == stop_at:
            raise KeyboardInterrupt

    result = train_casm(
        tiny_config(deterministic=True, steps=steps),
        out,
        resume=resume,
        classifier=tiny_classifier(),
        dataset=tiny_data(),
        progress=False,
        on_step=kill,
    )
    return load(result.checkpoint)


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    whole = final_weights(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        final_weights(tmp_path / "killed", stop_at=7)  # killed between the checkpoints at 4 and 8
    assert load(tmp_path / "killed" / "checkpoint.pt")["step"] == 4
    resumed = final_weights(tmp_path / "killed", resume=True)
    assert resumed["step"] == whole["step"] == 12
    for part in ("classifier", "mapper"):
        for key, value in whole[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)
    assert resumed["pool"]["steps"] == whole["pool"]["steps"]
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in lines] == list(range(2, 13, 2))
    assert (tmp_path / "killed" / "config.json").is_file()
    with pytest.raises(SalmapError, match="--resume"):
        final_weights(tmp_path / "whole")


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_tampered_checkpoint_is_refused(tmp_path):
    path = tmp_path / "casm.pt"
    torch.save({"format": "salmap-casm-v1", "mapper": Payload()}, path)
    with pytest.raises(SalmapError, match="refusing"):
        load(path)
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SalmapError):
        load(tmp_path / "other.pt")
