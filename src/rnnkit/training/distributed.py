"""Data-parallel training on torch.distributed: DistributedDataParallel, one process per rank.

Launch with torchrun (``rnnkit train --nproc N`` runs it for one machine). Backend gloo on the
CPU, nccl on CUDA (one GPU per process; --dist-backend gloo lets processes share a GPU). With
N ranks and the global batch B (--batch-size), each rank trains on b = B / N rows of every
batch:

    stream mode   rank r owns streams [r*b, (r+1)*b) of the one-process layout, and their
                  carried hidden state; together the ranks cover the corpus once per epoch
    lines mode    a DistributedSampler over the one-process shuffle: the N shares of batch i
                  are the lines of the one-process batch i
    loss          each rank's summed NLL x N / (real targets in the global batch): DDP averages
                  gradients over ranks, so the update is the one of the global batch's mean
    decisions     skipping a non-finite step, stopping on a signal, the clock: agreed on by
                  all-reduce, so every rank takes the same steps (a lone rank would hang)
    files         rank 0 alone writes the run folder; the others read what it wrote

A run with WORLD_SIZE unset or 1 never touches torch.distributed, so one process trains
exactly as it always has.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import RnnkitError

# how a failed collective announces itself: gloo and NCCL errors, lost sockets, timeouts
COLLECTIVE_FAILURE = re.compile(r"gloo|nccl|connection (reset|closed|refused)|timed out|"
                                r"timeout|broken pipe", re.IGNORECASE)


class SameOnEveryRank(RnnkitError):
    """An error every rank raises at the same point (a bad setting, or rank 0's error sent to
    the others so that none waits for it): rank 0 reports it (cli/train.py)."""
    same_on_every_rank = True

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def launched_world_size() -> int:
    """Processes torchrun started (its WORLD_SIZE), 1 when not launched by it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def gpu_of(local: int) -> int:
    """This machine's GPU for local rank ``local``: its own, or a shared one under gloo."""
    return local % max(torch.cuda.device_count(), 1)


def backend_for(device_type: str, choice: str) -> str:
    if choice == "auto":
        return "nccl" if device_type == "cuda" else "gloo"
    if choice == "nccl" and device_type != "cuda":
        raise SameOnEveryRank("--dist-backend nccl needs --device cuda; use gloo on the CPU")
    return choice


COMPILE_WITH_DDP = ("--compile does not combine with multi-process training (--nproc, "
                    "torchrun); drop --compile, or train in one process")


def check_world(ranks: Ranks, task, cfg, supported: str) -> None:
    """A run on several processes needs a data-parallel ``task`` (the tasks ``supported``
    name them), no --compile and a batch that splits evenly."""
    if not ranks.distributed:
        return
    if not task.data_parallel:
        raise SameOnEveryRank(f"multi-process training (torchrun, --nproc) supports --task "
                              f"{supported} only; train --task {cfg.task} in one process")
    if cfg.compile:
        raise SameOnEveryRank(COMPILE_WITH_DDP)
    check_batch(cfg.batch_size, ranks.world_size)


