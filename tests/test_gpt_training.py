"""--model gpt: the transformer baseline through the same trainer, checkpoints, sampler and
CLI as the recurrent model."""

import signal

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.decoding import SamplingConfig, generate, logits_over
from rnnkit.models.gpt import GPT
from rnnkit.training.loop import Interrupted, Trainer

from .test_training import assert_same_weights, losses, weights


def small(data, **train):
    settings = {"data": str(data), "model": "gpt", "seq_length": 16, "batch_size": 4,
                "max_steps": 30, "eval_every": 10, "log_every": 5, "sample_length": 20,
                "seed": 7, "val_frac": 0.1, "test_frac": 0.05, "learning_rate": 1e-2,
                "warmup_steps": 5, **train}
    return rnnkit.configs(model={"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16,
                                 "dropout": 0.1}, train=settings)


def test_gpt_trains_and_round_trips_through_a_checkpoint(tmp_path, hamlet):
    out = tmp_path / "run"
    trainer = Trainer(*small(hamlet), out=out)
    trainer.fit()
    recs = losses(out)
    assert recs[-1][1] < recs[0][1] - 0.5
    model, vocab, meta = rnnkit.load(out / "last.pt")
    assert isinstance(model, GPT) and meta["config"]["train"]["model"] == "gpt"
    x = torch.tensor(vocab.encode("Ber.\nWho's there"))[None]  # within block_size 16
    trainer.model.eval()
    torch.testing.assert_close(model(x)[0], trainer.model(x)[0], rtol=0, atol=0)


def test_gpt_resumes_exactly(tmp_path, hamlet, monkeypatch):
    rnnkit.train(*small(hamlet), out=tmp_path / "whole")
    one_step = Trainer._one_step

    def interrupt_at_17(self):
        lr = one_step(self)
        if self.run.step == 17:
            signal.raise_signal(signal.SIGINT)
        return lr

    monkeypatch.setattr(Trainer, "_one_step", interrupt_at_17)
    with pytest.raises(Interrupted):
        rnnkit.train(*small(hamlet), out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    rnnkit.train(*small(hamlet), out=tmp_path / "cut", resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))


def test_sampling_past_the_block_size_equals_the_sliding_window_forward(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*small(hamlet, max_steps=10), out=out)
    model, vocab, _ = rnnkit.load(out)
    prompt = "Ber. Who's there? Fran. Nay, answer me"  # longer than block_size 16
    gen = torch.Generator().manual_seed(0)
    rows = generate(model, vocab, prompt, 30, SamplingConfig(argmax=True), gen)
    tokens = torch.tensor([[*vocab.encode(prompt), *rows[0]]])
    # greedy: each generated token is the argmax of the logits the sliding window gives
    expected = logits_over(model, tokens)[0, len(prompt) - 1:-1].argmax(-1)
    assert rows[0] == expected.tolist()


def test_gpt_cli_train_sample_eval_with_bpe(tmp_path, hamlet, capsys):
    run = tmp_path / "g"
    assert main(["train", "--preset", "gpt-tiny", "--data", str(hamlet), "--out", str(run),
                 "--tokenizer", "bpe", "--tokenizer-size", "300", "--max-steps", "6",
                 "--eval-every", "3"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prime-text", "Ham", "--length", "40",
                 "--precision", "bf16"]) == 0
    assert capsys.readouterr().out.startswith("Ham")
    assert main(["eval", str(run), "--free-running", "--prefix", "4", "--continuation",
                 "30", "--max-cases", "8"]) == 0
    assert "free-running" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--model", "gpt", "--rnn-size", "64"], "does not apply to --task lm --model gpt"),
    (["--preset", "gpt-tiny", "--seq-length", "64"], "exceeds the transformer's --block-size"),
    (["--preset", "gpt-tiny", "--scheduled-sampling", "linear", "--ss-impl", "sequential"],
     "takes --ss-impl parallel")])
def test_gpt_setting_errors_are_one_line(tmp_path, hamlet, capsys, flags, message):
    code = main(["train", "--data", str(hamlet), "--out", str(tmp_path / "r"),
                 "--max-steps", "2", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "last.pt").exists()


def test_int8_sampling_and_the_playground_refuse_a_transformer(tmp_path, hamlet, capsys):
    run = tmp_path / "g"
    rnnkit.train(*small(hamlet, max_steps=2, eval_every=2), out=run)
    capsys.readouterr()
    assert main(["sample", str(run), "--precision", "int8"]) == 2
    assert "--precision fp32 or bf16" in capsys.readouterr().err
    assert main(["visualize", str(run), "--text", str(hamlet), "--out",
                 str(tmp_path / "v.html")]) == 2
    assert "recurrent character model" in capsys.readouterr().err


def test_scheduled_sampling_trains_a_transformer_in_parallel(tmp_path, hamlet):
    final = rnnkit.train(*small(hamlet, scheduled_sampling="linear", ss_c=0.03,
                                ss_impl="parallel", max_steps=10), out=tmp_path / "ss")
    recs = losses(tmp_path / "ss")
    assert final["step"] == 10 and recs[-1][1] < recs[0][1]
