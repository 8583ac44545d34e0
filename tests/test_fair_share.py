"""Threads shared with other processes (fair_share.py): the decision from the machine's load,
when it looks, that --threads N turns it off, and that every compute loop asks."""

import subprocess
import sys
import time

import pytest
import torch

import rnnkit
from rnnkit import fair_share
from rnnkit.fair_share import FairShare, threads_for
from rnnkit.limits import set_threads


class Machine:
    """A clock and CPU counters that the test moves by hand."""

    def __init__(self):
        self.now, self.busy, self.own = 100.0, 5000.0, 10.0

    def run(self, seconds: float, ours: float, others: float):
        """``seconds`` pass with this process on ``ours`` cores and others on ``others``."""
        self.now += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def machine() -> Machine:
    return Machine()


def share(m: Machine, cores=2, most=2) -> FairShare:
    return FairShare(most, clock=lambda: m.now, busy=lambda: m.busy, own=lambda: m.own,
                     cores=cores)


@pytest.mark.parametrize("others, cores, most, expected", [
    (0.0, 2, 2, 2), (0.2, 2, 2, 2), (0.6, 2, 2, 1), (1.0, 2, 2, 1), (3.0, 2, 2, 1),
    (0.0, 8, 8, 8), (2.0, 8, 8, 6), (2.0, 8, 4, 4), (0.0, 8, 1, 1)])
def test_threads_leave_the_other_processes_their_cores(others, cores, most, expected):
    assert threads_for(others, cores, most) == expected


def test_a_busy_machine_gets_fewer_threads_and_a_free_one_all_of_them(machine, threads):
    torch.set_num_threads(2)
    s = share(machine)
    machine.run(0.01, ours=1.0, others=1.0)
    s.check()  # too little history for a first look
    assert torch.get_num_threads() == 2
    machine.run(0.5, ours=1.0, others=1.0)  # another process computes on one core
    s.check()
    assert torch.get_num_threads() == 1
    machine.run(0.5, ours=1.0, others=0.0)  # it ended, but the next look is a second away
    s.check()
    assert torch.get_num_threads() == 1
    machine.run(0.6, ours=1.0, others=0.0)
    s.check()
    assert torch.get_num_threads() == 2
    machine.run(1.0, ours=2.0, others=0.1)  # our own threads' time is not the others'
    s.check()
    assert torch.get_num_threads() == 2


def test_without_proc_stat_nothing_changes(machine, threads):
    torch.set_num_threads(2)
    s = FairShare(2, clock=lambda: machine.now, busy=lambda: None, own=lambda: machine.own,
                  cores=2)
    machine.run(5.0, ours=1.0, others=1.0)
    s.check()
    assert torch.get_num_threads() == 2


def test_fixed_threads_are_left_alone(threads, monkeypatch):
    set_threads(1)
    assert fair_share._share is None and torch.get_num_threads() == 1
    fair_share.keep_fair_share()  # a no-op: nothing watches
    set_threads(0)
    assert fair_share._share is not None
    set_threads(0)  # --threads 0 again starts from torch's own count, not a lowered one
    assert torch.get_num_threads() == fair_share._default
    set_threads(1)


@pytest.mark.skipif(fair_share.busy_seconds() is None, reason="no /proc/stat")
def test_a_real_busy_process_is_seen(threads):
    """A pure-Python loop in another process takes a core: the share leaves it that core."""
    cores = fair_share.usable_cores()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # past its start-up
        s = FairShare(cores)
        time.sleep(0.3)
        s.check()
    finally:
        hog.kill()
        hog.wait()
    assert s.looked and torch.get_num_threads() <= max(1, cores - 1)


def test_every_compute_loop_asks(tmp_path, hamlet, monkeypatch, capsys):
    """Training steps, evaluation batches, sampled tokens and beam steps."""
    calls = []
    monkeypatch.setattr(fair_share, "_share", None)
    monkeypatch.setattr(fair_share, "keep_fair_share", lambda: calls.append(1))
    for module in ("rnnkit.training.loop", "rnnkit.tasks.lm", "rnnkit.decoding",
                   "rnnkit.tasks.pairs"):
        monkeypatch.setattr(sys.modules[module], "keep_fair_share", lambda: calls.append(1))
    out = tmp_path / "run"
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": str(hamlet), "max_steps": 6,
                                                         "eval_every": 6, "threads": 1})
    rnnkit.train(model_cfg, cfg, out=out, log=lambda _: None)
    assert len(calls) >= 6 + 1  # each step, and evaluation batches
    for ask in (lambda: rnnkit.sample(out, length=20),
                lambda: rnnkit.sample(out, length=20, beam=2),
                lambda: rnnkit.evaluate(out)):
        calls.clear()
        ask()
        assert calls, ask
