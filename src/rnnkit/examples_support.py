"""What the example scripts (examples/*.py) share; each is a standalone file, so it lives here.

    metrics, seconds = train_timed(model_cfg, cfg, out / "lm", quiet=args.quiet)
    plt = pyplot()   # None without matplotlib: the example then skips its plot
"""

from __future__ import annotations

import time
from pathlib import Path

from .api import train


def train_timed(model_cfg, cfg, run: str | Path, quiet: bool = False) -> tuple[dict, float]:
    """``rnnkit.train`` into ``run``, its log printed unless ``quiet``; returns the last
    metrics and the wall seconds the training took."""
    t0 = time.perf_counter()
    metrics = train(model_cfg, cfg, out=run, log=(lambda _: None) if quiet else print)
    return metrics, time.perf_counter() - t0


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files, no window), or None when matplotlib is
    not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
