"""torch's CPU threads, kept to the cores that other processes leave free.

torch runs its intra-op work on OpenMP threads, one per core, that spin at the end of every
parallel region waiting for each other. Alone on a machine that is the fastest choice. Beside
another process that computes, it is the slowest: a spinning thread holds a core that the
other process needs and every region waits for the slowest thread, so two trainings on as
many cores as threads run many times slower than one alone, where a fair share is 2x
(benchmarks/bench_contention.py measures it).

So, unless the user fixes ``--threads``, each command measures how much CPU the other
processes use (/proc/stat's busy time, less this process's own) and keeps
``cores - others`` threads (at least one, at most torch's default); it looks again every
second from its compute loop (``keep_fair_share``), so a run takes its cores back when the
other work ends. Where /proc/stat does not exist (macOS, Windows) threads stay as they are.
"""

from __future__ import annotations

import math
import os
import time

import torch

INTERVAL = 1.0  # seconds between looks at the machine's load
FIRST_LOOK = 0.05  # the first look needs at least this much history (the command's start-up)
STAT = "/proc/stat"
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (None: unknown).
    Idle and I/O wait are not busy; time stolen by a hypervisor is (it is not ours to use)."""
    try:
        with open(STAT) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS


def own_seconds() -> float:
    """CPU seconds this process (all its threads) has used."""
    t = os.times()
    return t.user + t.system


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_for(others: float, cores: int, most: int) -> int:
    """Threads that leave the cores the other processes use (``others``, in cores) to them."""
    free = cores - others
    return max(1, min(most, math.floor(free + 0.5)))


class FairShare:
    """Watches the load of the other processes and sets torch's thread count to fit."""

    def __init__(self, most: int, clock=time.monotonic, busy=busy_seconds, own=own_seconds,
                 cores: int | None = None):
        self.clock, self.busy, self.own = clock, busy, own
        self.cores = cores or usable_cores()
        self.most = most
        self.looked = False
        self.mark = self._sample()

    def _sample(self) -> tuple[float, float | None, float]:
        return self.clock(), self.busy(), self.own()

    def check(self) -> None:
        """Look at the load if it is time to (the first look as soon as there is history),
        and change the thread count if it no longer fits."""
        now = self.clock()
        wait = INTERVAL if self.looked else FIRST_LOOK
        if now - self.mark[0] < wait:
            return
        then, self.mark = self.mark, self._sample()
        if then[1] is None or self.mark[1] is None:
            return
        self.looked = True
        seconds = self.mark[0] - then[0]
        others = ((self.mark[1] - then[1]) - (self.mark[2] - then[2])) / seconds
        threads = threads_for(max(others, 0.0), self.cores, self.most)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


_share: FairShare | None = None
_default: int | None = None  # torch's own thread count (one per core, or OMP_NUM_THREADS)


def start(threads: int) -> None:
    """``--threads`` 0 (auto): share the cores from now on; any other count: keep it fixed."""
    global _share, _default
    _default = _default or torch.get_num_threads()
    if threads == 0:
        torch.set_num_threads(_default)
    _share = FairShare(_default) if threads == 0 else None


def keep_fair_share() -> None:
    """Called from compute loops: cheap (a clock read) except once a second."""
    if _share is not None:
        _share.check()
