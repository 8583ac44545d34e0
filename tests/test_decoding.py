"""Sampling rules (argmax, temperature, top-k, top-p) and autoregressive generation."""

import itertools
import re

import pytest
import torch

from rnnkit.data.vocab import BOS, EOS, CharVocab
from rnnkit.decoding import SamplingConfig, beam_continue, generate, sample_next_token, sample_rows
from rnnkit.errors import RnnkitError
from rnnkit.models import CharLM, CharLMConfig
from rnnkit.models.gpt import GPT, GPTConfig

CHARS = list("abcdefgh \n")
V = 10


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_logits(rows=6, seed=0, scale=2.0):
    return scale * torch.randn(rows, V, generator=gen(seed))


def draw(logits, cfg, n, seed=0):
    """n samples per row of logits, as (n, rows), in one batched call."""
    rows = logits.shape[0]
    tokens = sample_next_token(logits.repeat(n, 1), cfg, gen(seed))
    assert tokens.shape == (n * rows,) and tokens.dtype == torch.int64
    return tokens.view(n, rows)


def frequencies(samples):
    """(n, rows) samples -> (rows, V) empirical distribution."""
    one_hot = torch.nn.functional.one_hot(samples, V).double()
    return one_hot.mean(dim=0)


# ---------------------------------------------------------------- sample_next_token


def test_argmax_picks_the_most_likely_token():
    logits = random_logits(rows=32)
    cfg = SamplingConfig(argmax=True, temperature=5.0)
    assert torch.equal(sample_next_token(logits, cfg, gen()), logits.argmax(dim=-1))


@pytest.mark.parametrize("temperature", [0.01, 0.5, 1.0, 3.0, 100.0])
def test_top_k_one_equals_argmax_at_any_temperature(temperature):
    logits = random_logits(rows=8, seed=1, scale=0.5)  # flat: a real sampler would wander
    cfg = SamplingConfig(temperature=temperature, top_k=1)
    samples = draw(logits, cfg, 200, seed=2)
    assert (samples == logits.argmax(dim=-1)).all()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 10.0])
def test_tiny_top_p_equals_argmax(temperature):
    logits = random_logits(rows=8, seed=3, scale=0.5)
    cfg = SamplingConfig(temperature=temperature, top_p=1e-6)
    samples = draw(logits, cfg, 200, seed=4)
    assert (samples == logits.argmax(dim=-1)).all()


@pytest.mark.parametrize("k", [2, 5])
def test_top_k_never_samples_excluded_tokens(k):
    logits = random_logits(rows=4, seed=5, scale=0.3)  # flat: excluded tokens would be common
    cfg = SamplingConfig(temperature=2.0, top_k=k)
    samples = draw(logits, cfg, 3000, seed=6)
    allowed = logits.topk(k, dim=-1).indices
    for row in range(logits.shape[0]):
        seen = set(samples[:, row].tolist())
        assert seen == set(allowed[row].tolist())  # only the top k, and each of them


def test_lower_temperature_concentrates_mass_on_the_argmax():
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5]])
    temperatures = [4.0, 2.0, 1.0, 0.5, 0.25]
    freqs = []
    for i, t in enumerate(temperatures):
        samples = draw(logits, SamplingConfig(temperature=t), 5000, seed=10 + i)
        freq = (samples == 0).double().mean().item()
        expected = (logits[0] / t).softmax(dim=-1)[0].item()
        assert freq == pytest.approx(expected, abs=0.03)
        freqs.append(freq)
    assert freqs == sorted(freqs) and freqs[-1] > freqs[0] + 0.5


def test_temperature_one_samples_follow_softmax():
    logits = random_logits(rows=3, seed=7, scale=1.5)
    freqs = frequencies(draw(logits, SamplingConfig(), 20000, seed=8))
    expected = logits.double().softmax(dim=-1)
    # 20000 draws: one standard error is at most 0.0036
    torch.testing.assert_close(freqs, expected, atol=0.015, rtol=0)


