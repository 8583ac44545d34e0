"""Shared by the benchmark scripts: time a function, print the result as JSON, save it."""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def provenance() -> dict:
    """Where and how a result was measured: the date, the commit, the CPU, the threads, torch,
    and the command, so that every number can be traced to a run."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": (commit or "unknown") + ("+uncommitted changes in src" if dirty else ""),
            "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def emit(result: dict, save: str | None = None) -> dict:
    """Print ``result`` as JSON (with its ``provenance``) and write it to ``save`` if given."""
    result = {**result, "provenance": result.get("provenance") or provenance()}
    text = json.dumps(result, indent=2)
    print(text)
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        Path(save).write_text(text + "\n")
    return result


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call (kernels are picked and
    weights laid out on the first call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
