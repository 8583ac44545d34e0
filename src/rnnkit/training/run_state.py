"""What a run carries besides its weights (RunState), in and out of last.pt."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import RnnkitError
from .averaging import WeightAverage
from .precision import Update

# a train loss this many times the first step's (an untrained model's: about chance), or
# above this many nats when that was below 1, has diverged: a bad step, as a NaN is
DIVERGED = 10.0


@dataclass
class RunState:
    """What changes during training besides weights and optimizer, saved in last.pt."""
    step: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    loss_sum: float = 0.0  # train loss summed since the last metrics record
    loss_count: int = 0
    carried: tuple | None = None  # hidden state carried into the next TBPTT window
    last_metrics: dict = field(default_factory=dict)
    skipped: int = 0  # steps skipped for a non-finite loss or gradient, in all
    bad_streak: int = 0  # of them, in a row just now
    rollbacks: int = 0
    lr_scale: float = 1.0  # halved at every rollback
    overflows: int = 0  # fp16 steps the gradient scaler skipped (not bad steps)
    loss_ceiling: float = math.inf  # a train loss above it means divergence: set at step 1
    # --time-budget's fit, {"seconds", "steps", "cap"}: the steps that fit (budget.py)
    budget_fit: dict | None = None

    def count_step(self, loss: float, outcome: Update) -> None:
        """Count a step taken: its loss toward the average, its outcome toward the streak of
        bad steps that ends in a rollback."""
        self.step += 1
        if outcome is not Update.BAD:  # applied, or an fp16 overflow: the loss is real
            self.loss_sum += loss
            self.loss_count += 1
        if outcome is Update.OVERFLOW:  # the scaler's routine: the bad streak is untouched
            self.overflows += 1
        elif outcome:
            self.bad_streak = 0
            if self.loss_ceiling == math.inf:  # the untrained model's loss (about chance)
                self.loss_ceiling = DIVERGED * max(loss, 1.0)
        else:  # skipped
            self.skipped, self.bad_streak = self.skipped + 1, self.bad_streak + 1

    def roll_back_to(self, restored: RunState) -> None:
        """Become ``restored`` (the last checkpoint's state) with half the learning rate,
        keeping the counts that span rollbacks."""
        kept = {"skipped": self.skipped, "rollbacks": self.rollbacks + 1,
                "overflows": self.overflows, "loss_ceiling": self.loss_ceiling,
                "lr_scale": self.lr_scale / 2, "budget_fit": self.budget_fit}
        self.__dict__.update(vars(restored), **kept)


def restore_training(payload: dict, model, optimizer, scaler, dist, seed: int,
                     device: torch.device, path: Path, average: WeightAverage) -> RunState:
    """Load the weights, their ``average`` (--ema), the optimizer, scaler and RNG states of a
    checkpoint (``path``, for the message) into a run; returns its RunState."""
    model.load_state_dict(payload["model"])
    if "trainer" not in payload:
        raise RnnkitError(f"{path} has no training state (a best.pt copied over it?); resume "
                          "needs the run's own last.pt")
    t = payload["trainer"]
    average.restore(t)
    optimizer.load_state_dict(t["optimizer"])
    if scaler.is_enabled() and t.get("scaler"):  # absent: saved by an fp32/bf16 run
        scaler.load_state_dict(t["scaler"])
    torch.set_rng_state(t["rng_cpu"])
    if torch.cuda.is_available() and t.get("rng_cuda"):
        torch.cuda.set_rng_state_all(t["rng_cuda"])
    dist.restore_rng(t, seed, device)
    carried = dist.own_rows(t["carried"])  # the checkpoint holds every rank's rows
    carried = tuple(s.to(device) for s in carried) if carried is not None else None
    return RunState(t["step"], t["elapsed"], t["best_val"], t["loss_sum"], t["loss_count"],
                    carried, payload["meta"]["metrics"], t.get("skipped", 0),
                    t.get("bad_streak", 0), t.get("rollbacks", 0), t.get("lr_scale", 1.0),
                    t.get("overflows", 0), t.get("loss_ceiling", math.inf),
                    t.get("budget_fit"))


def trainer_state(run: RunState, optimizer, scaler, dist, device: torch.device) -> dict:
    """What last.pt holds besides the weights. Collectives: every rank calls it."""
    carried = dist.gather_rows(run.carried)  # every rank's streams, in rank order
    trainer = {"optimizer": optimizer.state_dict(), "step": run.step,
               "elapsed": run.elapsed, "best_val": run.best_val,
               "loss_sum": run.loss_sum, "loss_count": run.loss_count,
               "skipped": run.skipped, "rollbacks": run.rollbacks,
               "bad_streak": run.bad_streak,
               "lr_scale": run.lr_scale, "loss_ceiling": run.loss_ceiling,
               "budget_fit": run.budget_fit,
               "carried": list(carried) if carried is not None else None,
               "rng_cpu": torch.get_rng_state(),
               "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
               else []}
    ranks_rng = dist.rng_states(device)
    if ranks_rng is not None:
        trainer["rng_ranks"] = ranks_rng
    if scaler.is_enabled():  # fp16: the scale and its growth tracker, for exact resume
        trainer["scaler"] = scaler.state_dict()
        trainer["overflows"] = run.overflows
    return trainer
