"""Hostile values for rnnkit sample, predict and demo: each is one ``rnnkit: error:`` line (the
same values raise RnnkitError from the Python API), and a streamed sample runs in flat memory
however long it is asked to be."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rnnkit.api import load, sample, sample_model
from rnnkit.cli import main
from rnnkit.errors import RnnkitError

FIXTURE = Path(__file__).parent / "fixtures" / "hamlet_excerpt.txt"
TINY = ["--rnn-size", "32", "--num-layers", "1", "--seq-length", "16", "--batch-size", "4",
        "--max-steps", "5", "--eval-every", "5"]
HUGE = str(2**70)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A language model run ("lm") and a seq2seq run ("pairs"), each trained for 5 steps."""
    root = tmp_path_factory.mktemp("limits")
    assert main(["train", "--data", str(FIXTURE), "--out", str(root / "lm"), *TINY]) == 0
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"{i}\t{i * 2}\n" for i in range(200)))
    (root / "inputs.txt").write_text("12\n7\n")
    assert main(["train", "--task", "seq2seq", "--data", str(pairs), "--out",
                 str(root / "pairs"), *TINY]) == 0
    return root


def one_error_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) != 0
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), err
    return lines[0]


SAMPLE_CASES = {
    "seed 2**70": (["--seed", HUGE], "--seed must be between 0 and 4294967295"),
    "seed -1": (["--seed", "-1"], "--seed must be between 0 and"),
    "threads 100000": (["--threads", "100000"], "--threads must be between 0"),
    "threads -1": (["--threads", "-1"], "--threads must be between 0"),
    "beam 100000": (["--beam", "100000", "--length", "3"],
                    "--beam must be between 1 and 1000 (the number of hypotheses kept), "
                    "got 100000"),
    "num-samples 1e9": (["--num-samples", "1000000000"],
                        "--num-samples must be between 1 and 10000"),
    "length -5": (["--length", "-5"], "--length must be >= 1, got -5"),
    "length 0": (["--length", "0"], "--length must be >= 1, got 0"),
    "held samples": (["--length", "1000000000000", "--num-samples", "2"],
                     "held in memory until printed; stream one sample"),
    "long beam": (["--length", "10001", "--beam", "2"],
                  "--length with --beam must be <= 10000, got 10001"),
    "temperature inf": (["--temperature", "inf"], "--temperature must be > 0 and finite"),
    "temperature nan": (["--temperature", "nan"], "--temperature must be > 0 and finite"),
    "temperature -inf": (["--temperature=-inf"], "--temperature must be > 0 and finite"),
    "length-penalty nan": (["--beam", "2", "--length-penalty", "nan"],
                           "--length-penalty must be a finite number between -10 and 10"),
    "length-penalty inf": (["--beam", "2", "--length-penalty", "inf"],
                           "--length-penalty must be a finite number"),
    "length-penalty 1e308": (["--beam", "2", "--length-penalty=1e308"],
                             "--length-penalty must be a finite number"),
    "top-p nan": (["--top-p", "nan"], "--top-p must be in (0, 1]"),
}


@pytest.mark.parametrize("case", SAMPLE_CASES)
def test_bad_sample_flag_is_one_error_line(runs, capsys, case):
    flags, words = SAMPLE_CASES[case]
    assert words in one_error_line(capsys, ["sample", str(runs / "lm"), *flags])


PREDICT_CASES = {
    "seed 2**70": (["--temperature", "1", "--seed", HUGE], "--seed must be between 0 and"),
    "beam 100000": (["--beam", "100000"], "--beam must be between 1 and 1000"),
    "length-penalty nan": (["--beam", "2", "--length-penalty", "nan"],
                           "--length-penalty must be a finite number"),
    "length-penalty 1e308": (["--beam", "2", "--length-penalty=1e308"],
                             "--length-penalty must be a finite number"),
    "max-length 1e20": (["--max-length", str(10**20)], "--max-length must be between 1 and"),
    "count 1e20": (["--count", str(10**20)], "--count must be between 1 and 1000"),
    "count 0": (["--count", "0"], "--count must be between 1 and 1000"),
    "temperature inf": (["--temperature", "inf"], "--temperature must be > 0 and finite"),
}


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_bad_predict_flag_is_one_error_line(runs, capsys, case):
    flags, words = PREDICT_CASES[case]
    argv = ["predict", str(runs / "pairs"), "--input", str(runs / "inputs.txt"), *flags]
    assert words in one_error_line(capsys, argv)


