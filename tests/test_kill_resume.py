"""kill -9 at random moments, --resume each time: the run ends as if never killed."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "crash_test.py"


def crash_test():
    spec = importlib.util.spec_from_file_location("crash_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_kill_9s_then_resume_equal_an_uninterrupted_run(tmp_path, hamlet):
    module = crash_test()
    args = list(module.TRAIN)
    args[args.index("--max-steps") + 1] = "2500"  # room for three kills on a fast machine too
    result = module.crash_and_compare(str(hamlet), kills=3, seed=1, workdir=str(tmp_path),
                                      args=args)
    assert result["kills"] == 3
    assert result["same_weights"] and result["same_losses"]
    assert result["steps_unique_and_complete"]


@pytest.mark.slow
def test_sigterm_saves_and_says_how_to_resume(tmp_path, hamlet):
    import json
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "train", "--data", str(hamlet),
                             "--out", str(out), "--preset", "tiny", "--max-steps", "100000",
                             "--eval-every", "100000", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
        time.sleep(0.05)  # training has started
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("rnnkit: error: stopped by SIGTERM at step")
    assert "rnnkit train --out" in err and "--resume" in err
    step = json.loads((out / "last.json").read_text())["step"]
    assert step > 0  # saved where it stopped, not only at the last evaluation
