"""What a user sees before any model runs: --help, --version, shell completion, help texts, and
the sampling and device flags a user of nanoGPT or char-rnn reaches for (--prime-file, mps)."""

import shutil
import subprocess
import sys

import pytest

import rnnkit
from rnnkit.cli import COMMANDS, build_parser, main

from .test_cli import error_of

TINY = ["--preset", "tiny", "--max-steps", "4", "--eval-every", "4", "--seq-length", "16"]


def help_of(argv) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*argv, "--help"])
    assert info.value.code == 0
    return info


def test_top_level_help_gives_each_command_a_whole_sentence(capsys):
    help_of([])
    out = " ".join(capsys.readouterr().out.split())
    for name, module in COMMANDS.items():
        first = " ".join(module.__doc__.strip().split("\n\n")[0].split())
        assert first.endswith(".") and first.count(". ") == 0, name  # one whole sentence
        assert f"{name} {first}" in out, name
    for family in ("language models", "seq2seq", "classifiers", "taggers", "activity",
                   "captioning", "frame prediction", "GPT-2"):
        assert family in out


def test_version():
    done = subprocess.run([sys.executable, "-m", "rnnkit", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"rnnkit {rnnkit.__version__}"
    from importlib.metadata import version
    assert version("rnnkit") == rnnkit.__version__  # what pip installed says the same


def test_flag_help_speaks_of_tokens_and_gives_one_default(capsys):
    help_of(["sample"])
    sample = " ".join(capsys.readouterr().out.split())
    assert "--length N tokens to generate" in sample
    help_of(["train"])
    train = " ".join(capsys.readouterr().out.split())
    assert train.count("(default: 1.0 for linear, 0.999 exponential") == 1
    ss_k = train[train.index("--ss-k F k of"):train.index("--ss-c F Slope")]
    assert ss_k.count("default") == 1
    assert "(default: None)" not in train
    for command in ("train", "sample", "eval", "predict", "serve", "visualize"):
        help_of([command])
        text = " ".join(capsys.readouterr().out.split())
        assert "mps (Apple silicon)" in text, command


def test_every_flag_with_a_value_says_its_default():
    import argparse
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    silent = [f"{name} {a.option_strings[0]}" for name, parser in commands.items()
              for a in parser._actions
              if a.option_strings and a.nargs != 0 and not a.required
              and not isinstance(a, argparse.BooleanOptionalAction)
              and a.default not in (None, argparse.SUPPRESS, "", [])  # no value: none
              and "default" not in (a.help or "")]
    assert silent == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_completes_commands_flags_and_choices(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "rnnkit.bash"
    script.write_text(capsys.readouterr().out)
    probe = f"""source {script}
complete_words() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _shtab_rnnkit;
                   echo "${{COMPREPLY[*]}}"; }}
complete_words rnnkit sa
complete_words rnnkit sample --prime-f
complete_words rnnkit train --device ''
"""
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["sample", "--prime-file", "auto cpu cuda mps"]


def test_zsh_completion_and_a_bad_shell(capsys):
    assert main(["completion", "zsh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#compdef rnnkit") and "--prime-file" in out and "--init-from" in out
    with pytest.raises(SystemExit) as info:
        main(["completion", "fish"])
    assert info.value.code == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err


# -- --prime-file ---------------------------------------------------------------------------------

def test_prime_file_is_the_same_as_its_text(run_dir, tmp_path, capsys):
    prompt = "Ber. Who's there?\nFran. Nay, answer me:\n"
    path = tmp_path / "prompt.txt"
    path.write_text(prompt, encoding="utf-8")
    assert main(["sample", str(run_dir), "--prime-text", prompt, "--length", "40"]) == 0
    by_text = capsys.readouterr().out
    assert main(["sample", str(run_dir), "--prime-file", str(path), "--length", "40"]) == 0
    assert capsys.readouterr().out == by_text and by_text.startswith(prompt)
    path.write_bytes(b"\xef\xbb\xbf" + prompt.encode())  # a byte-order mark is not the prompt
    assert main(["sample", str(run_dir), "--prime-file", str(path), "--length", "40"]) == 0
    assert capsys.readouterr().out == by_text


def test_bad_prime_files_are_one_line(run_dir, tmp_path, capsys):
    assert "not found; check the --prime-file path" in error_of(
        capsys, ["sample", str(run_dir), "--prime-file", str(tmp_path / "nope.txt")])
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9")
    assert "is not valid UTF-8" in error_of(capsys, ["sample", str(run_dir), "--prime-file",
                                                     str(latin)])
    assert "outside the model's vocabulary" in error_of(
        capsys, ["sample", str(run_dir), "--prime-file", str(_write(tmp_path, "\u4f60\u597d"))])
    with pytest.raises(SystemExit) as info:  # one prompt or the other
        main(["sample", str(run_dir), "--prime-text", "a", "--prime-file", str(latin)])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def _write(folder, text: str):
    path = folder / "prompt-other.txt"
    path.write_text(text, encoding="utf-8")
    return path


# -- --device mps ---------------------------------------------------------------------------------

@pytest.mark.skipif(rnnkit.training.precision.mps_available(), reason="this machine has MPS")
def test_mps_without_apple_silicon_is_one_line(run_dir, tmp_path, capsys, hamlet):
    assert "no Apple-silicon GPU" in error_of(capsys, ["sample", str(run_dir), "--device",
                                                       "mps"])
    run = tmp_path / "run"
    assert "no Apple-silicon GPU" in error_of(capsys, ["train", "--data", str(hamlet), "--out",
                                                       str(run), *TINY, "--device", "mps"])
    assert not run.exists()


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    from rnnkit.training import precision
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "mps_available", lambda: True)
    assert precision.resolve_device("auto").type == "mps"
    monkeypatch.setattr(precision, "mps_available", lambda: False)
    assert precision.resolve_device("auto").type == "cpu"
