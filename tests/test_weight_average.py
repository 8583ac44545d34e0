"""--ema: the moving average of the weights against its formula, in the trainer's
evaluations and checkpoints, through a rollback, and kept fixed across --resume."""

import json

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.training.averaging import WeightAverage
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.loop import Trainer

from .test_training import small


def expected_average(snapshots: list[list[torch.Tensor]], decay: float) -> list[torch.Tensor]:
    """sum_k (1 - d) d^(t-k) w_k / (1 - d^t): each update's weight, written out."""
    t = len(snapshots)
    coeffs = [(1 - decay) * decay ** (t - k) / (1 - decay ** t) for k in range(1, t + 1)]
    return [sum(c * w[i].double() for c, w in zip(coeffs, snapshots))
            for i in range(len(snapshots[0]))]


def test_the_average_is_the_bias_corrected_exponential_average():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    average, snapshots = WeightAverage(model, 0.9), []
    for _ in range(7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append([p.detach().clone() for p in model.parameters()])
        average.update()
        if len(snapshots) == 1:  # the first update is the weights themselves, not 10% of them
            assert all(torch.equal(v, w) for v, w in zip(average.values, snapshots[0]))
    for got, want in zip(average.values, expected_average(snapshots, 0.9)):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_applied_lends_the_average_and_gives_the_weights_back_even_on_an_error():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, 0.5)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for v in average.values:
            v.fill_(7.0)
    with pytest.raises(RuntimeError), average.applied() as live:
        assert all(bool((p == 7.0).all()) for p in model.parameters())
        assert all(torch.equal(a, b) for a, b in zip(live, before))
        raise RuntimeError("an evaluation that fails")
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_off_changes_nothing():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, 0.0)
    average.update()
    with average.applied() as live:
        assert live is None
    assert average.state(None) == {}


def test_checkpoints_hold_the_average_of_the_steps_and_evaluations_measure_it(tmp_path, hamlet,
                                                                             monkeypatch):
    """The trainer's average against the formula over the weights every step left, and the
    val loss recorded against the checkpoint's own weights scored again."""
    snapshots, one_step = [], Trainer._one_step

    def record_weights(self):
        rates = one_step(self)
        snapshots.append([p.detach().clone() for p in self.model.parameters()])
        return rates

    monkeypatch.setattr(Trainer, "_one_step", record_weights)
    out = tmp_path / "run"
    final = rnnkit.train(*small(hamlet, ema=0.8), out=out)
    monkeypatch.undo()
    payload = load_checkpoint(out / "last.pt")
    saved = list(payload["model"].values())  # parameters only, in registration order
    for got, want in zip(saved, expected_average(snapshots, 0.8)):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    # the optimizer's weights are kept apart, for --resume
    trained = payload["trainer"]["train_weights"]
    assert all(torch.equal(a, b) for a, b in zip(trained, snapshots[-1]))
    assert not all(torch.equal(a, b) for a, b in zip(saved, trained))
    assert payload["trainer"]["average_updates"] == 30
    assert rnnkit.evaluate(out / "last.pt", split="val")["loss"] == pytest.approx(
        final["val_loss"], abs=1e-4)


def test_resume_refuses_another_decay(tmp_path, hamlet, capsys):
    out = tmp_path / "run"
    common = ["train", "--data", str(hamlet), "--out", str(out), "--max-steps", "4",
              "--eval-every", "2", "--seq-length", "16", "--batch-size", "4",
              "--rnn-size", "16"]
    assert main([*common, "--ema", "0.9"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["ema"] == 0.9
    capsys.readouterr()
    assert main([*common, "--resume", "--ema", "0.99", "--max-steps", "6"]) != 0
    assert "--resume cannot change ema" in capsys.readouterr().err
