"""--time-budget SECONDS: a run that fits its number of steps to the clock of the machine it
runs on, then trains by steps alone.

A clock limit (--max-time) stops a run wherever the clock says, so its schedule and its end
depend on the machine's load at every step. A budgeted run instead times its steps from 5% of
the budget on, and its evaluations, and fixes --max-steps to the steps that fit the budget
(never more than the --max-steps it was given): a first time at 10% of the budget, so that
the cosine schedule is about right early, and for good after a second look, which times the
steps over the next 20% of the budget (four times the first window) with one more
evaluation: a machine's pace drifts by several percent from minute to minute, and the 5%-10%
window alone missed the pace of the rest of a run by up to 20%. A step that took more than
OUTLIER times the window's median (an evaluation with its checkpoints) is left out of the
pace, since the fit counts the evaluations to come on their own. From then on it is a run of
that many steps: the schedule ends on time, and the fitted count is written to config.json
(and to every checkpoint's meta), so --resume continues the same run exactly.

On --resume the run keeps its fitted steps while --time-budget is unchanged (a --max-steps
other than the fitted count or the one the fit started from is taken as the user's: it extends
or shortens the run); a run resumed before its final fit times its pace again and fits then;
another --time-budget fits again from where the run stands (a first fit on less than a fifth
of the budget is followed by a second look there too), and --time-budget 0 trains to
--max-steps. A run that reaches its first count before the second look ends there, fitted.

The fit assumes the pace it timed holds: a machine that gets busier later makes the run
longer than its budget (fair_share.py gives threads back to other processes).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field

# The pace is timed from the first step past WARM_STEPS and PACE_FROM of the budget to the
# first past FIT_AT of it (at least MIN_TIMED steps), then from the first fit on over
# FINAL_AT - FIT_AT of the budget.
# The first steps pay for allocation, thread start-up and, with --compile, the compilation;
# a 2x384 LSTM's steps then still ran 7% slower over the first 5% of the budget than later
# on, which a fit on them left unused.
WARM_STEPS = 2
PACE_FROM = 0.05
FIT_AT = 0.10
FINAL_AT = 0.30
MIN_TIMED = 3
OUTLIER = 4.0


def resumed_max_steps(time_budget: float, max_steps: int, fit: dict | None) -> int:
    """--max-steps for a resumed run whose --max-steps is the fitted count or the cap the fit
    started from (config.json's, or the settings the run began with): the fitted count for
    the same --time-budget, the cap again for another one (which fits anew). Any other
    --max-steps is the user's."""
    if not fit or max_steps not in (fit["steps"], fit["cap"]) or time_budget <= 0:
        return max_steps
    return fit["steps"] if fit["seconds"] == time_budget else fit["cap"]


def still_to_fit(time_budget: float, fit: dict | None) -> bool:
    """Whether the run must (still, or again) fit its steps to --time-budget: no fit for
    this budget yet, or only the first one (a fit without "final" is from before the second
    look, and final)."""
    return time_budget > 0 and (fit is None or fit["seconds"] != time_budget
                                or not fit.get("final", True))


def fitted_for(time_budget: float, fit: dict | None) -> bool:
    """Whether ``fit`` (first or final) was made for this --time-budget."""
    return fit is not None and fit["seconds"] == time_budget


def how_to_extend(time_budget: float, fit: dict | None) -> str:
    """What a finished run needs to train on."""
    if fit and not still_to_fit(time_budget, fit):
        return (f"--time-budget 0 --max-steps N (its --time-budget {fit['seconds']:g} fitted "
                f"{fit['steps']} steps)")
    return "a larger --max-steps or --max-time"


class BudgetFit:
    """--time-budget in one Trainer: when the timing of the pace begins, when the fit is due,
    and the fit itself."""

    def __init__(self):
        self.pace: Pace | None = None
        self.save_seconds = 0.0  # the latest checkpoint with trainer state took this long
        self.seen = -1  # the latest step due() saw

    def due(self, cfg, run, first: int) -> bool:
        """After a step (the run's fit() began at step ``first``): begin timing the pace
        when it is time; whether the fit is due now."""
        if run.step <= self.seen:  # rolled back: the steps done again would count twice
            self.pace = None
        self.seen = run.step
        fit = run.budget_fit
        if fitted_for(cfg.time_budget, fit) and run.step >= fit["steps"]:
            fit["final"] = True  # the run ends at its first count: nothing left to look at
        if not still_to_fit(cfg.time_budget, fit):
            return False
        if self.pace is None:
            if pace_starts(run.step, first, run.elapsed, cfg.time_budget):
                self.pace = Pace(run.step, run.elapsed)
        else:
            self.pace.add(run.elapsed)
        return time_to_fit(run.step, run.elapsed, cfg.time_budget, self.pace,
                           second=fitted_for(cfg.time_budget, run.budget_fit))

    def fit(self, cfg, run, per_eval: float, log):
        """cfg with --max-steps fitted; sets ``run.budget_fit`` and ``log``s what it measured.
        ``per_eval``: this evaluation's seconds with its checkpoints (the slowest rank's)."""
        per_step = self.pace.per_step(run.step, run.elapsed)
        first = run.budget_fit if fitted_for(cfg.time_budget, run.budget_fit) else None
        # the second look fits under the cap the first one started from
        cap = first["cap"] if first and cfg.max_steps == first["steps"] else cfg.max_steps
        steps = fitted_steps(run.step, run.elapsed + per_eval, cfg.time_budget, per_step,
                             per_eval, cfg.eval_every, cap)
        timed = run.elapsed - self.pace.elapsed
        # the run ends now when no step fits: nothing left to look at either
        final = (first is not None or steps <= run.step
                 or timed >= (FINAL_AT - FIT_AT) * cfg.time_budget)
        if not final:  # the second look times the steps after this evaluation
            self.pace = None
        run.budget_fit = {"seconds": cfg.time_budget, "steps": steps, "cap": cap,
                          "final": final}
        then = ("config.json records it" if final else
                f"a second look at {FINAL_AT:.0%} of the budget fixes the count")
        log(f"time budget {cfg.time_budget:g} s: {per_step:.3g} s a step and {per_eval:.3g} s "
            f"an evaluation here, so {steps} steps (--max-steps {cap} at most); {then}")
        return dataclasses.replace(cfg, max_steps=steps)


@dataclass
class Pace:
    """Where the clock stood when the timing of the pace began, and each step's seconds
    since (``add`` after every step)."""
    step: int
    elapsed: float
    seconds: list[float] = field(default_factory=list)
    last: float | None = None

    def add(self, elapsed: float) -> None:
        self.seconds.append(elapsed - (self.elapsed if self.last is None else self.last))
        self.last = elapsed

    def per_step(self, step: int, elapsed: float) -> float:
        """Seconds a step; a step that took more than OUTLIER times the median one (it held an
        evaluation and its checkpoints) is left out."""
        if not self.seconds:
            return (elapsed - self.elapsed) / max(step - self.step, 1)
        typical = statistics.median(self.seconds)
        kept = [s for s in self.seconds if s <= OUTLIER * typical]
        return sum(kept) / len(kept)


def pace_starts(step: int, first: int, elapsed: float, budget: float) -> bool:
    """Whether the timing of the pace begins at ``step`` (the run began at ``first``)."""
    return step >= first + WARM_STEPS and elapsed >= PACE_FROM * budget


def time_to_fit(step: int, elapsed: float, budget: float, start: Pace | None,
                second: bool = False) -> bool:
    """Whether the run, at ``step`` after ``elapsed`` seconds, has timed enough steps: up to
    FIT_AT of the budget for the first fit, over FINAL_AT - FIT_AT of it for the second."""
    if start is None or step - start.step < MIN_TIMED:
        return False
    if second:  # a long first evaluation must not shorten the window
        return elapsed - start.elapsed >= (FINAL_AT - FIT_AT) * budget
    return elapsed >= FIT_AT * budget


def evaluations_between(after: int, until: int, eval_every: int) -> int:
    """Evaluations at steps in (after, until]: every eval_every-th step, and the last one."""
    return until // eval_every - after // eval_every + (until > after and until % eval_every != 0)


def fitted_steps(step: int, elapsed: float, budget: float, per_step: float,
                 per_eval: float, eval_every: int, cap: int) -> int:
    """The largest total step count N in [step, cap] whose remaining steps and evaluations,
    at ``per_step`` and ``per_eval`` seconds each, end within ``budget`` seconds; ``step``
    itself when none does (the run ends now)."""
    left = budget - elapsed

    def fits(n: int) -> bool:
        return (n - step) * per_step + evaluations_between(step, n, eval_every) * per_eval <= left

    if cap <= step or not fits(step + 1):
        return step
    hi = min(cap, step + math.floor(left / max(per_step, 1e-9)))
    lo = step + 1
    while lo < hi:  # the time is non-decreasing in n: the last n that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo
