"""Model-agnostic decoders: greedy, sampling and beam search over a step/reorder protocol.

Two toy decoders drive them: a tiny random GRU whose next-token distribution depends on the
whole prefix, and a hand-written table where greedy decoding is not optimal. Beam search is
checked against brute-force enumeration of every hypothesis.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.decoding import SamplingConfig, beam_search, greedy_decode, sample_decode

EOS = 0


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def lp(length, alpha):
    """GNMT length penalty, written out again so the test does not trust the library's."""
    return ((5 + length) / 6) ** alpha


def rows_of(state, index):
    return state.index_select(0, index)


class GruDecoder:
    """A randomly initialised GRU cell + linear + log_softmax; the state is the hidden (N, H).

    The token ids are 0..V-1 (0 is eos) and V is bos.
    """

    def __init__(self, vocab, seed, hidden=8, scale=1.5):
        self.vocab, self.bos = vocab, vocab
        self.embed = torch.nn.Embedding(vocab + 1, hidden)
        self.cell = torch.nn.GRUCell(hidden, hidden)
        self.out = torch.nn.Linear(hidden, vocab)
        g = gen(seed)
        with torch.no_grad():  # peaky weights: the outputs vary in length and eos comes early
            for module in (self.embed, self.cell, self.out):
                for p in module.parameters():
                    p.copy_(scale * torch.randn(p.shape, generator=g))
        self.init_g = g

    def initial_state(self, batch):
        """A per-example state, as an encoder would produce."""
        return torch.randn(batch, self.cell.hidden_size, generator=self.init_g)

    def __call__(self, tokens, h):
        h = self.cell(self.embed(tokens), h)
        return self.out(h).log_softmax(dim=-1), h


class TableDecoder:
    """Next-token probabilities looked up by the prefix generated so far (bos excluded).

    The state is the (N, t) tensor of tokens fed so far, so ``rows_of`` reorders it.
    ``calls`` counts the steps taken.
    """

    def __init__(self, table, default, bos=9):
        self.table, self.default, self.bos = table, default, bos
        self.calls = 0

    def initial_state(self, batch):
        return torch.zeros((batch, 0), dtype=torch.long)

    def __call__(self, tokens, fed):
        self.calls += 1
        fed = torch.cat([fed, tokens[:, None]], dim=1)
        probs = [self.table.get(tuple(row[1:]), self.default) for row in fed.tolist()]
        return torch.tensor(probs).log(), fed


A, B_ = 1, 2
# greedy takes "a" (0.5) and then eos: 0.5 * 0.35 = 0.175; "b" then eos is 0.4 * 0.9 = 0.36
GREEDY_TRAP = {(): [0.1, 0.5, 0.4], (A,): [0.35, 0.33, 0.32], (B_,): [0.9, 0.05, 0.05]}
MOSTLY_EOS = [0.8, 0.1, 0.1]


def exhaustive(model, state, max_length, alpha):
    """{tokens: normalised score} of every hypothesis of one example, by enumeration."""
    found = {}
    prefixes, logp = [()], torch.zeros(1, dtype=torch.float64)
    tokens = torch.tensor([model.bos])
    for t in range(max_length):
        log_probs, state = model(tokens, state)
        total = (logp[:, None] + log_probs.double()).tolist()
        keep, index, nxt, nxt_logp = [], [], [], []
        for i, prefix in enumerate(prefixes):
            for v, s in enumerate(total[i]):
                if v == EOS:
                    found[prefix] = s / lp(len(prefix) + 1, alpha)
                elif t == max_length - 1:  # truncated: max_length tokens, no eos
                    found[prefix + (v,)] = s / lp(max_length, alpha)
                else:
                    keep.append(prefix + (v,))
                    index.append(i)
                    nxt.append(v)
                    nxt_logp.append(s)
        if not keep:
            break
        prefixes, logp = keep, torch.tensor(nxt_logp, dtype=torch.float64)
        state, tokens = rows_of(state, torch.tensor(index)), torch.tensor(nxt)
    return found


