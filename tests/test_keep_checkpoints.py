"""--keep-checkpoints N: step_XXXXXX.pt of the last N evaluations, across a resume; sampling
from them."""

import json

import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.training.checkpoint import load_checkpoint


def tiny(data, **train):
    settings = {"data": str(data), "seq_length": 16, "batch_size": 4, "max_steps": 40,
                "eval_every": 10, "log_every": 5, "sample_length": 20, "seed": 7,
                "learning_rate": 1e-2, "warmup_steps": 5, "keep_checkpoints": 2, **train}
    return rnnkit.configs(model={"hidden_size": 32, "embed_size": 8, "num_layers": 1},
                          train=settings)


def step_files(run_dir):
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith("step_"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from pathlib import Path
    hamlet = Path(__file__).parent / "fixtures" / "hamlet_excerpt.txt"
    out = tmp_path_factory.mktemp("keep") / "run"
    rnnkit.train(*tiny(hamlet), out=out, log=lambda msg: None)
    return out


def test_the_last_n_evaluations_are_kept(run_dir):
    # four evaluations (10, 20, 30, 40): the two newest stay, beside best and last
    assert step_files(run_dir) == ["step_000030.json", "step_000030.pt",
                                   "step_000040.json", "step_000040.pt"]
    assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()
    stage = load_checkpoint(run_dir / "step_000030.pt")
    assert stage["meta"]["step"] == 30 and "val_loss" in stage["meta"]["metrics"]
    assert "trainer" not in stage  # weights to sample from: no optimizer state
    assert json.loads((run_dir / "step_000030.json").read_text())["step"] == 30
    assert load_checkpoint(run_dir / "last.pt")["meta"]["step"] == 40


def test_sampling_from_a_step_file(run_dir, capsys):
    early = rnnkit.sample(run_dir / "step_000030.pt", length=60, seed=1)[0]
    late = rnnkit.sample(run_dir / "step_000040.pt", length=60, seed=1)[0]
    assert early != late  # two stages of training, two models
    assert main(["sample", str(run_dir / "step_000030.pt"), "--length", "60",
                 "--seed", "1", "--precision", "fp32"]) == 0  # the API's default
    assert capsys.readouterr().out.rstrip("\n") == early


def test_a_resumed_run_counts_the_files_already_there(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*tiny(hamlet, max_steps=20), out=out, log=lambda msg: None)
    assert step_files(out) == ["step_000010.json", "step_000010.pt",
                               "step_000020.json", "step_000020.pt"]
    # files this run did not write with the exact pattern are never deleted
    others = ["step_10.pt", "step_000010_mine.pt", "best_000010.pt"]
    for name in others:
        (out / name).write_bytes(b"mine")
    rnnkit.train(*tiny(hamlet, max_steps=50, keep_checkpoints=3), out=out, resume=True,
                 log=lambda msg: None)
    assert [n for n in step_files(out) if n.endswith(".pt") and n not in others] == [
        "step_000030.pt", "step_000040.pt", "step_000050.pt"]
    assert all((out / name).read_bytes() == b"mine" for name in others)
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_no_step_files_by_default(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*tiny(hamlet, max_steps=20, keep_checkpoints=0), out=out, log=lambda m: None)
    assert step_files(out) == []
