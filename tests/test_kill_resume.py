"""kill -9 at an arbitrary moment, then --resume: the run ends exactly as if never killed."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnkit.cli import main
from rnnkit.training.checkpoint import load_checkpoint

ARGS = ["--preset", "tiny", "--max-steps", "1500", "--eval-every", "50", "--seq-length", "16",
        "--dropout", "0.1", "--num-layers", "2", "--threads", "1"]


def checkpoint_step(run) -> int:
    try:  # last.json is replaced atomically: it is whole or absent
        return json.loads((run / "last.json").read_text())["step"]
    except FileNotFoundError:
        return -1


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, hamlet):
    train = ["train", "--data", str(hamlet), *ARGS]
    assert main([*train, "--out", str(tmp_path / "whole")]) == 0

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", *train, "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while checkpoint_step(cut) < 50 and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(random.Random(0).uniform(0.05, 0.5))  # somewhere after the first evaluation
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = json.loads((cut / "last.json").read_text())["step"]
    assert 0 < killed_at < 1500

    assert main(["train", "--out", str(cut), "--resume"]) == 0
    whole, resumed = records(tmp_path / "whole"), records(cut)
    assert [r["step"] for r in resumed] == [r["step"] for r in whole]  # none missing or doubled
    for a, b in zip(whole, resumed):
        assert (a["train_loss"], a.get("val_loss")) == (b["train_loss"], b.get("val_loss"))
    wa, wb = (load_checkpoint(r / "last.pt")["model"] for r in (tmp_path / "whole", cut))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
