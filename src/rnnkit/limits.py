"""Bounds on numbers every command takes from the user: seeds and thread counts."""

from __future__ import annotations

import os

import torch

from . import fair_share
from .errors import RnnkitError

# Past a few threads per core a CPU run only slows down; far past it, thread creation fails
# inside OpenMP and kills the process with a segfault.
THREADS_PER_CORE = 4
# torch generators take 64-bit seeds, and a run's seeds get step and rank numbers added: a
# 32-bit seed (numpy's range) leaves room for them
MAX_SEED = 2**32 - 1


def max_threads() -> int:
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def set_threads(threads: int, flag: str = "--threads") -> None:
    """torch's intra-op threads: 0 shares the cores with other processes (fair_share.py: one
    per core when the machine is free), any other count stays fixed; one error line for a
    count this machine cannot run."""
    if not 0 <= threads <= max_threads():
        raise RnnkitError(f"{flag} must be between 0 (one per core that other processes leave "
                          f"free) and {max_threads()} ({THREADS_PER_CORE} x this machine's "
                          f"{os.cpu_count() or 1} CPUs), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    fair_share.start(threads)


def check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed <= MAX_SEED:
        raise RnnkitError(f"{flag} must be between 0 and {MAX_SEED}, got {seed}")