def reference_beam(model, state, beam, max_length, alpha):
    """A slow beam search for one example that never stops early: top-K finished, best first."""
    live, finished = [((), 0.0)], []
    tokens = torch.tensor([model.bos])
    for t in range(max_length):
        log_probs, state = model(tokens, state)
        # the library's float32 sums, so that both rank the candidates alike
        total = (torch.tensor([s for _, s in live])[:, None] + log_probs).tolist()
        ranked = sorted(((s, i, v) for i, row in enumerate(total) for v, s in enumerate(row)),
                        reverse=True)[:2 * beam]
        nxt, index = [], []
        for rank, (s, i, v) in enumerate(ranked):
            prefix = live[i][0]
            if v == EOS and rank < beam and s > -math.inf:
                finished.append((s / lp(len(prefix) + 1, alpha), list(prefix)))
            elif v != EOS and len(nxt) < beam:
                nxt.append((prefix + (v,), s))
                index.append(i)
        live, state, tokens = nxt, rows_of(state, torch.tensor(index)), torch.tensor(
            [p[-1] for p, _ in nxt])
    finished += [(s / lp(max_length, alpha), list(p)) for p, s in live if s > -math.inf]
    return sorted(finished, key=lambda h: h[0], reverse=True)[:beam]


def run_beam(model, state, batch, beam, max_length, alpha=0.0, n_best=1):
    return beam_search(model, rows_of, state, batch, model.bos, EOS, beam, max_length,
                       length_penalty=alpha, n_best=n_best)


# ---------------------------------------------------------------- greedy and sampling


def test_greedy_stops_at_eos_and_drops_it():
    model = TableDecoder(GREEDY_TRAP, MOSTLY_EOS)
    out = greedy_decode(model, model.initial_state(1), 1, model.bos, EOS, max_length=10)
    assert out == [[A]] and model.calls == 2  # stops as soon as every row has ended


def test_greedy_stops_at_max_length_without_eos():
    model = TableDecoder({}, [0.1, 0.2, 0.7])
    out = greedy_decode(model, model.initial_state(2), 2, model.bos, EOS, max_length=4)
    assert out == [[B_] * 4] * 2 and model.calls == 4


def test_greedy_rows_end_independently():
    model = GruDecoder(vocab=5, seed=3)
    state = model.initial_state(6)
    batched = greedy_decode(model, state, 6, model.bos, EOS, max_length=12)
    alone = [greedy_decode(model, state[i:i + 1], 1, model.bos, EOS, 12)[0] for i in range(6)]
    assert batched == alone
    assert len({len(r) for r in batched}) > 1  # the rows really did end at different steps
    assert all(EOS not in r and len(r) <= 12 for r in batched)


def test_sample_stops_at_eos():
    model = TableDecoder({(): [0.0, 0.5, 0.5]}, [1.0, 0.0, 0.0])
    out = sample_decode(model, model.initial_state(8), 8, model.bos, EOS, 10,
                        SamplingConfig(), gen(1))
    assert all(len(r) == 1 and r[0] in (A, B_) for r in out) and model.calls == 2
    assert {r[0] for r in out} == {A, B_}


def test_sample_stops_at_max_length():
    model = TableDecoder({}, [0.0, 0.5, 0.5])
    out = sample_decode(model, model.initial_state(3), 3, model.bos, EOS, 5,
                        SamplingConfig(), gen(2))
    assert [len(r) for r in out] == [5, 5, 5] and model.calls == 5


@pytest.mark.parametrize("seed", range(5))
def test_sampling_at_tiny_temperature_or_argmax_is_greedy(seed):
    model = GruDecoder(vocab=6, seed=seed, scale=0.7)
    state = model.initial_state(4)
    greedy = greedy_decode(model, state, 4, model.bos, EOS, 10)
    for cfg in (SamplingConfig(temperature=1e-6), SamplingConfig(argmax=True)):
        assert sample_decode(model, state, 4, model.bos, EOS, 10, cfg, gen(seed)) == greedy


