"""The command line as a user meets it: train -> sample -> eval, and every bad input."""

import json
import subprocess
import sys

import pytest

from rnnkit.cli import main
from rnnkit.training.config import build_configs, preset_names, read_toml

TINY = ["--preset", "tiny", "--max-steps", "20", "--eval-every", "10", "--seq-length", "16"]


def error_of(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("rnnkit: error: ") and "\n" not in err, err
    return err


def test_train_sample_eval_end_to_end(run_dir, capsys, hamlet):
    assert main(["sample", str(run_dir), "--prime-text", "Ber.", "--length", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Ber.") and len(out) == len("Ber.") + 50 + 1
    assert main(["eval", str(run_dir), "--data", str(hamlet), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"loss", "bpc", "perplexity", "chars"} and report["chars"] > 1000
    assert main(["eval", str(run_dir)]) == 0  # the run's own text, val split
    assert "bits/char" in capsys.readouterr().out


def test_sampling_flags_and_seed(run_dir, capsys):
    args = ["sample", str(run_dir), "--length", "40", "--top-k", "5", "--top-p", "0.9",
            "--temperature", "0.7", "--seed", "3"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first
    main(["sample", str(run_dir), "--length", "40", "--argmax", "--num-samples", "3"])
    samples = capsys.readouterr().out.strip("\n").split("\n\n")
    assert len(set(samples)) == 1  # greedy: every sample the same


def test_sample_precisions_and_threads(run_dir, capsys):
    """fp32 is the model exactly, so --argmax gives the text the plain step loop gives; bf16
    and int8 run and print as many characters."""
    import torch

    from rnnkit.api import load
    from rnnkit.decoding import prompt_ids
    model, vocab, _ = load(run_dir)
    with torch.no_grad():  # the plain loop: the whole model, one (1, 1) call per token
        logits, state = model(torch.tensor([prompt_ids(vocab, "Ber.")]))
        ids = []
        for _ in range(40):
            ids.append(int(logits[0, -1].argmax()))
            logits, state = model(torch.tensor([[ids[-1]]]), state)
    want = "Ber." + vocab.decode(ids)
    threads = torch.get_num_threads()
    try:
        for precision in ("fp32", "bf16", "int8"):
            assert main(["sample", str(run_dir), "--prime-text", "Ber.", "--length", "40",
                         "--argmax", "--precision", precision, "--threads", "1"]) == 0
            out = capsys.readouterr().out
            assert len(out) == 4 + 40 + 1
            if precision == "fp32":
                assert out == want + "\n"
    finally:
        torch.set_num_threads(threads)
    assert "--threads" in error_of(capsys, ["sample", str(run_dir), "--threads", "-1"])


def test_sample_defaults_to_int8_on_one_thread_for_one_recurrent_stream(run_dir, capsys,
                                                                       monkeypatch):
    """--precision auto is int8 where the CPU has int8 kernels (fp32 elsewhere, and for the
    transformer); --threads 0 is one thread for a single stream of a recurrent model, the
    fair share for several."""
    import torch

    from rnnkit.api import decoding_precision, load
    from rnnkit.cli import sample as sample_cli
    from rnnkit.layers.recurrent_step import int8_available
    from rnnkit.models.gpt import GPT, GPTConfig
    model, _, _ = load(run_dir)
    auto = "int8" if int8_available(torch.device("cpu")) else "fp32"
    assert decoding_precision("auto", model) == auto
    assert decoding_precision("bf16", model) == "bf16"
    assert decoding_precision("auto", GPT(GPTConfig(vocab_size=5, n_layer=1, n_head=1,
                                                    n_embd=8, block_size=8))) == "fp32"
    flags = ["sample", str(run_dir), "--prime-text", "Ber.", "--length", "60", "--seed", "5"]
    calls = []
    monkeypatch.setattr(sample_cli, "set_threads", calls.append)
    assert main(flags) == 0
    default = capsys.readouterr().out
    assert calls == [0, 1]
    assert main([*flags, "--precision", auto]) == 0
    assert capsys.readouterr().out == default
    calls.clear()
    assert main([*flags, "--num-samples", "2"]) == 0
    assert calls == [0]
    calls.clear()
    assert main([*flags, "--threads", "2"]) == 0
    assert calls == [2]


def test_lines_mode_prints_exactly_n_lines(tmp_path, sentences_file, capsys):
    out = tmp_path / "lines"
    assert main(["train", "--data", str(sentences_file), "--out", str(out), "--mode", "lines",
                 "--batch-size", "3", "--val-frac", "0", "--test-frac", "0", "--preset", "tiny",
                 "--max-steps", "30"]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--num-samples", "7", "--length", "60"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 7 and captured.out.endswith("\n")


def test_every_preset_is_a_valid_configuration():
    assert {"tiny", "shakespeare-5min"} <= set(preset_names())
    for name in preset_names():
        build_configs(read_toml(name))


@pytest.fixture
def bad_files(tmp_path):
    files = {"empty.txt": b"", "binary.bin": bytes(range(256)) * 4,
             "latin1.txt": "caf\xe9 cr\xe8me\n".encode("latin-1"), "short.txt": b"tiny text\n",
             "corrupt.pt": b"not a checkpoint at all"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("file, words", [
    ("empty.txt", "is empty"), ("binary.bin", "binary"), ("latin1.txt", "not valid UTF-8"),
    ("short.txt", "too few for one batch"), ("missing.txt", "not found")])
def test_bad_training_text_fails_cleanly_and_leaves_nothing(bad_files, capsys, file, words):
    out = bad_files / "run"
    err = error_of(capsys, ["train", "--data", str(bad_files / file), "--out", str(out), *TINY])
    assert words in err
    assert not out.exists()


@pytest.mark.parametrize("flags, words", [
    (["--prime-text", "\u263a"], "outside the model's vocabulary"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--top-k", "0"], "--top-k must be >= 1"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--beam", "4", "--temperature", "0.5"], "--beam searches for the likeliest text"),
    (["--beam", "2", "--num-samples", "3"], "--num-samples (3) must be <= --beam (2)"),
    (["--beam", "0"], "--beam and --num-samples must be >= 1"),
    (["--length-penalty", "0.6"], "it applies to --beam in lines mode only"),
    (["--beam", "2", "--length-penalty", "0.6"], "it applies to --beam in lines mode only")])
def test_bad_sampling_flags(run_dir, capsys, flags, words):
    assert words in error_of(capsys, ["sample", str(run_dir), *flags])


def test_sample_with_a_beam_prints_the_likeliest_texts_whatever_the_seed(run_dir, capsys):
    flags = ["sample", str(run_dir), "--prime-text", "Ber.", "--length", "30", "--beam", "4"]
    outputs = []
    for seed in ("1", "2"):
        assert main([*flags, "--seed", seed]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("Ber.")
    assert len(outputs[0]) == len("Ber.") + 30 + 1
    assert main([*flags, "--num-samples", "2"]) == 0
    best, second = capsys.readouterr().out.rstrip("\n").split("\n\n")
    assert best == outputs[0].rstrip("\n") and second != best


def test_missing_and_corrupt_checkpoints(bad_files, capsys):
    assert "not found" in error_of(capsys, ["sample", str(bad_files / "nope.pt")])
    assert "corrupt" in error_of(capsys, ["sample", str(bad_files / "corrupt.pt")])
    assert "holds no checkpoint" in error_of(capsys, ["eval", str(bad_files)])


def test_resume_without_a_run_and_train_over_a_run(run_dir, tmp_path, capsys, hamlet):
    err = error_of(capsys, ["train", "--out", str(tmp_path / "none"), "--resume", *TINY])
    assert "no run to resume" in err and not (tmp_path / "none").exists()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(run_dir), *TINY])
    assert "already holds a run" in err
    assert before == {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nlearning_rat = 1\n")
    err = error_of(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert "unknown key train.learning_rat" in err
    assert "unknown preset" in error_of(capsys, ["train", "--preset", "nope", "--out", "x"])


@pytest.mark.slow
def test_errors_reach_the_shell_as_one_line_without_traceback(bad_files, run_dir):
    for argv in (["train", "--data", str(bad_files / "empty.txt"), "--out", str(bad_files / "r")],
                 ["sample", str(run_dir), "--temperature", "0"]):
        proc = subprocess.run([sys.executable, "-m", "rnnkit", *argv], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sample_streams_from_a_subprocess(run_dir):
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "sample", str(run_dir), "--length",
                           "30", "--prime-text", "Ham"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("Ham") and len(proc.stdout) == 34


def test_more_bad_inputs_get_one_line(run_dir, tmp_path, capsys):
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf\n")
    assert "is empty" in error_of(capsys, ["train", "--data", str(bom), "--out",
                                           str(tmp_path / "r"), *TINY])
    # a bad prompt is refused before anything reaches stdout
    code = main(["sample", str(run_dir), "--prime-text", "ab\u263a"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "vocabulary" in captured.err
    # a tiny temperature is greedy, not a crash
    assert main(["sample", str(run_dir), "--temperature", "1e-300", "--length", "20"]) == 0
    capsys.readouterr()
    # a flag of the wrong type: one line too
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(run_dir), "--top-k", "abc"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("rnnkit: error:") and "\n" not in err


def test_the_hidden_size_answers_to_both_flag_names(hamlet, tmp_path, capsys):
    for flag, size in (("--rnn-size", 16), ("--hidden-size", 24)):  # char-rnn's, and torch's
        out = tmp_path / flag
        assert main(["train", "--data", str(hamlet), "--out", str(out), *TINY,
                     flag, str(size), "--max-steps", "2"]) == 0
        assert json.loads((out / "config.json").read_text())["model"]["hidden_size"] == size
    capsys.readouterr()


def test_damaged_run_folders_get_one_line(run_dir, tmp_path, capsys):
    import shutil

    import torch
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "config.json").write_text('{"train": {"bogus": 1}}')
    assert "corrupt" in error_of(capsys, ["train", "--out", str(copy), "--resume"])
    (copy / "config.json").write_text((run_dir / "config.json").read_text())
    shutil.copy(copy / "best.pt", copy / "last.pt")
    assert "no training state" in error_of(capsys, ["train", "--out", str(copy), "--resume"])
    torch.save({"format_version": 1, "meta": {"kind": "rnnkit.char_lm"}}, copy / "odd.pt")
    assert "incomplete" in error_of(capsys, ["sample", str(copy / "odd.pt")])


def test_scheduled_sampling_flags_reach_the_config(tmp_path, hamlet, capsys):
    out = tmp_path / "ss"
    assert main(["train", "--data", str(hamlet), "--out", str(out), *TINY,
                 "--scheduled-sampling", "inverse_sigmoid", "--ss-k", "5", "--ss-min", "0.2",
                 "--ss-impl", "sequential", "--ss-argmax"]) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert (train["scheduled_sampling"], train["ss_k"], train["ss_min"], train["ss_impl"],
            train["ss_argmax"]) == ("inverse_sigmoid", 5.0, 0.2, "sequential", True)
    capsys.readouterr()
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(tmp_path / "bad"),
                            "--scheduled-sampling", "exponential", "--ss-k", "2"])
    assert "out of range" in err
