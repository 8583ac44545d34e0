import json
import math

import pytest
import torch

import rnnkit
from rnnkit.data.vocab import CharVocab
from rnnkit.decoding import SamplingConfig, generate
from rnnkit.errors import RnnkitError
from rnnkit.models import CharLM, CharLMConfig
from rnnkit.scheduled_sampling import parallel_forward, sequential_forward
from rnnkit.training.schedules import teacher_forcing_prob

V = 9


def schedule(kind, **kw):
    return rnnkit.configs(train={"scheduled_sampling": kind, **kw})[1]


@pytest.mark.parametrize("kind, kw, formula", [
    ("linear", {"ss_k": 1.0, "ss_c": 0.01}, lambda i: max(0.0, 1.0 - 0.01 * i)),
    ("exponential", {"ss_k": 0.99}, lambda i: 0.99 ** i),
    ("inverse_sigmoid", {"ss_k": 50.0}, lambda i: 50 / (50 + math.exp(i / 50))),
    ("constant", {"ss_k": 0.3}, lambda i: 0.3)])
def test_schedules_follow_their_formulas(kind, kw, formula):
    cfg = schedule(kind, **kw)
    for i in (0, 1, 10, 77, 500):
        assert teacher_forcing_prob(i, cfg) == pytest.approx(formula(i))


@pytest.mark.parametrize("kind", ["linear", "exponential", "inverse_sigmoid"])
def test_schedules_reach_the_floor_and_stay(kind):
    cfg = schedule(kind, ss_min=0.2)
    values = [teacher_forcing_prob(i, cfg) for i in range(0, 100_000, 500)]
    assert values[-1] == 0.2 and min(values) == 0.2
    assert all(a >= b for a, b in zip(values, values[1:]))  # never rises


def test_none_is_teacher_forcing_and_bad_k_is_refused():
    assert teacher_forcing_prob(10**6, schedule("none")) == 1.0
    with pytest.raises(RnnkitError, match="out of range for exponential"):
        schedule("exponential", ss_k=1.5)


class Recorder(torch.nn.Module):
    """Wraps a model and records every token tensor it reads."""

    def __init__(self, model):
        super().__init__()
        self.model, self.inputs = model, []

    def forward(self, tokens, state=None):
        self.inputs.append(tokens.clone())
        return self.model(tokens, state)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CharLM(CharLMConfig(vocab_size=V, hidden_size=16, embed_size=8, num_layers=2)).eval()


@pytest.fixture
def x():
    return torch.randint(0, V, (4, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("forward", [parallel_forward, sequential_forward])
def test_eps_one_is_teacher_forcing(model, x, forward):
    expected, _ = model(x)
    got, _ = forward(model, x, None, 1.0)
    torch.testing.assert_close(got, expected)
    almost, _ = forward(model, x, None, 1.0 - 1e-12)  # the mixing path, keeping every token
    torch.testing.assert_close(almost, expected)


@pytest.mark.parametrize("forward", [parallel_forward, sequential_forward])
@pytest.mark.parametrize("argmax", [True, False])
def test_first_input_is_always_data(model, x, forward, argmax):
    rec = Recorder(model)
    torch.manual_seed(3)
    forward(rec, x, None, 0.0, argmax)
    assert torch.equal(rec.inputs[-1 if forward is parallel_forward else 0][:, 0], x[:, 0])


def test_sequential_eps_zero_is_free_running_decoding(model, x):
    logits, _ = sequential_forward(model, x, None, 0.0, argmax=True)
    vocab = CharVocab([chr(97 + i) for i in range(V)])
    for row in range(x.shape[0]):
        start = vocab.itos[int(x[row, 0])]
        greedy = generate(model, vocab, start, x.shape[1], SamplingConfig(argmax=True),
                          torch.Generator())[0]
        assert logits[row].argmax(-1).tolist() == greedy


def test_parallel_eps_zero_feeds_teacher_forced_predictions(model, x):
    rec = Recorder(model)
    parallel_forward(rec, x, None, 0.0, argmax=True)
    first_pass, mixed = rec.inputs
    assert torch.equal(first_pass, x)
    assert torch.equal(mixed[:, 1:], model(x)[0][:, :-1].argmax(-1))


@pytest.mark.parametrize("forward", [parallel_forward, sequential_forward])
def test_no_gradient_flows_through_the_fed_back_tokens(x, forward):
    """The gradients equal those of plain teacher forcing on the inputs actually fed in."""
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=V, hidden_size=16, embed_size=8))
    rec = Recorder(model)
    torch.manual_seed(5)
    logits, _ = forward(rec, x, None, 0.5)
    logits.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    fed = rec.inputs[-1] if forward is parallel_forward else torch.cat(rec.inputs, dim=1)
    assert not torch.equal(fed, x)  # some tokens really were the model's own
    model.zero_grad()
    model(fed)[0].square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)


@pytest.mark.parametrize("impl", ["parallel", "sequential"])
def test_training_logs_the_teacher_forcing_probability(tmp_path, hamlet, impl):
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={
        "data": str(hamlet), "max_steps": 20, "eval_every": 20, "scheduled_sampling": "linear",
        "ss_c": 0.05, "ss_min": 0.1, "ss_impl": impl})
    rnnkit.train(model_cfg, cfg, out=tmp_path / "run")
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["teacher_forcing_prob"] for r in recs] == pytest.approx([0.55, 0.1])
    losses = {}
    for name, kind in (("tf", "none"), ("eps1", "constant")):
        cfg.scheduled_sampling, cfg.ss_k = kind, 1.0
        rnnkit.train(model_cfg, cfg, out=tmp_path / name)
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses[name] = [json.loads(line)["train_loss"] for line in lines]
    assert losses["eps1"] == losses["tf"]  # eps = 1 is teacher forcing, step for step
    assert [r["train_loss"] for r in recs] != losses["tf"]


@pytest.mark.parametrize("forward", [parallel_forward, sequential_forward])
def test_ss_skip_keeps_the_first_inputs_from_data(model, x, forward):
    rec = Recorder(model)
    torch.manual_seed(4)
    forward(rec, x, None, 0.0, True, 5)
    fed = rec.inputs[-1] if forward is parallel_forward else torch.cat(rec.inputs, dim=1)
    assert torch.equal(fed[:, :5], x[:, :5]) and not torch.equal(fed[:, 5:], x[:, 5:])