def test_sampling_repeats_with_the_same_seed_only():
    model = GruDecoder(vocab=6, seed=0, scale=0.3)  # flat: two seeds would rarely agree
    state = model.initial_state(8)

    def draw(seed):
        return sample_decode(model, state, 8, model.bos, EOS, 12, SamplingConfig(), gen(seed))

    assert draw(5) == draw(5)
    assert draw(5) != draw(6)


# ---------------------------------------------------------------- beam search


def test_beam_two_escapes_the_greedy_trap():
    model = TableDecoder(GREEDY_TRAP, MOSTLY_EOS)
    assert greedy_decode(model, model.initial_state(1), 1, model.bos, EOS, 5) == [[A]]
    model.calls = 0
    out = run_beam(model, model.initial_state(1), 1, beam=2, max_length=5, n_best=2)
    assert [tokens for tokens, _ in out[0]] == [[B_], [A]]
    assert [s for _, s in out[0]] == pytest.approx([math.log(0.36), math.log(0.175)])
    # both live beams ("aa" 0.165, "ab" 0.16) are below the 2nd finished one: exact early stop
    assert model.calls == 2


def test_length_penalty_keeps_searching_while_a_longer_hypothesis_could_win():
    # eos first scores log 0.6 = -0.51; "a a eos" has log 0.392 = -0.94 raw, but
    # -0.94 / lp(3) = -0.40 with alpha=3. A bound at the current length would stop at step 1.
    table = {(): [0.6, 0.4], (A,): [0.01, 0.99], (A, A): [0.99, 0.01]}
    model = TableDecoder(table, [0.99, 0.01])
    out = run_beam(model, model.initial_state(1), 1, beam=1, max_length=3, alpha=3.0)
    assert out[0][0][0] == [A, A]
    assert out[0][0][1] == pytest.approx(math.log(0.4 * 0.99 * 0.99) / lp(3, 3.0))
    plain = run_beam(model, model.initial_state(1), 1, beam=1, max_length=3)
    assert plain == [[([], pytest.approx(math.log(0.6)))]]


# with length_penalty=-1 a hypothesis of len tokens scores logprob * (5 + len) / 6, so
# shorter is better: a live one can still win only by finishing at the shortest reachable length
FIRST = {(): [0.45, 0.5, 0.05], (B_,): [0.2, 0.5, 0.3]}
# "a a" outranks "a eos" at step 1, then ends with eos at step 2 (a bound at max_length would
# have stopped after step 1, returning "a" second)
LATE_EOS = FIRST | {(A,): [0.18, 0.813, 0.007], (A, A): [0.95, 0.025, 0.025]}
# at max_length=2, "a a" is truncated: lp(2), not lp(3), is the most it can reach
TRUNCATED = FIRST | {(A,): [0.40, 0.45, 0.15]}


@pytest.mark.parametrize("table, max_length, second", [
    (LATE_EOS, 20, ([A, A], math.log(0.5 * 0.813 * 0.95) * 8 / 6)),
    (TRUNCATED, 2, ([A, A], math.log(0.5 * 0.45) * 7 / 6)),
])
def test_negative_length_penalty_stops_only_when_no_shorter_ending_can_win(
        table, max_length, second):
    model = TableDecoder(table, [0.98, 0.01, 0.01])
    out = run_beam(model, model.initial_state(1), 1, beam=2, max_length=max_length,
                   alpha=-1.0, n_best=2)[0]
    assert [t for t, _ in out] == [[], second[0]]
    assert [s for _, s in out] == pytest.approx([math.log(0.45), second[1]])


@pytest.mark.parametrize("seed", range(25))
def test_beam_one_is_greedy(seed):
    model = GruDecoder(vocab=3 + seed % 5, seed=seed)
    batch = 1 + seed % 4
    state = model.initial_state(batch)
    greedy = greedy_decode(model, state, batch, model.bos, EOS, 15)
    beams = run_beam(model, state, batch, beam=1, max_length=15)
    assert [hyps[0][0] for hyps in beams] == greedy