@pytest.mark.parametrize("flags, words", [
    (["--seed", HUGE], "--seed must be between 0 and"),
    (["--samples", "1000000000"], "--samples must be between 1 and 10000"),
    (["--samples", "0"], "--samples must be between 1 and 10000")])
def test_bad_demo_flag_is_one_error_line_before_any_training(capsys, flags, words):
    assert words in one_error_line(capsys, ["demo", "structured-prediction", *flags])


@pytest.mark.parametrize("kwargs", [
    {"seed": 2**70}, {"seed": -1}, {"beam": 100_000}, {"num_samples": 10**9}, {"length": 0},
    {"length": 10**12, "num_samples": 2}, {"length": 10**12, "beam": 2},
    {"temperature": float("inf")},
    {"temperature": float("nan")}, {"beam": 2, "length_penalty": float("nan")}])
def test_api_refuses_the_same_values(runs, kwargs):
    model, vocab, _ = load(runs / "lm")
    with pytest.raises(RnnkitError):
        sample_model(model, vocab, **{"length": 5, **kwargs})


def test_top_k_above_the_vocabulary_keeps_every_token(runs):
    assert sample(runs / "lm", length=50, top_k=10**30) == sample(runs / "lm", length=50)


def test_long_streamed_sample_equals_the_returned_text(runs, capsys):
    # longer than one piece of the writer (4096 tokens): the pieces join up exactly; the
    # command line's default precision is the API's "auto"
    flags = ["--prime-text", "HAM", "--length", "6000", "--seed", "7", "--temperature", "0.9"]
    same = {"prime_text": "HAM", "length": 6000, "seed": 7, "temperature": 0.9,
            "precision": "auto"}
    capsys.readouterr()
    assert main(["sample", str(runs / "lm"), *flags]) == 0
    streamed = capsys.readouterr().out
    expected = sample(runs / "lm", **same)[0]
    assert streamed == expected + "\n"
    pieces = []
    kept = sample(runs / "lm", **same, on_text=pieces.append)
    assert kept == [expected] and "".join(pieces) == expected
    pieces.clear()
    assert sample(runs / "lm", **same, on_text=pieces.append, keep_text=False) == []
    assert "".join(pieces) == expected
    assert len(pieces) < 100  # written in pieces, not a call per character


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
def test_streamed_sample_runs_in_flat_memory(runs):
    """Before, each generated character held ~1.5 kB (a tensor per step, kept to the end)."""
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "sample", str(runs / "lm"),
                             "--length", str(10**8), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    chars = [0]

    def drain():
        while block := proc.stdout.read1(1 << 16):
            chars[0] += len(block)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while chars[0] == 0 and time.monotonic() < deadline:  # torch imported, model loaded
            time.sleep(0.1)
        time.sleep(1)
        before, seen = rss_bytes(proc.pid), chars[0]
        time.sleep(5)
        growth, streamed = rss_bytes(proc.pid) - before, chars[0] - seen
    finally:
        proc.kill()
        proc.wait()
        reader.join()
    assert streamed > 2000, "the sample stopped streaming"
    assert growth < 20 * 2**20, f"RSS grew {growth / 2**20:.1f} MB in 5 s"
    # a few bytes a character of allocator noise at most; the old code held ~1.5 kB each
    assert growth < 2**20 + 100 * streamed, f"{growth / streamed:.0f} bytes per character"
