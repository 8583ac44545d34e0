"""The bad-input table: each case exits non-zero with one `rnnkit: error:` line that names the
problem, and leaves every file as it was (nothing created, nothing changed)."""

import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "hamlet_excerpt.txt"
TINY = ["--preset", "tiny", "--max-steps", "10", "--eval-every", "10", "--seq-length", "16"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with a trained run and every kind of bad file."""
    root = tmp_path_factory.mktemp("bad")
    assert main(["train", "--data", str(FIXTURE), "--out", str(root / "run"), *TINY]) == 0
    files = {"empty.txt": b"", "binary.bin": bytes(range(256)) * 8,
             "latin1.txt": "caf\xe9\n".encode("latin-1"), "one.txt": b"a",
             "short.txt": b"too short\n", "bad.toml": b"[train\nmax_steps = ",
             "unknown.toml": b"[train]\nlearning_rat = 1\n", "a_file": b"not a folder",
             "flag_name.toml": b"[model]\nrnn_size = 32\n",
             "pairs.tsv": b"".join(b"%d\t%d\n" % (i, i * 2) for i in range(200)),
             "pairs_bad.tsv": b"12\t24\n13 26\n", "tags_bad.tsv": b"ab c\tX O O\n",
             "inputs.txt": b"12\n7\n"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "loop_a").symlink_to("loop_b")  # each link points at the other
    (root / "loop_b").symlink_to("loop_a")
    (root / "a_dir").mkdir()
    assert main(["train", "--task", "seq2seq", "--data", str(root / "pairs.tsv"), "--out",
                 str(root / "pairs_run"), *TINY]) == 0
    full = (root / "run" / "best.pt").read_bytes()
    (root / "truncated.pt").write_bytes(full[:len(full) // 2])
    # the run's config.json edited by hand: a setting changed, and a value no run writes
    for name, cell in (("edited_run", "gru"), ("garbled_run", "LSTM")):
        shutil.copytree(root / "run", root / name)
        config = json.loads((root / name / "config.json").read_text())
        config["model"]["cell"] = cell
        (root / name / "config.json").write_text(json.dumps(config))
    payload = torch.load(root / "run" / "best.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, root / "future.pt")
    return root


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def train(data, *extra):
    return lambda w: ["train", "--data", str(w / data), "--out", str(w / "new"), *TINY, *extra]


def sample(*extra, target="run"):
    return lambda w: ["sample", str(w / target), *extra]


def predict(*extra, target="pairs_run"):
    return lambda w: ["predict", str(w / target), "--input", str(w / "inputs.txt"), *extra]


CASES = {
    "malformed TSV line": (train("pairs_bad.tsv", "--task", "seq2seq"),
                           "pairs_bad.tsv line 2: expected 2 tab-separated fields"),
    "tag labels that fit no format": (train("tags_bad.tsv", "--task", "tag"),
                                      "line 1: 3 labels for 4 characters and 2 tokens"),
    "n-best above the beam": (predict("--beam", "2", "--n-best", "3"), "--n-best <= --beam"),
    "sampling with a beam": (predict("--beam", "2", "--top-k", "3"), "exclude each other"),
    "predict without an input file": (lambda w: ["predict", str(w / "pairs_run"), "--input",
                                                 str(w / "nope.txt")], "input file"),
    "predict with a language model": (predict(target="run"), "use rnnkit sample"),
    "sample from a seq2seq model": (sample(target="pairs_run"), "use rnnkit predict"),
    "empty file": (train("empty.txt"), "is empty"),
    "binary file": (train("binary.bin"), "looks binary"),
    "non-UTF-8 file": (train("latin1.txt"), "not valid UTF-8"),
    "one-character corpus": (train("one.txt"), "too few for one batch"),
    "corpus shorter than a batch": (train("short.txt"), "too few for one batch"),
    "missing data file": (train("nope.txt"), "not found"),
    "data that is a directory": (train("a_dir"), "a_dir' is a directory; give --data a file"),
    "data that is a symlink loop": (train("loop_a"), "is a symlink loop"),
    "pair data that is a directory": (train("a_dir", "--task", "seq2seq"), "is a directory"),
    "non-finite model setting": (train("one.txt", "--forget-bias", "inf"),
                                 "forget_bias must be a finite number, got inf"),
    "NaN model setting": (train("one.txt", "--forget-bias", "nan"), "finite number, got nan"),
    "infinite train setting": (train("one.txt", "--grad-clip", "inf"), "finite number"),
    "absurd thread count": (train("one.txt", "--threads", "100000"), "--threads must be between"),
    "negative weight decay": (train("one.txt", "--weight-decay", "-1"),
                              "weight_decay must be >= 0, got -1.0"),
    "weights' average that never moves": (train("one.txt", "--ema", "1"),
                                          "ema must be in [0, 1)"),
    "seed past 64 bits": (train("one.txt", "--seed", str(2**70)), "seed must be between 0 and"),
    "negative sample length": (train("one.txt", "--sample-length", "-1"),
                               "sample_length must be >= 1"),
    "negative final learning rate": (train("one.txt", "--min-lr-frac", "-1"),
                                     "min_lr_frac must be in [0, 1]"),
    "negative decay factor": (train("one.txt", "--lr-decay-factor", "-1"),
                              "lr_decay_factor in (0, 1]"),
    "out that is a file": (lambda w: ["train", "--data", str(FIXTURE), "--out",
                                      str(w / "a_file"), *TINY], "is a file, not a folder"),
    "seq-length 0": (train("one.txt", "--seq-length", "0"), "seq_length must be >= 1"),
    "batch-size 0": (train("one.txt", "--batch-size", "0"), "batch_size must be >= 1"),
    "negative learning rate": (train("one.txt", "--learning-rate", "-1"), "learning_rate"),
    "zero learning rate": (train("one.txt", "--learning-rate", "0"), "learning_rate"),
    "NaN learning rate": (train("one.txt", "--learning-rate", "nan"), "learning_rate"),
    "unknown cell": (train("one.txt", "--cell", "transformer"), "invalid choice"),
    "unknown task": (train("one.txt", "--task", "translate"), "invalid choice"),
    "pair task on plain text": (train("one.txt", "--task", "seq2seq"), "line 1: expected 2"),
    "setting of another task": (train("one.txt", "--attention", "dot"), "does not apply"),
    "unknown preset": (lambda w: ["train", "--preset", "huge", "--out", str(w / "new")],
                       "unknown preset"),
    "malformed TOML": (lambda w: ["train", "--config", str(w / "bad.toml"), "--out",
                                  str(w / "new")], "not valid TOML"),
    "config key spelt as its flag": (
        lambda w: ["train", "--config", str(w / "flag_name.toml"), "--out", str(w / "new")],
        "unknown key model.rnn_size (the setting of --rnn-size is hidden_size)"),
    "unknown config key": (lambda w: ["train", "--config", str(w / "unknown.toml"), "--out",
                                      str(w / "new")], "unknown key train.learning_rat"),
    "prompt outside the vocabulary": (sample("--prime-text", "\u2603"), "vocabulary"),
    "temperature 0": (sample("--temperature", "0"), "--temperature must be > 0"),
    "top-k 0": (sample("--top-k", "0"), "--top-k must be >= 1"),
    "top-p above 1": (sample("--top-p", "1.5"), "--top-p must be in (0, 1]"),
    "top-p 0": (sample("--top-p", "0"), "--top-p must be in (0, 1]"),
    "missing run folder": (sample(target="no_such_run"), "not found"),
    "truncated checkpoint": (sample(target="truncated.pt"), "corrupt"),
    "other format version": (sample(target="future.pt"), "format version 99"),
    "resume without a run": (lambda w: ["train", "--out", str(w / "new"), "--resume", *TINY],
                             "no run to resume"),
    # the error names the file, not flags that were never passed
    "resume of a config.json edited to another cell": (
        lambda w: ["train", "--out", str(w / "edited_run"), "--resume"],
        "cannot change cell (last.pt was trained with cell='lstm'; now cell='gru'): drop the "
        "flags that change it (or, if you passed none, set it back in the run's config.json)"),
    "resume of a config.json with a value no run writes": (
        lambda w: ["train", "--out", str(w / "garbled_run"), "--resume"],
        "config.json holds a setting no run writes (cell must be one of"),
    "rnn-size 0": (train("one.txt", "--rnn-size", "0"), "hidden_size must be >= 1, got 0"),
    "a cell the task does not take": (
        lambda w: ["train", "--task", "frames", "--cell", "mingru", "--out", str(w / "new")],
        "cell must be one of ('lstm', 'gru'), got 'mingru' (with --task frames)"),
    "out already holds a run": (lambda w: ["train", "--data", str(FIXTURE), "--out",
                                           str(w / "run"), *TINY], "already holds a run"),
    # (tests run as root, which no permission bit stops: a file in the way stands in)
    "run folder cannot be written": (lambda w: ["train", "--data", str(FIXTURE), "--out",
                                                str(w / "a_file" / "run"), *TINY], "a_file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(world, capsys, case):
    argv, words = CASES[case]
    before = snapshot(world)
    try:
        code = main(argv(world))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("rnnkit: error: ") and "\n" not in err, err
    assert words in err, err
    assert snapshot(world) == before


def _small_file_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.slow
def test_disk_full_is_one_line_and_leaves_no_run(world):
    before = snapshot(world)
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "train", "--data", str(FIXTURE),
                           "--out", str(world / "full"), *TINY],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_small_file_limit)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "Traceback" not in proc.stderr
    assert snapshot(world) == before


def test_bom_and_crlf_text_is_accepted_and_round_trips(tmp_path, capsys):
    text = "First line, caf\u00e9.\r\nSecond line!\r\n" * 300
    data = tmp_path / "windows.txt"
    data.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 0
    from rnnkit import load
    _, vocab, _ = load(tmp_path / "run")
    assert "\r" not in vocab.chars and "\ufeff" not in vocab.chars and "\u00e9" in vocab.chars
    clean = text.replace("\r\n", "\n")
    assert vocab.decode(vocab.encode(clean)) == clean


def test_the_api_tells_an_unknown_setting_from_another_tasks():
    import rnnkit
    from rnnkit.errors import RnnkitError
    with pytest.raises(RnnkitError, match=r"unknown model setting 'rnn_size' \(the setting of "
                                          r"--rnn-size is hidden_size\)"):
        rnnkit.configs(model={"rnn_size": 32})
    with pytest.raises(RnnkitError, match="unknown model setting 'colour'$"):
        rnnkit.configs(model={"colour": 1})
    with pytest.raises(RnnkitError, match="--attention does not apply to --task classify"):
        rnnkit.configs(model={"attention": "dot"}, train={"task": "classify"})
