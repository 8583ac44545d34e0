"""Speed on a busy CPU: rnnkit commands alone and beside other trainings, with the default
threads (shared with other processes, fair_share.py) and with torch's fixed one-per-core.

    python benchmarks/bench_contention.py --save benchmarks/results/contention.json

Every command runs through the CLI, in processes of its own, as a user runs them:

    train   a 2x64 LSTM, --seq-length 32 --batch-size 8, for --seconds of training (--max-time),
            alone (the median of --repeats runs) and then two at once; steps/s = steps
            reached / seconds. The runs alone alternate between the two settings in ABBA
            pairs, and each pair's ratio says what sharing costs a run alone
    eval    `rnnkit eval` of a 40 kB text (its wall time, start-up included), alone and then
            beside two trainings
    sample  `rnnkit sample --length 2000` of the same model, alone and beside two trainings

Each is measured twice in the same run: with the default flags (``--threads 0``: one thread
per core that other processes leave free) and with ``--threads`` fixed at the machine's core
count (torch's own default, what every command did before). Prints one JSON object with the
rates and, for each, the share kept beside other work (fair share on 2 cores and two runs: 50%).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit

ROOT = Path(__file__).resolve().parent.parent
TEXT = ROOT / "tests" / "fixtures" / "hamlet_excerpt.txt"  # 40 kB of Hamlet
MODEL = ["--rnn-size", "64", "--num-layers", "2", "--seq-length", "32", "--batch-size", "8"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="training time of each run")
    p.add_argument("--repeats", type=int, default=6,
                   help="runs alone for each setting, in ABBA pairs")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def rnnkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnkit", *args]


def train(out: Path, seconds: float, threads: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        rnnkit("train", "--data", str(TEXT), "--out", str(out), *MODEL, "--max-steps", "1000000",
               "--max-time", str(seconds), "--eval-every", "1000000", "--log-every", "50",
               *threads),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def steps_of(out: Path) -> int:
    return json.loads((out / "last.json").read_text())["step"]


def trainings(folder: Path, n: int, seconds: float, threads: list[str]) -> list[float]:
    """Steps per second of ``n`` trainings started together."""
    runs = [folder / f"run{i}" for i in range(n)]
    procs = [train(run, seconds, threads) for run in runs]
    for p in procs:
        if p.wait() != 0:
            sys.exit("bench_contention: a training failed")
    return [round(steps_of(run) / seconds, 1) for run in runs]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_contention: {' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def beside_two(folder: Path, seconds: float, threads: list[str], cmd: list[str]) -> float:
    """Wall time of ``cmd`` while two trainings run (started first, and still running)."""
    procs = [train(folder / f"busy{i}", seconds, threads) for i in range(2)]
    time.sleep(min(5.0, seconds / 4))  # past their start-up: both are training
    took = wall(cmd)
    for p in procs:
        p.terminate()
        p.wait()
    return took


def measure(folder: Path, model: Path, seconds: float, threads: list[str],
            alone: float) -> dict:
    two = trainings(folder / "two", 2, seconds, threads)
    evaluate = rnnkit("eval", str(model), "--data", str(TEXT), "--split", "all", *threads)
    sample = rnnkit("sample", str(model), "--length", "2000", *threads)
    eval_alone, sample_alone = wall(evaluate), wall(sample)
    eval_busy = beside_two(folder / "e", seconds * 3, threads, evaluate)
    sample_busy = beside_two(folder / "s", seconds * 3, threads, sample)
    return {
        "train_steps_per_sec_alone": alone,
        "train_steps_per_sec_two_at_once": two,
        "train_share_kept": round(min(two) / alone, 3),
        "eval_seconds_alone": round(eval_alone, 2),
        "eval_seconds_beside_two_trainings": round(eval_busy, 2),
        "eval_speed_kept": round(eval_alone / eval_busy, 3),
        "sample_seconds_alone": round(sample_alone, 2),
        "sample_seconds_beside_two_trainings": round(sample_busy, 2),
        "sample_speed_kept": round(sample_alone / sample_busy, 3),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = folder / "model"
        if train(model, 5.0, []).wait() != 0:
            sys.exit("bench_contention: could not train the model to evaluate")
        settings = {"shared": [], "fixed": ["--threads", str(cores)]}
        # a single run's pace swings by up to 1.5x from run to run on a shared host, and
        # drifts: the runs alone go in pairs, in ABBA order (shared first, then fixed first),
        # so a drift weighs on both settings alike, and each pair gives one ratio
        alone = {name: [] for name in settings}
        for i in range(args.repeats):
            order = list(settings) if i % 2 == 0 else list(settings)[::-1]
            for name in order:
                alone[name] += trainings(folder / f"alone-{name}-{i}", 1, args.seconds,
                                         settings[name])
        ratios = [round(s / f, 3) for s, f in zip(alone["shared"], alone["fixed"], strict=True)]
        fixed, shared = (measure(folder / name, model, args.seconds, settings[name],
                                 round(statistics.median(alone[name]), 1))
                         for name in ("fixed", "shared"))
        fixed["train_steps_per_sec_alone_runs"] = alone["fixed"]
        shared["train_steps_per_sec_alone_runs"] = alone["shared"]
    emit({"benchmark": "speed_beside_other_work", "cores": cores, "seconds": args.seconds,
          "model": "lstm 2x64, seq_length 32, batch_size 8, " + TEXT.name,
          "default_threads_shared": shared, "threads_fixed_at_cores": fixed,
          # the single-run cost of sharing: each pair's shared / fixed steps/s, and the median
          "alone_shared_over_fixed": {"pairs": ratios,
                                      "median": round(statistics.median(ratios), 3)}},
         args.save)


if __name__ == "__main__":
    main()
