"""Training steps with freed memory kept by the process (rnnkit/allocator.py, what the trainer
does) against glibc's default malloc, in one run.

    python benchmarks/bench_allocator.py --save benchmarks/results/allocator.json

Each arm is `rnnkit train --preset PRESET --cell CELL --max-steps N` in a fresh process (the
setting is process-wide and cannot be undone), the two arms alternated --repeats times. The
default arm is the same command with allocator.keep_freed_memory replaced by a no-op. Prints
each arm's seconds per step (timed by the trainer, from step --warm-steps to the last, so the
start-up and the final evaluation drop out), the process's CPU seconds in the system and in
user code, its peak resident memory, and the speed-up per cell (median over the repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import emit

# The arm runs in its own interpreter; its last stdout line is its resource use and whether
# the trainer's setting took effect.
CHILD = """
import json, resource, sys
from rnnkit import allocator
keep, kept = allocator.keep_freed_memory, []
allocator.keep_freed_memory = lambda: kept.append(sys.argv[1] == "kept" and keep())
from rnnkit.cli import main
code = main(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"user_s": r.ru_utime, "system_s": r.ru_stime,
                  "peak_rss_mb": r.ru_maxrss / 1024, "memory_kept": any(kept)}))
sys.exit(code)
"""
ARMS = ("default", "kept")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="shakespeare-5min")
    p.add_argument("--data", default=None, help="a text file (default: the preset's corpus)")
    p.add_argument("--cells", nargs="+", default=["lstm", "gru", "mingru"])
    p.add_argument("--steps", type=int, default=60, help="training steps of each arm")
    p.add_argument("--warm-steps", type=int, default=10, help="steps not timed")
    p.add_argument("--repeats", type=int, default=2, help="runs of each arm, alternated")
    p.add_argument("--save", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if not 0 < args.warm_steps < args.steps:
        p.error("--warm-steps must be between 1 and --steps - 1")
    return args


def one_arm(arm: str, out: Path, args, cell: str) -> dict:
    cmd = [sys.executable, "-c", CHILD, arm, "train", "--preset", args.preset, "--cell", cell,
           "--out", str(out), "--time-budget", "0", "--max-steps", str(args.steps),
           "--eval-every", "1000000", "--log-every", str(args.warm_steps)]
    if args.data:
        cmd += ["--data", args.data]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_allocator: {cell} ({arm}) failed:\n{done.stderr[-2000:]}")
    usage = json.loads(done.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    at = {r["step"]: r["elapsed"] for r in records}
    per_step = (at[args.steps] - at[args.warm_steps]) / (args.steps - args.warm_steps)
    return {"seconds_per_step": round(per_step, 4),
            **{k: v if isinstance(v, bool) else round(v, 1) for k, v in usage.items()}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    cells = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            runs = {arm: [] for arm in ARMS}
            for i in range(args.repeats):
                for arm in ARMS:
                    runs[arm].append(one_arm(arm, Path(tmp) / f"{cell}-{arm}-{i}", args, cell))
            median = {arm: statistics.median(r["seconds_per_step"] for r in runs[arm])
                      for arm in ARMS}
            cells[cell] = {**runs, "speedup": round(median["default"] / median["kept"], 3)}
    return emit({"benchmark": "allocator", "preset": args.preset, "steps": args.steps,
                 "warm_steps": args.warm_steps, "repeats": args.repeats, "cells": cells},
                args.save)


if __name__ == "__main__":
    main()
