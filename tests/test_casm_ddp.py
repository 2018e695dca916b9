"""Two gloo processes on CPU train CASM with DistributedDataParallel and end with equal weights."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from salmap.casm import CASMConfig, train_casm
from salmap.models.digits import DigitsCNN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world: int, port: int, out: str, share_encoder: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    classifier = DigitsCNN(num_classes=3, widths=(4, 4, 6, 8))
    generator = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(
        torch.randn(64, 1, 16, 16, generator=generator), torch.arange(64) % 3
    )
    config = CASMConfig(
        preset="test",
        data="given",
        thinning="L1/3",
        share_encoder=share_encoder,
        batch_size=16,
        steps=6,
        decoder_width=4,
        checkpoint_every=3,
        log_every=1,
    )
    result = train_casm(config, out, classifier=classifier, dataset=data, progress=False)
    trainer = result.trainer
    state = {"f": trainer.f.state_dict(), "m": trainer.mapper.state_dict(), "pool": trainer.pool.steps}
    torch.save(state, os.path.join(out, f"rank{rank}.weights"))
    dist.destroy_process_group()


@pytest.mark.parametrize("share_encoder", [True, False])
def test_two_gloo_processes_hold_identical_weights(tmp_path, share_encoder):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path), share_encoder), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.weights", weights_only=True) for r in range(2)]
    for part in ("f", "m"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), (part, key)
    assert ranks[0]["pool"] == ranks[1]["pool"]
    assert len(ranks[0]["pool"]) == 3 and ranks[0]["pool"][-1] == 6
    initial = DigitsCNN(num_classes=3, widths=(4, 4, 6, 8)).state_dict()
    assert not torch.equal(initial["fc.weight"], ranks[0]["f"]["model.fc.weight"])
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 6
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "casm.pt",
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
        "rank0.weights",
        "rank1.weights",
    ]
