"""Data-loader worker processes that never outlive the process that started them, and their
errors as one line."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

from salmap.errors import SalmapError

# prctl(2): ask the kernel to send a signal to this process when its parent thread dies
PR_SET_PDEATHSIG = 1


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _exit_with(parent: int, worker_id: int) -> None:
    """In a worker: die with the process `parent`. On Linux the kernel kills the worker the
    moment the parent dies (PR_SET_PDEATHSIG); elsewhere a thread checks twice a second."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    else:
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def exit_with_parent() -> Callable[[int], None]:
    """A `worker_init_fn` for `torch.utils.data.DataLoader`: its workers exit when this process
    dies, even by SIGKILL, instead of decoding on for nobody."""
    return partial(_exit_with, os.getpid())


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """A `SalmapError` raised in a loader worker comes back from PyTorch with the worker's
    traceback in its message; keep only the error's own line."""
    try:
        yield
    except SalmapError as error:
        text = str(error)
        if "DataLoader worker" not in text:
            raise
        last = [line for line in text.splitlines() if line.strip()][-1]
        raise SalmapError(last.split("SalmapError: ", 1)[-1]) from None
