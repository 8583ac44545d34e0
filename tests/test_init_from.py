"""--init-from: a new run that starts from another run's weights, with its own data, optimizer,
schedule and step count; what it refuses, before any run folder exists."""

import json
import math
import shutil

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.loop import Trainer
from rnnkit.training.schedules import lr_at, progress

from .test_cli import error_of
from .test_pair_tasks import has_two_a, write_pairs
from .test_training import assert_same_weights

QUIET = {"log": lambda msg: None}
TINY = ["--seq-length", "16", "--batch-size", "4", "--eval-every", "10", "--log-every", "1",
        "--sample-length", "20"]


def configs(data, model=None, **train):
    settings = {"data": str(data), "seq_length": 16, "batch_size": 4, "max_steps": 40,
                "eval_every": 20, "log_every": 1, "sample_length": 20, "seed": 7,
                "learning_rate": 1e-2, "warmup_steps": 5, **train}
    return rnnkit.configs(model=model, train=settings)


BASE = {"hidden_size": 64, "embed_size": 16, "num_layers": 1, "cell": "gru"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small language model of Hamlet (2 s of training: from 4.2 nats/char to 2.2)."""
    from pathlib import Path
    hamlet = Path(__file__).parent / "fixtures" / "hamlet_excerpt.txt"
    out = tmp_path_factory.mktemp("init") / "base"
    rnnkit.train(*configs(hamlet, BASE, max_steps=100, seq_length=32, batch_size=16,
                          learning_rate=2e-2, eval_every=50, log_every=10), out=out, **QUIET)
    return out


@pytest.fixture
def new_text(tmp_path, hamlet):
    """Other text, in fewer of the base model's characters."""
    p = tmp_path / "new.txt"
    p.write_text(hamlet.read_text()[-12000:].lower())
    return p


def first_loss(trainer) -> float:
    batch, _ = trainer.data.batch(0)
    with torch.no_grad():
        out, _ = trainer.data.forward(trainer.model, batch, None, 1.0)
        return trainer.data.loss(out, batch).item()


def test_fine_tuning_starts_from_the_old_weights(base, new_text, tmp_path):
    # the model settings come from the checkpoint, whatever the defaults say
    trainer = Trainer(*configs(new_text, max_steps=20, init_from=str(base)),
                      out=tmp_path / "tuned", **QUIET)
    assert trainer.model_cfg.cell == "gru" and trainer.model_cfg.hidden_size == 64
    assert_same_weights(trainer.model.state_dict(), load_checkpoint(base / "best.pt")["model"])
    assert trainer.run.step == 0 and not trainer.optimizer.state  # a new optimizer
    expected = first_loss(trainer)
    fresh = Trainer(*configs(new_text, BASE, max_steps=20), out=tmp_path / "fresh", **QUIET)
    assert expected < first_loss(fresh) - 1.0  # far below an untrained model's loss
    trainer.fit()
    records = [json.loads(x) for x in (tmp_path / "tuned/metrics.jsonl").read_text().split("\n")
               if x]
    first = records[0]
    assert first["step"] == 1 and math.isclose(first["train_loss"], expected, rel_tol=1e-5)
    cfg = trainer.cfg
    assert first["lr"] == pytest.approx(lr_at(0, progress(0, 0.0, cfg), cfg))  # a new schedule
    meta = json.loads((tmp_path / "tuned/last.json").read_text())
    base_meta = json.loads((base / "last.json").read_text())
    assert meta["vocab"] == base_meta["vocab"]  # the old vocabulary, not the new text's
    assert meta["config"]["train"]["init_from"] == str((base / "best.pt").absolute())


def test_a_resumed_fine_tuned_run_continues_from_its_own_last_pt(base, new_text, tmp_path):
    origin = tmp_path / "origin"
    shutil.copytree(base, origin)
    out = tmp_path / "tuned"
    rnnkit.train(*configs(new_text, max_steps=20, init_from=str(origin)), out=out, **QUIET)
    tuned = load_checkpoint(out / "last.pt")["model"]
    shutil.rmtree(origin)  # not needed any more
    trainer = Trainer(*configs(new_text, max_steps=30, init_from=str(origin)), out=out,
                      resume=True, **QUIET)
    assert trainer.run.step == 20
    assert_same_weights(trainer.model.state_dict(), tuned)
    assert trainer.fit()["step"] == 30


def test_cli_fine_tuning_with_a_training_setting(base, new_text, tmp_path):
    out = tmp_path / "tuned"
    assert main(["train", "--data", str(new_text), "--out", str(out), "--init-from",
                 str(base), "--max-steps", "10", "--dropout", "0.2", "--preset", "tiny",
                 *TINY]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["dropout"] == 0.2  # training only: this run's own
    assert saved["model"]["embed_size"] == 16 and saved["model"]["num_layers"] == 1
    assert saved["model"]["cell"] == "gru"


def test_characters_the_model_never_saw_are_one_error_line(base, hamlet, tmp_path, capsys):
    text = tmp_path / "odd.txt"
    text.write_text(hamlet.read_text()[:5000] + "caf\u00e9 \u263a \u263a\n")
    out = tmp_path / "tuned"
    err = error_of(capsys, ["train", "--data", str(text), "--out", str(out), "--init-from",
                            str(base), "--max-steps", "5", *TINY])
    assert "--init-from" in err and "never seen" in err and "'\u00e9\u263a'" in err
    assert "from scratch" in err
    assert not out.exists()


@pytest.mark.parametrize("flags, words", [
    (["--rnn-size", "32", "--num-layers", "2"], "cannot change --rnn-size, --num-layers"),
    (["--cell", "lstm"], "cannot change --cell"),
    (["--model", "gpt"], "cannot change --model"),
    (["--task", "classify"], "holds a model of --task lm, not classify"),
])
def test_settings_that_contradict_the_checkpoint_are_one_error_line(
        base, new_text, tmp_path, capsys, flags, words):
    out = tmp_path / "tuned"
    err = error_of(capsys, ["train", "--data", str(new_text), "--out", str(out),
                            "--init-from", str(base), "--max-steps", "5", *flags])
    assert words in err
    assert not out.exists()


def test_the_python_api_refuses_contradicting_model_settings(base, new_text, tmp_path):
    out = tmp_path / "tuned"
    with pytest.raises(RnnkitError, match="cannot change hidden_size"):
        rnnkit.train(*configs(new_text, {"hidden_size": 48}, init_from=str(base)), out=out)
    with pytest.raises(RnnkitError, match="not found"):
        rnnkit.train(*configs(new_text, init_from=str(tmp_path / "nothing")), out=out)
    assert not out.exists()


def test_a_classifier_is_fine_tuned_on_a_new_file(tmp_path, capsys):
    first = write_pairs(tmp_path / "first.tsv", 300, has_two_a, seed=1)
    second = write_pairs(tmp_path / "second.tsv", 200, has_two_a, seed=2)
    pairs = ["--batch-size", "16", "--eval-every", "10", "--seed", "3"]
    base = tmp_path / "base"
    assert main(["train", "--task", "classify", "--data", str(first), "--out", str(base),
                 "--max-steps", "20", "--rnn-size", "24", "--embed-size", "8", *pairs]) == 0
    out = tmp_path / "tuned"  # the task comes from the checkpoint too
    assert main(["train", "--data", str(second), "--out", str(out), "--init-from", str(base),
                 "--max-steps", "10", *pairs]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["task"] == "classify" and saved["model"]["hidden_size"] == 24
    meta = load_checkpoint(out / "last.pt")["meta"]
    assert meta["step"] == 10 and meta["vocabs"] == load_checkpoint(base / "last.pt")["meta"][
        "vocabs"]
    # the Python API: the task (left at its default) and the weights come from the checkpoint
    trainer = Trainer(*rnnkit.configs(train={"data": str(second), "init_from": str(base),
                                             "max_steps": 2, "batch_size": 16}),
                      out=tmp_path / "api", **QUIET)
    assert trainer.cfg.task == "classify" and trainer.run.step == 0
    assert_same_weights(trainer.model.state_dict(), load_checkpoint(base / "best.pt")["model"])
    trainer.fit()
    # a character the classifier has never seen
    write_pairs(tmp_path / "third.tsv", 50, lambda r: (has_two_a(r)[0] + "z", "no"))
    capsys.readouterr()
    err = error_of(capsys, ["train", "--data", str(tmp_path / "third.tsv"), "--out",
                            str(tmp_path / "other"), "--init-from", str(base), *pairs])
    assert "--init-from" in err and "from scratch" in err and "'z'" in err
    assert not (tmp_path / "other").exists()
    # a file that uses a part of the vocabulary (one of the two labels) fine-tunes
    one_label = tmp_path / "one-label.tsv"
    lines = second.read_text().splitlines()
    label = lines[0].split("\t")[1]
    one_label.write_text("".join(f"{line}\n" for line in lines if line.endswith(label)))
    assert main(["train", "--data", str(one_label), "--out", str(tmp_path / "part"),
                 "--init-from", str(base), "--max-steps", "2", *pairs]) == 0
    assert load_checkpoint(tmp_path / "part" / "last.pt")["meta"]["vocabs"] == meta["vocabs"]
