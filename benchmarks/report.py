"""Shared by the benchmark scripts: time a function, print the result as JSON, save it."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from rnnkit import examples_support


def provenance() -> dict:
    """Where and how a result was measured: the date, the commit, the CPU, the threads, torch,
    and the command, so that every number can be traced to a run (as the examples record it)."""
    return examples_support.provenance(f"benchmarks/{Path(sys.argv[0]).name}")


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