def test_top_k_samples_follow_renormalised_softmax_over_the_top_k():
    logits = random_logits(rows=3, seed=9, scale=1.0)
    cfg = SamplingConfig(temperature=0.7, top_k=4)
    freqs = frequencies(draw(logits, cfg, 20000, seed=10))
    scaled = logits.double() / 0.7
    kth = scaled.topk(4, dim=-1).values[:, -1:]
    expected = scaled.masked_fill(scaled < kth, float("-inf")).softmax(dim=-1)
    torch.testing.assert_close(freqs, expected, atol=0.015, rtol=0)


def nucleus(probs, p):
    """Reference top-p: the fewest most likely tokens whose mass reaches p, renormalised."""
    out = torch.zeros_like(probs)
    for row in range(probs.shape[0]):
        total = 0.0
        for i in probs[row].argsort(descending=True).tolist():
            out[row, i] = probs[row, i]
            total += probs[row, i].item()
            if total >= p:
                break
    return out / out.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("p", [0.3, 0.75, 0.95])
def test_top_p_samples_follow_renormalised_nucleus(p):
    logits = random_logits(rows=3, seed=11, scale=1.0)
    freqs = frequencies(draw(logits, SamplingConfig(top_p=p), 20000, seed=12))
    expected = nucleus(logits.double().softmax(dim=-1), p)
    torch.testing.assert_close(freqs, expected, atol=0.015, rtol=0)


# ---------------------------------------------------------------- SamplingConfig


def test_each_row_sampled_with_its_own_settings_gets_what_it_would_get_alone():
    """sample_rows (the playground's batch) against sample_next_token row by row, over many
    steps, with settings shared by some rows and not others, argmax among them."""
    cfgs = [SamplingConfig(), SamplingConfig(temperature=0.5), SamplingConfig(),
            SamplingConfig(argmax=True), SamplingConfig(top_k=3, top_p=0.9),
            SamplingConfig(temperature=0.5)]
    batch_gens = [gen(10 + r) for r in range(len(cfgs))]
    alone_gens = [gen(10 + r) for r in range(len(cfgs))]
    for step in range(50):
        logits = random_logits(rows=len(cfgs), seed=100 + step)
        together = sample_rows(logits, cfgs, batch_gens)
        alone = [int(sample_next_token(logits[r:r + 1], cfgs[r], alone_gens[r]))
                 for r in range(len(cfgs))]
        assert together.tolist() == alone, step
    # the rows really were random: not all steps drew the same token
    assert len({int(sample_rows(random_logits(1, seed=s), cfgs[:1], [gen(s)])) for s in
                range(20)}) > 1


@pytest.mark.parametrize("kwargs,flag", [
    ({"temperature": 0.0}, "--temperature"),
    ({"temperature": -0.5}, "--temperature"),
    ({"temperature": float("nan")}, "--temperature"),
    ({"top_k": 0}, "--top-k"),
    ({"top_k": -3}, "--top-k"),
    ({"top_p": 0.0}, "--top-p"),
    ({"top_p": -0.1}, "--top-p"),
    ({"top_p": 1.01}, "--top-p"),
])
def test_sampling_config_rejects_bad_values_naming_the_flag(kwargs, flag):
    with pytest.raises(RnnkitError, match=re.escape(flag)):
        SamplingConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"temperature": 1e-3}, {"top_k": 1}, {"top_p": 1.0},
                                    {"top_p": 1e-9}])
def test_sampling_config_accepts_boundary_values(kwargs):
    SamplingConfig(**kwargs)


# ---------------------------------------------------------------- generate


def make_model(vocab, seed=0, cell="lstm"):
    torch.manual_seed(seed)
    cfg = CharLMConfig(vocab_size=len(vocab), cell=cell, hidden_size=16, embed_size=8,
                       num_layers=2)
    model = CharLM(cfg).eval()
    with torch.no_grad():  # sharper, history-dependent argmax than the default init gives
        for p in model.parameters():
            p.mul_(3.0)
    return model


def start_ids(vocab, prime):
    ids = [vocab.id_of(BOS)] if BOS in vocab.specials else []
    ids += [vocab.itos.index(ch) for ch in prime]
    return ids or [vocab.itos.index("\n")]


