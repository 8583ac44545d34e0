"""Learning-rate schedules: pure functions of the step and the fraction of the budget done."""

from __future__ import annotations

import math

from .config import SS_DEFAULT_K, TrainConfig


def progress(step: int, elapsed: float, cfg: TrainConfig) -> float:
    """Fraction of the run done: by steps, or by time when --max-time ends the run sooner."""
    done = step / cfg.max_steps
    if cfg.max_time > 0:
        done = max(done, elapsed / cfg.max_time)
    return min(done, 1.0)


def lr_at(step: int, frac: float, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) when ``frac`` of the run is done.

    Resuming with a larger --max-steps lowers ``frac``, so the cosine schedule is stretched
    over the new length (the rate rises back to the value for that fraction).
    """
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "cosine":
        floor = cfg.min_lr_frac
        scale = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    elif cfg.lr_schedule == "step":
        scale = cfg.lr_decay_factor ** (step // cfg.lr_decay_every)
    else:
        scale = 1.0
    return cfg.learning_rate * warmup * scale


def teacher_forcing_prob(step: int, cfg: TrainConfig) -> float:
    """eps_i, the probability that the input at a position is the true previous token.

    Bengio et al. 2015, section 2.4, with i the optimizer step; every schedule is floored at
    ``ss_min``. "none" is plain teacher forcing (eps = 1).
    """
    kind = cfg.scheduled_sampling
    if kind == "none":
        return 1.0
    k = cfg.ss_k if cfg.ss_k is not None else SS_DEFAULT_K[kind]
    if kind == "linear":
        eps = k - cfg.ss_c * step
    elif kind == "exponential":
        eps = k ** step
    elif kind == "inverse_sigmoid":
        eps = k / (k + math.exp(min(step / k, 700.0)))
    else:
        eps = k
    return max(cfg.ss_min, min(1.0, eps))
