"""Thinning strategies keep the classifiers they should (Zolna et al. 2019, section Thinning)."""

import pytest
import torch
from torch import nn

from salmap.casm.pool import MAX_POOL, ClassifierPool, thinning
from salmap.errors import SalmapError


def run_pool(name: str, steps: int, seed: int = 0) -> tuple[ClassifierPool, nn.Linear]:
    model = nn.Linear(2, 2)
    pool = ClassifierPool(thinning(name), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.bias.fill_(0)
    pool.start(model)
    for step in range(1, steps + 1):
        with torch.no_grad():
            model.bias.fill_(step)  # the snapshot's identity is readable from its weights
        pool.update(step, model)
        assert len(pool) <= max(pool.strategy.size, 0)
    return pool, model


def snapshot_ids(pool: ClassifierPool) -> list[int]:
    return [int(state["bias"][0]) for state in pool.states]


@pytest.mark.parametrize(("name", "expected"), [("F", [0]), ("FL", [0]), ("L", [])])
def test_fixed_pools(name, expected):
    pool, _ = run_pool(name, 300)
    assert pool.steps == expected
    assert snapshot_ids(pool) == expected


def test_l100_keeps_every_hundredth_until_full():
    pool, _ = run_pool("L100", 300)
    assert pool.steps == [0, 100, 200, 300]
    assert snapshot_ids(pool) == pool.steps


def test_every_k_with_size_evicts_randomly():
    pool, _ = run_pool("L10/5", 400)
    assert len(pool) == 5
    assert 400 in pool.steps  # the newest copy is always kept
    assert all(step % 10 == 0 for step in pool.steps)
    assert snapshot_ids(pool) == pool.steps
    other, _ = run_pool("L10/5", 400, seed=1)
    assert sorted(other.steps) != sorted(pool.steps)  # eviction is random


def test_l1_reaches_the_paper_cap_of_30():
    pool, _ = run_pool("L1", 300)
    assert len(pool) == MAX_POOL
    assert len(set(pool.steps)) == MAX_POOL


def test_draw_probability_and_resume():
    pool, _ = run_pool("L10", 300)
    draws = [pool.draw() for _ in range(2000)]
    share = sum(d is not None for d in draws) / len(draws)
    assert 0.45 < share < 0.55
    assert {d for d in draws if d is not None} == set(range(len(pool)))
    state = pool.state_dict()
    first = [pool.draw() for _ in range(20)]
    pool.load_state_dict(state)
    assert [pool.draw() for _ in range(20)] == first
    assert [run_pool("F", 5)[0].draw() for _ in range(5)] == [0] * 5
    assert [run_pool("L", 5)[0].draw() for _ in range(5)] == [None] * 5


def test_strategy_table():
    assert thinning("F").area_weight == 2.5 and not thinning("F").train_classifier
    assert thinning("L").area_weight == 14 and thinning("L").pool_probability == 0
    assert thinning("FL").area_weight == 7.5
    assert thinning("l1000").every == 1000 and thinning("L1000").size == MAX_POOL
    for bad in ("X", "L0", "L10/31"):
        with pytest.raises(SalmapError):
            thinning(bad)