@torch.no_grad()
def greedy_by_recomputing(model, vocab, prime, length, exclude=()):
    """Reference: re-feed the whole sequence every step, zero state; stop at <eos> if any.
    Also returns each step's margin of the best token over <eos> (lines mode)."""
    eos = vocab.id_of(EOS) if EOS in vocab.specials else None
    seq = start_ids(vocab, prime)
    out, margins = [], []
    for _ in range(length):
        raw = model(torch.tensor([seq]))[0][0, -1]
        logits = raw.clone()
        logits[list(exclude)] = float("-inf")
        token = int(logits.argmax())
        if eos is not None:
            margins.append((logits.max() - raw[eos]).item())
        if token == eos:
            break
        out.append(token)
        seq.append(token)
    return out, margins


@torch.no_grad()
def greedy_without_state_carry(model, vocab, prime, length):
    """A broken decoder that drops the state: shows the comparison can tell the difference."""
    logits, _ = model(torch.tensor([start_ids(vocab, prime)]))
    out = []
    for _ in range(length):
        token = int(logits[0, -1].argmax())
        out.append(token)
        logits, _ = model(torch.tensor([[token]]))
    return out


# seeds whose random model has a greedy path that is not one token repeated (most are)
@pytest.mark.parametrize("cell,seed", [("lstm", 1), ("gru", 4)])
@pytest.mark.parametrize("prime", ["", "abc"])
def test_stream_generate_with_state_carry_equals_recomputing_the_prefix(prime, cell, seed):
    vocab = CharVocab(CHARS)
    model = make_model(vocab, seed=seed, cell=cell)
    length = 30
    expected, _ = greedy_by_recomputing(model, vocab, prime, length)
    # the comparison has power: the path varies, and dropping the state changes it
    assert len(set(expected)) >= 2, "degenerate greedy path: pick another seed"
    assert greedy_without_state_carry(model, vocab, prime, length) != expected
    rows = generate(model, vocab, prime, length, SamplingConfig(argmax=True), gen(),
                    num_samples=2)
    assert rows == [expected, expected]


def force_eos_at_a_later_step(model, vocab, prime, length, min_step=3):
    """Raise the <eos> head bias just enough that greedy decoding picks it first at a step
    >= min_step. Returns that step. Lower-bias steps are unaffected, as <eos> never won there."""
    eos = vocab.id_of(EOS)
    _, margins = greedy_by_recomputing(model, vocab, prime, length, exclude=[eos])
    for step in range(min_step, length):
        best_before = min(margins[:step])
        if margins[step] < best_before - 1e-3:
            with torch.no_grad():
                model.head.bias[eos] += (margins[step] + best_before) / 2
            return step
    raise AssertionError("no step to force <eos> at: change the seed")


@pytest.mark.parametrize("prime", ["", "bad"])
def test_lines_generate_equals_recomputing_and_stops_at_eos(prime):
    vocab = CharVocab(CHARS, [BOS, EOS])
    model = make_model(vocab, seed=2)
    length = 25
    step = force_eos_at_a_later_step(model, vocab, prime, length)
    expected, _ = greedy_by_recomputing(model, vocab, prime, length)
    assert len(expected) == step  # the reference now stops at <eos> on that step
    seen = []
    rows = generate(model, vocab, prime, length, SamplingConfig(argmax=True), gen(),
                    num_samples=2, on_token=lambda t: seen.append(t.tolist()))
    assert rows == [expected, expected]
    assert vocab.id_of(EOS) not in rows[0]
    # generation stops as soon as every row has ended: the last step produced <eos>
    assert len(seen) == step + 1 and seen[-1] == [vocab.id_of(EOS)] * 2


