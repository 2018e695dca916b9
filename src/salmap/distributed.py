"""Several processes under `torchrun`: the process group, each process's device, its shard of the
work and the gathering of results on rank 0. Without `torchrun` (WORLD_SIZE unset or 1) there is
no process group and every helper acts for a single process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from salmap.errors import SalmapError

T = TypeVar("T")


def launched() -> bool:
    """Whether `torchrun` started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def device(name: str | torch.device) -> torch.device:
    """`name` as a device; under `torchrun` a CUDA device becomes `cuda:LOCAL_RANK`, one GPU per
    process."""
    chosen = torch.device(name)
    if chosen.type != "cuda" or not launched():
        return chosen
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise SalmapError(f"process {local} of this machine has no GPU: start at most {count} per machine")
    return torch.device("cuda", local)


def join(on: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group `torchrun` describes (NCCL when `on` is a CUDA
    device, Gloo otherwise) when not yet joined."""
    if launched() and not dist.is_initialized():
        if on.type == "cuda":
            torch.cuda.set_device(on)
        dist.init_process_group("nccl" if on.type == "cuda" else "gloo")
    return rank(), world_size()


def rank() -> int:
    """This process's rank in the joined process group (0 without one)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the joined process group (1 without one)."""
    return dist.get_world_size() if dist.is_initialized() else 1


@contextmanager
def session(name: str) -> Iterator[torch.device]:
    """Join the process group for the device called `name` (see `device`), yield this process's
    device, and leave the group at the end if this session joined it."""
    chosen = device(name)
    joined = launched() and not dist.is_initialized()
    join(chosen)
    try:
        yield chosen
    finally:
        if joined:
            dist.destroy_process_group()


def shard(count: int) -> range:
    """This process's items of `count`: rank r takes r, r + N, r + 2N, ..."""
    return range(rank(), count, world_size())


def gather(value: T) -> list[T] | None:
    """Every process's `value` in rank order on rank 0, None on the others."""
    if world_size() == 1:
        return [value]
    values: list[Any] | None = [None] * world_size() if rank() == 0 else None
    dist.gather_object(value, values, dst=0)
    return values


def checked(check: Callable[[], T]) -> T:
    """`check()` on every process, then a rendezvous: a SalmapError raised on any process is raised
    on all of them, so that none goes on (and writes) while another stops."""
    failure: SalmapError | None = None
    try:
        result = check()
    except SalmapError as error:
        failure = error
    if world_size() > 1:
        messages: list[str | None] = [None] * world_size()
        dist.all_gather_object(messages, None if failure is None else str(failure))
        failure = failure or next((SalmapError(message) for message in messages if message), None)
    if failure is not None:
        raise failure
    return result
