"""How to add a task: a whole task defined here, registered with one line, and used through
the command line like the built-in ones (train, resume, eval, predict, export) without
touching the package. The task: read a word of letters, name its last letter.
"""

from __future__ import annotations

import json
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnkit.cli import main
from rnnkit.data.pairs import read_inputs, read_lines
from rnnkit.errors import RnnkitError
from rnnkit.layers import Recurrent
from rnnkit.tasks import TASKS
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.loop import Trainer

LETTERS = "abcd"


@dataclass
class LastLetterConfig:
    vocab_size: int = 0
    """Filled in from the data (like every model's vocab_size)."""
    num_classes: int = 0
    """Filled in from the data."""
    hidden_size: int = 32
    """Units of the GRU."""


class LastLetterModel(nn.Module):
    def __init__(self, config: LastLetterConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, 8)
        self.rnn = Recurrent("gru", 8, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.num_classes)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x))
        return self.head(out[:, -1])


def encode(words: list[str], letters: list[str]) -> torch.Tensor:
    return torch.tensor([[letters.index(c) for c in w] for w in words])


class LastLetterRun:
    """The data of one run: val is every 5th example; batch ``step`` is drawn from a
    generator seeded by the step, so resume is exact."""

    carries_state = False

    def __init__(self, cfg, words: list[str], labels: list[str], letters: list[str]):
        self.cfg, self.letters, self.labels = cfg, letters, sorted(set(labels))
        x, y = encode(words, letters), torch.tensor([self.labels.index(t) for t in labels])
        val = torch.arange(len(words)) % 5 == 0
        self.train, self.val = (x[~val], y[~val]), (x[val], y[val])

    def meta(self) -> dict:
        return {"letters": self.letters, "labels": self.labels}

    def batch(self, step: int):
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + step)
        rows = torch.randint(len(self.train[0]), (self.cfg.batch_size,), generator=g)
        return {"x": self.train[0][rows], "y": self.train[1][rows]}, True

    def count(self, batch) -> int:
        return len(batch["x"])

    def forward(self, model, batch, state, eps):
        return model(batch["x"]), None

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits.float(), batch["y"])

    @torch.no_grad()
    def evaluate(self, model, ranks) -> dict:
        logits = model(self.val[0])
        return {"val_loss": self.loss(logits, {"y": self.val[1]}).item(),
                "val_accuracy": (logits.argmax(-1) == self.val[1]).float().mean().item()}

    def write_sample(self, model, folder: Path, step: int) -> None:
        folder.mkdir(exist_ok=True)
        guess = model(self.val[0][:4]).argmax(-1).tolist()
        (folder / f"step_{step:06d}.txt").write_text(" ".join(self.labels[i] for i in guess))


class LastLetterTask:
    name = "last-letter"
    kind = "example.last_letter"
    help = "name the last letter of a word"
    models = {"rnn": (LastLetterModel, LastLetterConfig)}
    meta_keys = ("letters", "labels")
    units = "examples"
    data_parallel = False
    compilable = True
    tokenized = False
    predicts_files = False

    def check(self, cfg) -> None:
        if cfg.data is None:
            raise ValueError("--task last-letter needs --data FILE.tsv")

    def read(self, path) -> tuple[list[str], list[str]]:
        rows = read_lines(path)
        return [a for _, a, _ in rows], [b for _, _, b in rows]

    def prepare(self, model_cfg, cfg, out, meta, ranks) -> LastLetterRun:
        words, labels = self.read(cfg.data)
        letters = sorted(set("".join(words)))
        if meta and meta["letters"] != letters:
            raise RnnkitError("the data changed since the checkpoint")
        run = LastLetterRun(cfg, words, labels, letters)
        model_cfg.vocab_size, model_cfg.num_classes = len(letters), len(run.labels)
        return run

    def vocab(self, meta, model):
        return meta["letters"], meta["labels"]

    @torch.no_grad()
    def evaluate(self, model, vocab, meta, cfg, request) -> dict:
        words, labels = self.read(request.data or cfg.data)
        guess = model(encode(words, vocab[0])).argmax(-1).tolist()
        right = sum(vocab[1][g] == t for g, t in zip(guess, labels))
        return {"task": self.name, "split": "all", "examples": len(words),
                "accuracy": right / len(words)}

    @torch.no_grad()
    def predict(self, model, vocab, meta, cfg, request) -> list[str]:
        guess = model(encode(read_inputs(request.input), vocab[0])).argmax(-1).tolist()
        return [vocab[1][g] for g in guess]


def words_file(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    words = ["".join(rng.choice(LETTERS) for _ in range(6)) for _ in range(n)]
    path.write_text("".join(f"{w}\t{w[-1]}\n" for w in words))
    return path


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(TASKS, "last-letter", LastLetterTask())  # the one line


def train(data: Path, out: Path, steps: int, *extra: str) -> int:
    return main(["train", "--task", "last-letter", "--data", str(data), "--out", str(out),
                 "--rnn-size", "32", "--batch-size", "32", "--learning-rate", "0.02",
                 "--max-steps", str(steps), "--eval-every", "20", "--log-every", "5",
                 "--device", "cpu", "--threads", "1", *extra])


def losses(run: Path) -> list:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").open()]


@pytest.mark.slow
def test_a_task_defined_outside_the_package_trains_evaluates_predicts_resumes_and_exports(
        tmp_path, registered, capsys, monkeypatch):
    data = words_file(tmp_path / "words.tsv", 600, seed=0)
    assert train(data, tmp_path / "whole", 60) == 0
    # a run stopped by Ctrl-C at step 33 and resumed repeats the uninterrupted run exactly
    one_step = Trainer._one_step

    def interrupt_at_33(self):
        rates = one_step(self)
        if self.run.step == 33:
            signal.raise_signal(signal.SIGINT)
        return rates

    monkeypatch.setattr(Trainer, "_one_step", interrupt_at_33)
    assert train(data, tmp_path / "cut", 60) == 130
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    assert train(data, tmp_path / "cut", 60, "--resume") == 0
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    whole, cut = (load_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    metrics = json.loads((tmp_path / "whole" / "last.json").read_text())["metrics"]
    assert metrics["val_accuracy"] > 0.9  # chance is 0.25: a broken model stays near it

    test = words_file(tmp_path / "test.tsv", 200, seed=1)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "whole"), "--data", str(test), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "last-letter" and report["accuracy"] > 0.9

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("abcdab\nddddac\nccccca\n")
    assert main(["predict", str(tmp_path / "whole"), "--input", str(inputs)]) == 0
    assert capsys.readouterr().out.split() == ["b", "c", "a"]

    exported = tmp_path / "model.safetensors"
    assert main(["export", str(tmp_path / "whole"), "--out", str(exported)]) == 0
    capsys.readouterr()
    assert main(["eval", str(exported), "--data", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report


def test_an_unregistered_task_is_refused_in_one_line(tmp_path, capsys):
    data = words_file(tmp_path / "words.tsv", 20, seed=0)
    with pytest.raises(SystemExit) as stop:  # argparse: --task takes the registered names
        train(data, tmp_path / "run", 2)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "last-letter" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_task_registry_drives_the_config_choices(registered):
    from rnnkit.training.config import TrainConfig, model_config_classes
    assert TrainConfig(task="last-letter", data="x").task == "last-letter"
    assert model_config_classes()["last-letter"] is LastLetterConfig
    with pytest.raises(ValueError, match="needs --data"):
        TrainConfig(task="last-letter")
