import json
import math
import signal

import pytest
import torch

import rnnkit
from rnnkit.errors import RnnkitError
from rnnkit.losses import sequence_nll
from rnnkit.models.char_lm import CharLM, CharLMConfig
from rnnkit.tasks.lm import TokenObjective
from rnnkit.training.checkpoint import FORMAT_VERSION, load_checkpoint
from rnnkit.training.loop import Interrupted, Trainer
from rnnkit.training.schedules import lr_at
from rnnkit.training.update import train_step

from .conftest import SENTENCES


def small(data, **train):
    settings = {"data": str(data), "seq_length": 16, "batch_size": 4, "max_steps": 30,
                "eval_every": 10, "log_every": 5, "sample_length": 20, "seed": 7,
                "val_frac": 0.1, "test_frac": 0.05, "learning_rate": 1e-2, "warmup_steps": 5,
                **train}
    return rnnkit.configs(model={"hidden_size": 32, "embed_size": 8, "num_layers": 2,
                                 "dropout": 0.1}, train=settings)


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in records]


def weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / name)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_lowers_the_loss_and_writes_the_run_folder(tmp_path, hamlet):
    out = tmp_path / "run"
    final = rnnkit.train(*small(hamlet), out=out)
    for name in ("config.json", "metrics.jsonl", "last.pt", "last.json", "best.pt", "best.json",
                 "samples/step_000010.txt"):
        assert (out / name).is_file(), name
    assert not (out / "data").exists()  # the prepared text lives in the shared cache
    recs = losses(out)
    assert [r[0] for r in recs] == [5, 10, 15, 20, 25, 30]
    assert recs[-1][1] < recs[0][1] - 0.5  # learned something
    assert final["step"] == 30 and math.isclose(final["val_bpc"], final["val_loss"] / math.log(2))
    meta = json.loads((out / "last.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["step"] == 30
    assert meta["config"]["model"]["hidden_size"] == 32 and "chars" in meta["vocab"]


def test_same_seed_same_run(tmp_path, hamlet):
    rnnkit.train(*small(hamlet), out=tmp_path / "a")
    rnnkit.train(*small(hamlet), out=tmp_path / "b")
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, hamlet):
    out = tmp_path / "run"
    trainer = Trainer(*small(hamlet), out=out)
    trainer.fit()
    model, vocab, meta = rnnkit.load(out / "last.pt")
    x = torch.tensor(vocab.encode("Ber.\nWho's there?"))[None]
    trainer.model.eval()
    torch.testing.assert_close(model(x)[0], trainer.model(x)[0], rtol=0, atol=0)
    assert vocab == trainer.data.vocab and meta["step"] == 30


SCHEDULED = {"scheduled_sampling": "linear", "ss_c": 0.03}


@pytest.mark.parametrize("mode, extra", [
    ("stream", {}), ("lines", {}), ("stream", {**SCHEDULED, "ss_impl": "parallel"}),
    ("lines", {**SCHEDULED, "ss_impl": "sequential"}), ("stream", {"precision": "bf16"}),
    ("stream", {"ema": 0.9})])
def test_interrupted_run_resumes_exactly(tmp_path, hamlet, monkeypatch, mode, extra):
    model_cfg, cfg = small(hamlet, mode=mode, **extra)
    rnnkit.train(model_cfg, cfg, out=tmp_path / "whole")

    one_step = Trainer._one_step

    def interrupt_at_17(self):  # Ctrl-C arriving mid-window, between two evaluations
        lr = one_step(self)
        if self.run.step == 17:
            signal.raise_signal(signal.SIGINT)
        return lr

    monkeypatch.setattr(Trainer, "_one_step", interrupt_at_17)
    with pytest.raises(Interrupted, match="--resume"):
        rnnkit.train(*small(hamlet, mode=mode, **extra), out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    assert losses(tmp_path / "cut")[-1][0] == 15  # records up to the interruption
    rnnkit.train(*small(hamlet, mode=mode, **extra), out=tmp_path / "cut", resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))


def test_one_record_per_step_when_the_run_ends_between_evaluations(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*small(hamlet, max_steps=35), out=out)
    recs = losses(out)
    assert [r[0] for r in recs] == [5, 10, 15, 20, 25, 30, 35]
    assert recs[-1][2] is not None  # the last step is always evaluated


def test_resume_with_more_steps_extends_a_finished_run(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*small(hamlet), out=out)
    final = rnnkit.train(*small(hamlet, max_steps=40), out=out, resume=True)
    assert final["step"] == 40
    assert [r[0] for r in losses(out)][-3:] == [30, 35, 40]


def test_existing_run_is_not_overwritten_and_bad_resume_is_refused(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*small(hamlet), out=out)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(RnnkitError, match="already holds a run"):
        rnnkit.train(*small(hamlet), out=out)
    assert (out / "last.pt").read_bytes() == before
    with pytest.raises(RnnkitError, match="no run to resume"):
        rnnkit.train(*small(hamlet), out=tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()
    for model, train in (({"hidden_size": 48}, {}), ({}, {"batch_size": 8}),
                         ({}, {"mode": "lines"})):
        cfgs = small(hamlet, **train)
        for k, v in model.items():
            setattr(cfgs[0], k, v)
        with pytest.raises(RnnkitError, match="--resume cannot change"):
            rnnkit.train(*cfgs, out=out, resume=True)
    assert (out / "last.pt").read_bytes() == before


def test_a_run_killed_before_its_first_evaluation_can_resume(tmp_path, hamlet):
    out = tmp_path / "run"
    trainer = Trainer(*small(hamlet), out=out)  # set up, never trained
    del trainer
    assert load_checkpoint(out / "last.pt")["meta"]["step"] == 0
    rnnkit.train(*small(hamlet), out=out, resume=True)
    rnnkit.train(*small(hamlet), out=tmp_path / "whole")
    assert losses(out) == losses(tmp_path / "whole")


def test_failed_start_leaves_no_run_folder(tmp_path, hamlet):
    with pytest.raises(RnnkitError, match="too few"):
        rnnkit.train(*small(hamlet, batch_size=4000), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_train_step_detaches_the_carried_state():
    model = CharLM(CharLMConfig(vocab_size=10, hidden_size=8, embed_size=4))
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randint(0, 10, (2, 5))
    _, cfg = rnnkit.configs()
    _, state, ok = train_step(TokenObjective(cfg), model, opt, {"x": x, "y": x}, None,
                             cfg.grad_clip)
    assert ok
    assert all(s.grad_fn is None and not s.requires_grad for s in state)
    loss_fresh = sequence_nll(model(x)[0], x)
    loss_carried = sequence_nll(model(x, state)[0], x)
    assert not torch.equal(loss_fresh, loss_carried)  # the carried state reaches the next window


def test_padding_does_not_change_the_loss_of_real_tokens():
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=12, hidden_size=16, embed_size=8)).eval()
    short = torch.tensor([[0, 3, 4, 5]])
    padded = torch.tensor([[0, 3, 4, 5, 0, 0, 0], [0, 6, 7, 8, 9, 10, 11]])
    y_short = torch.tensor([[3, 4, 5, 1]])
    y_padded = torch.tensor([[3, 4, 5, 1, -100, -100, -100], [6, 7, 8, 9, 10, 11, 1]])
    alone = sequence_nll(model(short)[0], y_short, reduction="sum")
    batch_logits = model(padded)[0]
    in_batch = sequence_nll(batch_logits[:1], y_padded[:1], reduction="sum")
    torch.testing.assert_close(alone, in_batch)


def test_lr_schedules():
    _, cfg = rnnkit.configs(train={"learning_rate": 1.0, "warmup_steps": 10, "max_steps": 100,
                                   "min_lr_frac": 0.1})
    assert lr_at(0, 0.0, cfg) == pytest.approx(0.1)  # warmup
    assert lr_at(50, 0.5, cfg) == pytest.approx(0.55)
    assert lr_at(100, 1.0, cfg) == pytest.approx(0.1)
    _, step = rnnkit.configs(train={"learning_rate": 1.0, "warmup_steps": 1,
                                    "lr_schedule": "step", "lr_decay_every": 10,
                                    "lr_decay_factor": 0.5})
    assert [lr_at(s, 0, step) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_three_sentences_lines_mode_samples_are_training_sentences(tmp_path, sentences_file):
    """The lecture's example: an autoregressive model reproduces whole sentences."""
    model_cfg, cfg = rnnkit.configs(
        model={"hidden_size": 64, "embed_size": 16, "num_layers": 1},
        train={"data": str(sentences_file), "mode": "lines", "batch_size": 3,
               "val_frac": 0.0, "test_frac": 0.0, "max_steps": 1000, "eval_every": 1000,
               "learning_rate": 2e-2, "warmup_steps": 10, "seed": 1})
    rnnkit.train(model_cfg, cfg, out=tmp_path / "run")
    samples = rnnkit.sample(tmp_path / "run", num_samples=100, temperature=1.0, seed=3)
    assert len(samples) == 100
    assert set(samples) <= set(SENTENCES), set(samples) - set(SENTENCES)
    assert set(samples) == set(SENTENCES)  # and not just one of them


def test_no_warmup_starts_at_the_full_rate():
    _, cfg = rnnkit.configs(train={"warmup_steps": 0, "lr_schedule": "constant"})
    assert lr_at(0, 0.0, cfg) == cfg.learning_rate
    with pytest.raises(RnnkitError, match="warmup_steps must be >= 0"):
        rnnkit.configs(train={"warmup_steps": -1})
