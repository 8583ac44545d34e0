"""What the example scripts (examples/*.py) share; each is a standalone file, so it lives here.

    metrics, seconds = train_timed(model_cfg, cfg, out / "lm", quiet=args.quiet)
    plt = pyplot()   # None without matplotlib: the example then skips its plot
    results = {..., "provenance": provenance("examples/captioning.py")}
"""

from __future__ import annotations

import datetime
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

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


def provenance(script: str) -> dict:
    """Where and how an example's numbers were measured: the date, the commit (and whether the
    package's source had changes), the CPU, the threads, torch and the command."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    cpu = platform.machine()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": (commit or "unknown") + ("+uncommitted changes in src" if dirty else ""),
            "cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(),
            "command": shlex.join(["python", script, *sys.argv[1:]])}
