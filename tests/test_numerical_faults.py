"""Non-finite losses: skipped and counted; too many in a row roll back with a lower LR."""

import json
import math

import pytest
import torch

import rnnkit
from rnnkit.errors import RnnkitError
from rnnkit.tasks import lm as lm_task
from rnnkit.training.checkpoint import load_checkpoint


def inject_nans(monkeypatch, bad_calls):
    """Make the training loss NaN at the given (0-based) training calls."""
    real = lm_task.sequence_nll
    calls = {"n": 0}

    def nll(logits, targets, reduction="mean"):
        loss = real(logits, targets, reduction)
        if logits.requires_grad:  # training, not evaluation
            calls["n"] += 1
            if calls["n"] - 1 in bad_calls:
                return loss * math.nan
        return loss

    monkeypatch.setattr(lm_task, "sequence_nll", nll)


def run(tmp_path, hamlet, **train):
    settings = {"data": str(hamlet), "max_steps": 30, "eval_every": 10, "log_every": 5,
                "seq_length": 16, **train}
    messages = []
    final = rnnkit.train(*rnnkit.configs(preset="tiny", train=settings), out=tmp_path / "run",
                         log=messages.append)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    return final, [json.loads(line) for line in lines], messages


def test_a_few_bad_steps_are_skipped_and_counted(tmp_path, hamlet, monkeypatch):
    inject_nans(monkeypatch, {7, 8})
    final, records, messages = run(tmp_path, hamlet)
    assert final["skipped_steps"] == 2 and final["step"] == 30
    assert all(math.isfinite(r["train_loss"]) for r in records)
    weights = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not any("rolled back" in m for m in messages)


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9}])
def test_many_bad_steps_in_a_row_roll_back_with_half_the_learning_rate(tmp_path, hamlet,
                                                                        monkeypatch, extra):
    inject_nans(monkeypatch, {12, 13, 14})
    final, records, messages = run(tmp_path, hamlet, max_bad_steps=3, **extra)
    assert any("rolled back to step 10" in m for m in messages)
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # no step doubled by the replay
    after = [r for r in records if r["step"] > 10]
    before = [r for r in records if r["step"] == 10]
    assert after[0]["lr"] < before[0]["lr"] / 1.9  # half the learning rate after the rollback
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["trainer"]["rollbacks"] == 1 and payload["trainer"]["lr_scale"] == 0.5
    if extra:  # the average went back to step 10's too: 30 updates, none from the lost steps
        assert payload["trainer"]["average_updates"] == 30


def test_a_run_that_never_recovers_stops_with_a_clear_error(tmp_path, hamlet, monkeypatch):
    inject_nans(monkeypatch, set(range(5, 10_000)))
    with pytest.raises(RnnkitError, match="non-finite"):
        run(tmp_path, hamlet, max_bad_steps=2, max_steps=200)


@pytest.mark.parametrize("impl", ["parallel", "sequential"])
def test_scheduled_sampling_skips_a_diverged_step_instead_of_crashing(impl):
    from rnnkit.models import CharLM, CharLMConfig
    from rnnkit.tasks.lm import TokenObjective
    from rnnkit.training.update import train_step
    model = CharLM(CharLMConfig(vocab_size=6, hidden_size=8, embed_size=4))
    with torch.no_grad():
        model.head.bias[0] = math.inf  # logits that softmax cannot handle
    _, cfg = rnnkit.configs(train={"ss_impl": impl})
    x = torch.randint(0, 6, (2, 7))
    for eps in (1.0, 0.5):
        _, _, ok = train_step(TokenObjective(cfg), model, torch.optim.AdamW(model.parameters()),
                              {"x": x, "y": x}, None, cfg.grad_clip, eps=eps)
        assert not ok


def inject_divergence(monkeypatch, bad_calls):
    """Make the training loss finite but absurd (a million times larger) at those calls."""
    real = lm_task.sequence_nll
    calls = {"n": 0}

    def nll(logits, targets, reduction="mean"):
        loss = real(logits, targets, reduction)
        if logits.requires_grad:
            calls["n"] += 1
            if calls["n"] - 1 in bad_calls:
                return loss * 1e6
        return loss

    monkeypatch.setattr(lm_task, "sequence_nll", nll)


def test_a_diverging_finite_loss_is_a_bad_step_and_rolls_back(tmp_path, hamlet, monkeypatch):
    inject_divergence(monkeypatch, {12, 13, 14})
    final, records, messages = run(tmp_path, hamlet, max_bad_steps=3)
    assert any("rolled back to step 10" in m and "diverging" in m for m in messages)
    assert final["skipped_steps"] == 3 and final["step"] == 30
    assert all(r["train_loss"] < 100 for r in records)  # the absurd losses never counted
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    first = records[0]["train_loss"]  # about chance: ln(vocab)
    assert 5 * first < payload["trainer"]["loss_ceiling"] < 15 * first


def test_an_absurd_learning_rate_ends_in_one_error_line_and_a_resumable_folder(tmp_path,
                                                                              hamlet, capsys):
    from rnnkit.cli import main
    out = tmp_path / "run"
    code = main(["train", "--data", str(hamlet), "--out", str(out), "--preset", "tiny",
                 "--seq-length", "16", "--max-steps", "300", "--learning-rate", "1e4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("rnnkit: error: training keeps diverging"), err[-1]
    assert "lower --learning-rate" in err[-1]
    assert load_checkpoint(out / "last.pt")["meta"]["step"] == 0  # --resume can continue
