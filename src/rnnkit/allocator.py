"""Freed memory kept by the process for its next training step (glibc's malloc only).

glibc's malloc gives large blocks their own pages (mmap) and hands them back to the system
when they are freed (munmap, and trimming the top of the heap). A training step of the fused
LSTM/GRU kernels allocates and frees its large workspaces at every step, so each step faults
the same pages in again: the kernel maps and zeroes them, time the step spends in the system
instead of computing (benchmarks/bench_allocator.py measures it). Kept by the process, the
pages are reused from one step to the next; the cost is resident memory that stays near the
run's peak instead of dropping between steps.

The trainer sets this for the rest of its process's life, not on import: `rnnkit train`'s
process, or the Python process that calls rnnkit.train (a notebook's too). Evaluation and
sampling allocate little per step and leave it alone. Where the C library is not glibc
(macOS, Windows, musl) nothing changes. glibc still maps blocks of more than its arena size
(64 MB) that threads other than the main one ask for; torch allocates from the main one.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP = 2**31 - 1  # the largest value mallopt takes: free memory at the heap's top stays


def keep_freed_memory() -> bool:
    """Serve blocks from the heap (not mmap) and never trim it; whether it was set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP))