def check_batch(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise SameOnEveryRank(f"--batch-size {batch_size} does not split evenly over "
                              f"{world_size} processes (it is the global batch, B / N rows per "
                              f"process); use a multiple of {world_size}")


@contextmanager
def session(device_type: str, backend: str, timeout: float):
    """Join the process group when torchrun started more than one process; leave it at the
    end. A collective that fails (a rank died, or hung past ``timeout`` seconds) becomes one
    RnnkitError. Without torchrun, or inside a group the caller made, nothing happens."""
    if launched_world_size() <= 1 or dist.is_initialized():
        yield
        return
    init(device_type, backend_for(device_type, backend), timeout)
    try:
        yield
    except RuntimeError as e:
        if not COLLECTIVE_FAILURE.search(str(e)):
            raise
        raise RnnkitError(lost_contact(e, timeout)) from None
    # only after success: after a failure NCCL's teardown can block, and the process exits.
    # The barrier first: a rank that tears down while another still talks to it makes gloo's
    # connection threads end the slower process with "terminate called" (SIGABRT)
    dist.barrier()
    dist.destroy_process_group()


def end_process(code: int) -> NoReturn:
    """End a process that trained among several (torchrun), skipping the interpreter's
    shutdown. gloo's worker threads let go of a finished collective's tensors in their own
    time; one that does so while the interpreter shuts down must take the GIL, cannot, and
    aborts the process (SIGABRT, "terminate called without an active exception"), so torchrun
    would report a failure for a run that succeeded. The run's files are closed by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def init(device_type: str, backend: str, timeout: float) -> None:
    if device_type == "cuda":  # this process's GPU, before NCCL picks one
        torch.cuda.set_device(gpu_of(local_rank()))
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as e:
        raise RnnkitError(f"could not join the other training processes ({first_line(e)}); "
                          "check torchrun's --rdzv-endpoint and --nnodes, and that every node "
                          "started") from None


def first_line(e: BaseException) -> str:
    """The gist of a torch.distributed error: its first sentence, without gloo's source
    location ("[.../pair.cc:553] Connection closed by peer [127.0.0.1]:24983. This is ...")."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip())
    text = text.splitlines()[0].split(". ")[0] if text else ""
    return text[:200] or type(e).__name__


def lost_contact(e: BaseException, timeout: float) -> str:
    return (f"lost contact with the other training processes: one of them died, or did not "
            f"answer within --dist-timeout {timeout:g} s ({first_line(e)}); the run folder "
            "keeps the last checkpoint, continue with --resume")


def collective_device() -> torch.device:
    """Where collective tensors live: this rank's GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def share_of_mean(total: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """(this rank's loss to backpropagate, the global batch's mean) from this rank's summed
    loss ``total`` over ``count`` real targets.

    A per-rank mean would weight a rank's targets by 1 / its own count; in lines mode the
    ranks hold different numbers of real (non-padding) targets, so the loss is the rank's sum
    x N / (all real targets): DDP's average of the gradients is then exactly the gradient of
    the global mean. The mean is the same number on every rank, so a non-finite value on any
    rank makes every rank skip the step.
    """
    totals = torch.stack([total.detach().double(), count.double()]).to(collective_device())
    dist.all_reduce(totals)
    return total * (dist.get_world_size() / totals[1].item()), totals[0] / totals[1]


class TrainingForward(nn.Module):
    """One training step's forward pass (teacher forcing, or scheduled sampling's passes) as
    one module call: DDP expects one forward per backward. ``forward``: the task's
    ``forward(model, batch, state, eps)``."""

    def __init__(self, model: nn.Module, forward):
        super().__init__()
        self.model, self.task_forward = model, forward

    def forward(self, batch: dict, state, eps: float):
        return self.task_forward(self.model, batch, state, eps)


class Ranks:
    """This process's place among the training processes, and the few collectives the
    trainer needs. For a single process (``Ranks()``) every method is the identity."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @classmethod
    def current(cls) -> Ranks:
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size(), local_rank())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device: torch.device) -> torch.device:
        """``cuda`` means this rank's GPU."""
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", gpu_of(self.local_rank))
        return device

    def rows(self, total: int) -> slice:
        """This rank's contiguous share of ``total`` rows (shares differ by at most one)."""
        return slice(self.rank * total // self.world_size,
                     (self.rank + 1) * total // self.world_size)

    # -- collectives (all ranks call them at the same point) ------------------------------

    def sum(self, *values: float) -> tuple:
        """The values summed over ranks (float64)."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=collective_device())
        dist.all_reduce(t)
        return tuple(t.tolist())

    def agree(self, stop: bool, elapsed: float) -> tuple[bool, float]:
        """Stop if any rank was signalled; the slowest rank's clock. The decisions taken from
        them (stop and save, --max-time, a clock-driven schedule) are then the same on all."""
        if not self.distributed:
            return stop, elapsed
        t = torch.tensor([float(stop), elapsed], dtype=torch.float64, device=collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0]), float(t[1])

    def run_on_main(self, fn):
        """fn() on rank 0, its result sent to every rank. An error there is raised on every
        rank (the others would otherwise wait for rank 0 until the timeout)."""
        if not self.distributed:
            return fn()
        box = [None, None]
        if self.is_main:
            try:
                box[0] = fn()
            except Exception as e:
                code = getattr(e, "exit_code", 1 if isinstance(e, OSError) else 2)
                dist.broadcast_object_list([None, (str(e), code)], src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        if box[1] is not None:
            raise SameOnEveryRank(*box[1])
        return box[0]

    def main_first(self, fn):
        """fn() on rank 0, then on the other ranks: rank 0 fills a cache (the encoded corpus)
        that the others then read instead of writing it too."""
        done = []
        self.run_on_main(lambda: done.append(fn()))
        return done[0] if self.is_main else fn()

    def gather_rows(self, state: tuple | None) -> tuple | None:
        """The global carried state: every rank's rows (dim 1 of each (L, b, H) tensor) in
        rank order, on the CPU; unchanged for a single process."""
        if not self.distributed or state is None:
            return state
        parts = [None] * self.world_size
        dist.all_gather_object(parts, tuple(s.cpu() for s in state))
        return tuple(torch.cat([p[i] for p in parts], dim=1) for i in range(len(state)))

    def own_rows(self, state: tuple | None) -> tuple | None:
        """This rank's rows of a global carried state (saved by any number of ranks)."""
        if not self.distributed or state is None:
            return state
        rows = self.rows(state[0].shape[1])
        return tuple(s[:, rows].contiguous() for s in state)

    def rng_states(self, device: torch.device) -> list | None:
        """Every rank's generator states, in rank order (None for a single process)."""
        if not self.distributed:
            return None
        mine = {"cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        parts = [None] * self.world_size
        dist.all_gather_object(parts, mine)
        return parts

    # -- local ---------------------------------------------------------------------------

    def seed(self, seed: int, step: int = 0) -> None:
        """Rank r > 0 draws dropout and scheduled-sampling choices from its own stream (rank
        0 goes on with the one a single process uses)."""
        if self.rank > 0:
            torch.manual_seed((seed + 1_000_003 * self.rank + step) % 2**63)

    def restore_rng(self, trainer: dict, seed: int, device: torch.device) -> None:
        """Rank r > 0 takes its own saved generator state; in a run saved by fewer ranks
        there is none, and it starts a new stream (rank 0 restored the main state)."""
        if self.rank == 0:
            return
        saved = trainer.get("rng_ranks") or []
        if self.rank >= len(saved):
            self.seed(seed, trainer["step"])
            return
        torch.set_rng_state(saved[self.rank]["cpu"])
        if device.type == "cuda" and saved[self.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(saved[self.rank]["cuda"], device)

    def wrap(self, model: nn.Module, forward):
        """The DDP wrapper of the model's training forward (a task's ``forward``), or None
        for a single process."""
        if not self.distributed:
            return None
        step = TrainingForward(model, forward)
        device = next(model.parameters()).device
        return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda"
                                       else None)