def test_lines_rows_end_at_their_own_eos_which_is_not_included():
    vocab = CharVocab(CHARS, [BOS, EOS])
    eos = vocab.id_of(EOS)
    model = make_model(vocab, seed=3)
    with torch.no_grad():
        model.head.bias[eos] = model.head.bias.max()  # <eos> is likely, but not certain
    seen = []
    length = 40
    rows = generate(model, vocab, "", length, SamplingConfig(temperature=1.5), gen(5),
                    num_samples=8, on_token=lambda t: seen.append(t.tolist()))
    steps = torch.tensor(seen)  # (steps, B)
    ended = []
    for r, row in enumerate(rows):
        stream = steps[:, r].tolist()
        end = stream.index(eos) if eos in stream else len(stream)
        assert row == stream[:end]
        assert eos not in row
        ended.append(end)
    assert len(set(ended)) > 1  # rows end independently
    assert max(ended) < length  # every row ended, so generation stopped early
    assert len(seen) == max(ended) + 1


def test_same_seed_same_samples_different_seed_different_samples():
    vocab = CharVocab(CHARS)
    torch.manual_seed(4)
    model = CharLM(CharLMConfig(vocab_size=len(vocab), hidden_size=16, embed_size=8,
                                num_layers=2))
    cfg = SamplingConfig(temperature=1.0)
    a = generate(model, vocab, "ab", 50, cfg, gen(123), num_samples=2)
    b = generate(model, vocab, "ab", 50, cfg, gen(123), num_samples=2)
    c = generate(model, vocab, "ab", 50, cfg, gen(124), num_samples=2)
    assert len(a) == 2 and all(len(row) == 50 for row in a)
    assert a == b
    assert a != c


@pytest.mark.parametrize("specials", [(), (BOS, EOS)], ids=["stream", "lines"])
def test_prime_text_outside_vocabulary_raises(specials):
    vocab = CharVocab(CHARS, specials)
    model = make_model(vocab)
    with pytest.raises(RnnkitError, match=r"prime-text.*'z'"):
        generate(model, vocab, "abz", 5, SamplingConfig(argmax=True), gen())


# ---------------------------------------------------------------- beam search for language models

@torch.no_grad()
def continuation_logprob(model, vocab, prime, tokens) -> float:
    """log p(tokens | prime) by one forward pass over the whole sequence."""
    ids = start_ids(vocab, prime)
    logits = model(torch.tensor([ids + tokens]))[0][0, len(ids) - 1:-1]
    return float(logits.log_softmax(-1).gather(1, torch.tensor(tokens)[:, None]).sum())


@pytest.mark.parametrize("model_kind", ["lstm", "gpt"])
def test_beam_one_is_greedy_and_a_full_beam_finds_the_likeliest_continuation(model_kind):
    vocab = CharVocab(list("ab\nc"))
    if model_kind == "gpt":
        torch.manual_seed(2)
        model = GPT(GPTConfig(vocab_size=4, block_size=16, n_layer=1, n_head=1, n_embd=8))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(8.0)
    else:
        model = make_model(vocab, seed=4)  # a seed whose greedy path is not the likeliest
    length = 4
    greedy = generate(model, vocab, "ab", length, SamplingConfig(argmax=True), gen())[0]
    assert beam_continue(model, vocab, "ab", length, beam=1) == [greedy]
    # 4 ** 3 hypotheses kept: nothing is pruned, so the search is exhaustive
    found = beam_continue(model, vocab, "ab", length, beam=64, n_best=3)
    every = itertools.product(range(4), repeat=length)
    scores = sorted((continuation_logprob(model, vocab, "ab", list(t)), list(t)) for t in every)
    assert found == [t for _, t in scores[::-1][:3]]
    # the model's greedy path is not its likeliest: the search has work to do
    assert found[0] != greedy


def test_beam_in_lines_mode_ends_at_eos_and_keeps_it_out():
    vocab = CharVocab(CHARS, [BOS, EOS])
    model = make_model(vocab, seed=2)
    step = force_eos_at_a_later_step(model, vocab, "", 25)
    lines = beam_continue(model, vocab, "", 25, beam=1)
    assert len(lines[0]) == step and vocab.id_of(EOS) not in lines[0]
    wide = beam_continue(model, vocab, "", 25, beam=4, n_best=4)
    assert len(wide) == 4 and all(vocab.id_of(EOS) not in line for line in wide)
