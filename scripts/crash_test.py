"""Crash test: kill -9 a training run at random moments, resume it each time, and compare it
with an uninterrupted run of the same settings.

    python scripts/crash_test.py --data tests/fixtures/hamlet_excerpt.txt --kills 10

Passes (exit 0, JSON with "identical": true) when the final weights are bit-identical, every
train and val loss in metrics.jsonl is equal, and no step is missing or doubled.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TRAIN = ["--preset", "tiny", "--max-steps", "1500", "--eval-every", "50", "--seq-length", "16",
         "--dropout", "0.1", "--num-layers", "2", "--threads", "1"]


def rnnkit(*args, wait=True):
    cmd = [sys.executable, "-m", "rnnkit", *map(str, args)]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def checkpoint_step(run: Path) -> int:
    try:  # last.json is replaced atomically: whole or absent
        return json.loads((run / "last.json").read_text())["step"]
    except FileNotFoundError:
        return -1


def wait_for_training(run: Path, since: float, proc: subprocess.Popen,
                      timeout: float = 600.0) -> None:
    """Until the run writes metrics.jsonl (it opens it once its checkpoint is loaded, then
    writes a record every few steps) or ends. A fixed delay instead kills a run on a busy
    machine before it ever reaches a checkpoint, again and again."""
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + timeout
    while proc.poll() is None:
        if metrics.exists() and metrics.stat().st_mtime >= since:
            return
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the run wrote no metrics in {timeout:g} s")
        time.sleep(0.05)


def kill_at_random(run: Path, args: list[str], rng: random.Random) -> int:
    """Start or resume the run, kill -9 it at a random moment of its training; the step of
    its checkpoint then, or -1 when it finished before the kill."""
    first = not (run / "last.pt").exists()
    since = time.time()
    proc = rnnkit("train", "--out", run, *args, *([] if first else ["--resume"]), wait=False)
    wait_for_training(run, since, proc)
    time.sleep(rng.uniform(0.0, 2.5))  # somewhere in training: a step, a record, a checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"the run failed by itself (exit {proc.returncode})")
    return checkpoint_step(run) if proc.returncode == -signal.SIGKILL else -1


def records(run: Path) -> list[tuple]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in map(json.loads, lines)]


def compare(whole: Path, cut: Path) -> dict:
    a, b = (torch.load(r / "last.pt", weights_only=True)["model"] for r in (whole, cut))
    steps = [r[0] for r in records(cut)]
    return {"same_weights": all(torch.equal(a[k], b[k]) for k in a),
            "same_losses": records(whole) == records(cut),
            "steps_unique_and_complete": steps == [r[0] for r in records(whole)]
            and len(steps) == len(set(steps))}


def crash_and_compare(data: str, kills: int, seed: int = 0, workdir: str | None = None,
                      args: list[str] = TRAIN) -> dict:
    work = Path(workdir or tempfile.mkdtemp(prefix="rnnkit_crash_"))
    train = ["--data", data, *args]
    max_steps = int(args[args.index("--max-steps") + 1])
    done = rnnkit("train", "--out", work / "whole", *train)
    assert done.returncode == 0, done.stderr
    rng, killed_at = random.Random(seed), []
    while len(killed_at) < kills and checkpoint_step(work / "cut") < max_steps:
        step = kill_at_random(work / "cut", train, rng)
        if step >= 0:  # -1: it finished before the kill, which is not a kill
            killed_at.append(step)
    finish = rnnkit("train", "--out", work / "cut", "--resume")
    assert finish.returncode == 0, finish.stderr
    result = {"kills": len(killed_at), "checkpoint_steps_at_kills": killed_at,
              **compare(work / "whole", work / "cut")}
    result["identical"] = all(result[k] for k in ("same_weights", "same_losses",
                                                  "steps_unique_and_complete"))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=4000)
    a = p.parse_args(argv)
    args = list(TRAIN)
    args[args.index("--max-steps") + 1] = str(a.max_steps)
    result = crash_and_compare(a.data, a.kills, a.seed, args=args)
    print(json.dumps(result, indent=2))
    return 0 if result["identical"] and result["kills"] >= a.kills else 1


if __name__ == "__main__":
    sys.exit(main())