def test_examples_are_independent_of_their_batch():
    model = GruDecoder(vocab=5, seed=11)
    state = model.initial_state(3)
    together = run_beam(model, state, 3, beam=3, max_length=8, alpha=0.6, n_best=3)
    for i in range(3):
        alone = run_beam(model, state[i:i + 1], 1, beam=3, max_length=8, alpha=0.6, n_best=3)[0]
        assert [t for t, _ in together[i]] == [t for t, _ in alone]
        assert [s for _, s in together[i]] == pytest.approx([s for _, s in alone], abs=1e-5)


@given(vocab=st.integers(3, 4), max_length=st.integers(1, 4), seed=st.integers(0, 10**6),
       batch=st.integers(1, 2), alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0, -0.5]),
       data=st.data())
@settings(max_examples=60, deadline=None)
def test_exhaustive_beam_finds_the_optimum(vocab, max_length, seed, batch, alpha, data):
    # the smallest beam that prunes nothing: every finite candidate ranks < K and every
    # non-eos prefix stays live; a larger one (up to V**L) must agree. Below V**L early
    # stopping can trigger, so this also checks that the stopping bound is exact.
    smallest = max((vocab - 1) ** (max_length - 1) * vocab, (vocab - 1) ** max_length)
    beam = data.draw(st.integers(smallest, vocab ** max_length), label="beam")
    n_best = data.draw(st.integers(1, min(beam, 5)), label="n_best")
    model = GruDecoder(vocab, seed)
    state = model.initial_state(batch)
    out = run_beam(model, state, batch, beam, max_length, alpha, n_best)
    for b in range(batch):
        truth = exhaustive(model, state[b:b + 1], max_length, alpha)
        best = sorted(truth.values(), reverse=True)[:n_best]
        assert len(out[b]) == n_best
        assert [s for _, s in out[b]] == pytest.approx(best, abs=1e-5)
        assert len({tuple(t) for t, _ in out[b]}) == n_best
        for tokens, score in out[b]:  # each a real hypothesis, with its own score
            assert truth[tuple(tokens)] == pytest.approx(score, abs=1e-5)


@given(vocab=st.integers(3, 6), max_length=st.integers(1, 8), beam=st.integers(1, 4),
       seed=st.integers(0, 10**6), batch=st.integers(1, 3),
       alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0, -0.5, -1.0]))
@settings(max_examples=80, deadline=None, derandomize=True)
def test_early_stopping_is_exact(vocab, max_length, beam, seed, batch, alpha):
    # stopping early must never change the result of running every example to max_length
    model = GruDecoder(vocab, seed)
    state = model.initial_state(batch)
    out = run_beam(model, state, batch, beam, max_length, alpha, n_best=beam)
    for b in range(batch):
        expected = reference_beam(model, state[b:b + 1], beam, max_length, alpha)
        assert [t for t, _ in out[b]] == [t for _, t in expected]
        assert [s for _, s in out[b]] == pytest.approx([s for s, _ in expected], abs=1e-5)


@pytest.mark.parametrize("kwargs", [dict(beam=0), dict(n_best=0), dict(beam=2, n_best=3),
                                    dict(max_length=0)])
def test_bad_beam_arguments_raise(kwargs):
    model = GruDecoder(vocab=4, seed=0)
    args = dict(beam=2, max_length=5, n_best=1) | kwargs
    with pytest.raises(ValueError):
        beam_search(model, rows_of, model.initial_state(1), 1, model.bos, EOS, **args)


def test_bad_greedy_length_raises():
    model = GruDecoder(vocab=4, seed=0)
    with pytest.raises(ValueError):
        greedy_decode(model, model.initial_state(1), 1, model.bos, EOS, max_length=0)
