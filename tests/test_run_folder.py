"""The run folder under hostile conditions: two processes at once, a killed writer's leftovers,
a torn metrics line, and OS errors that must name their file and the fix."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rnnkit.cli import main, os_error_line
from rnnkit.errors import RnnkitError
from rnnkit.fileio import atomic_write, input_file
from rnnkit.training.run_folder import LOCK_NAME, RunLock

TINY = ["--preset", "tiny", "--seq-length", "16", "--eval-every", "10"]


def start_training(data, out, *extra):
    """A training process that runs until it is stopped."""
    return subprocess.Popen([sys.executable, "-m", "rnnkit", "train", "--data", str(data),
                             "--out", str(out), *TINY, "--max-steps", "1000000",
                             "--threads", "1", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_a_second_process_is_refused_while_a_run_holds_the_folder(tmp_path, hamlet, capsys):
    out = tmp_path / "run"
    proc = start_training(hamlet, out)
    try:
        wait_for(out / "metrics.jsonl", proc)
        for extra in ([], ["--resume"], ["--resume", "--seed", "7"]):
            code = main(["train", "--data", str(hamlet), "--out", str(out), *TINY, *extra])
            err = capsys.readouterr().err.strip()
            assert code == 2 and "\n" not in err, err
            assert f"run folder {str(out)!r} is in use by another rnnkit process " \
                   f"(PID {proc.pid})" in err, err
        assert proc.poll() is None  # the first run goes on untouched
    finally:
        proc.kill()  # kill -9: the kernel releases the lock with the process
        proc.wait()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["seed"] == 1337
    # no stale lock: the folder resumes at once
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "30"]) == 0


@pytest.mark.slow
def test_two_new_runs_started_together_leave_one_consistent_run(tmp_path, hamlet):
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "rnnkit", "train", "--data", str(hamlet),
                               "--out", str(out), *TINY, "--max-steps", "40", "--threads", "1",
                               "--seed", str(seed)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    winners = [i for i, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    loser = results[1 - winners[0]]
    assert loser[0] == 2 and ("is in use by another rnnkit process" in loser[1]
                              or "already holds a run" in loser[1]), loser
    seed = (1, 2)[winners[0]]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == seed
    assert json.loads((out / "last.json").read_text())["config"]["train"]["seed"] == seed
    assert json.loads((out / "best.json").read_text())["config"]["train"]["seed"] == seed
    assert not (out / LOCK_NAME).exists()


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    lock = RunLock(tmp_path)
    with pytest.raises(RnnkitError, match=f"in use by another rnnkit process \\(PID "
                                          f"{os.getpid()}\\)"):
        RunLock(tmp_path)
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).release()  # free again


def test_a_lock_held_by_a_killed_process_is_free(tmp_path):
    code = ("import sys, time; from pathlib import Path; from rnnkit.training.run_folder "
            "import RunLock; RunLock(Path(sys.argv[1])); print('locked', flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RnnkitError, match=f"PID {proc.pid}"):
        RunLock(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays, the lock does not
    RunLock(tmp_path).release()


def test_leftover_temp_files_are_removed_on_resume(tmp_path, hamlet, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(hamlet), "--out", str(out), *TINY,
                 "--max-steps", "10"]) == 0
    leftovers = [out / ".last.pt.k2j3h4.tmp", out / "samples" / ".step_000010.txt.x9y8.tmp"]
    for p in leftovers:
        p.write_bytes(b"half a file")
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "20"]) == 0
    assert "removed 2 unfinished temp file(s)" in capsys.readouterr().err
    assert not any(p.exists() for p in leftovers)


def test_a_torn_metrics_line_is_dropped_with_a_warning(tmp_path, hamlet, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(hamlet), "--out", str(out), *TINY,
                 "--max-steps", "10"]) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "train_lo')  # a crash mid-write
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "20"]) == 0
    err = capsys.readouterr().err
    assert "metrics.jsonl: dropped 1 unreadable line(s)" in err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 20


def test_a_failed_write_names_its_file(tmp_path):
    def full_disk(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "last.pt", full_disk)
    assert caught.value.filename == str(tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []  # no temp file left
    line = os_error_line(caught.value)
    assert line.startswith(f"No space left on device: {tmp_path / 'last.pt'}; free some space")


def test_a_write_error_names_the_file_asked_for_not_its_temp_file(tmp_path):
    target = tmp_path / "missing" / "model.safetensors"
    with pytest.raises(OSError) as caught:  # mkstemp's error names .model.safetensors.XXX.tmp
        atomic_write(target, lambda f: f.write(b"x"))
    assert caught.value.filename == str(target)


def test_os_errors_say_what_to_do_about_them():
    denied = os_error_line(PermissionError(errno.EACCES, "Permission denied", "corpus.txt"))
    assert denied == ("Permission denied: corpus.txt; check the permissions of that path "
                      "(reading it, or writing in its folder)")
    assert "writable folder" not in denied
    assert "(the file was not named)" in os_error_line(OSError(errno.EIO, "I/O error"))


def test_an_unreadable_data_file_says_so(tmp_path, monkeypatch):
    # (tests run as root, which no permission bit stops: os.access stands in)
    data = tmp_path / "secret.txt"
    data.write_text("text")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(RnnkitError, match="'.*secret.txt' is not readable \\(permission denied"):
        input_file(data)
