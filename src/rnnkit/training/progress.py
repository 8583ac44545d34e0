"""The progress bar of fit(): steps done out of the steps the run will take.

A run limited by --max-time ends at --max-steps or when its clock runs out, whichever comes
first: its total is the steps the pace so far (evaluations included) reaches by then, updated
at every step, so the bar's fill and ETA hold for the clock as well as for the steps.
"""

from __future__ import annotations

import math
import sys

from tqdm import tqdm


def steps_by_end(step: int, elapsed: float, start: tuple[int, float], max_steps: int,
                 max_time: float) -> int:
    """The step the run will end at: ``max_steps``, or sooner where ``max_time`` seconds come
    first at the pace since ``start`` (step, elapsed)."""
    done, seconds = step - start[0], elapsed - start[1]
    if max_time <= 0 or done <= 0 or seconds <= 0:
        return max_steps
    by_clock = step + math.ceil(done / seconds * max(max_time - elapsed, 0.0))
    return max(step, min(max_steps, by_clock))


class StepBar(tqdm):
    """tqdm over optimizer steps, shown by rank 0 (``show``) on a terminal."""

    def __init__(self, cfg, step: int, elapsed: float, show: bool):
        super().__init__(total=cfg.max_steps, initial=step, disable=None if show else True,
                         file=sys.stderr, dynamic_ncols=True, unit="step")
        self.limits, self.start = (cfg.max_steps, cfg.max_time), (step, elapsed)

    def advance(self, step: int, elapsed: float) -> None:
        """Now at ``step`` (back, after a rollback), ``elapsed`` seconds into the run."""
        self.total = steps_by_end(step, elapsed, self.start, *self.limits)
        if step < self.n:  # rolled back: tqdm only counts forward
            self.n = step
            self.refresh()
        else:
            self.update(step - self.n)

    def show_record(self, record: dict, rates: dict, rate_key: str) -> None:
        """The latest metrics record beside the bar."""
        loss = record["train_loss"]  # None if every step since the last record was skipped
        self.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-",
                         tf=f"{rates['teacher_forcing_prob']:.2f}",
                         rate=f"{record[rate_key]:.0f}")
