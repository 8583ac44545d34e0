"""The single-step decoding path (RecurrentStep, model.stepper) against the sequence kernels."""

import pytest
import torch

from rnnkit.data.vocab import EOS, CharVocab
from rnnkit.decoding import (
    SamplingConfig,
    beam_search,
    generate,
    greedy_decode,
    prompt_ids,
    sample_next_token,
)
from rnnkit.layers import cells
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.recurrent_step import RecurrentStep, int8_available
from rnnkit.models import CharLM, CharLMConfig
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig

CELLS = list(cells.CELLS)  # every registered cell
# what each precision may change in the logits of the small models below (fp32: rounding)
TOLERANCE = {"fp32": 1e-5, "bf16": 0.05, "int8": 0.05}
needs_int8 = pytest.mark.skipif(not int8_available(), reason="no dynamic int8 kernel")
PRECISIONS = ["fp32", "bf16", pytest.param("int8", marks=needs_int8)]


def random_state(rnn: Recurrent, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (rnn.num_layers, batch, rnn.hidden_size)
    return tuple(torch.randn(shape, generator=g) for _ in range(rnn.state_count))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("embedded", [False, True])
def test_steps_equal_the_sequence_kernel(cell, layers, embedded):
    torch.manual_seed(0)
    rnn = Recurrent(cell, 12, 16, layers).eval()
    embed = torch.nn.Embedding(9, 12) if embedded else None
    inputs = torch.randint(0, 9, (5, 7)) if embedded else torch.randn(5, 7, 12)
    state = random_state(rnn, 5)
    with torch.no_grad():
        ref, ref_state = rnn(embed(inputs) if embedded else inputs, state)
    step = RecurrentStep(rnn, embed)
    outs = []
    for t in range(7):
        out, state = step(inputs[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, dim=1), ref, atol=1e-5, rtol=1e-5)
    for got, want in zip(state, ref_state):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("mlp_layers", [0, 1])
def test_lm_stepper_computes_the_models_logits(cell, precision, mlp_layers):
    torch.manual_seed(1)
    model = CharLM(CharLMConfig(vocab_size=30, cell=cell, hidden_size=32, num_layers=2,
                                mlp_layers=mlp_layers)).eval()
    tokens = torch.randint(0, 30, (3, 25))
    with torch.no_grad():
        ref, _ = model(tokens)
    step, state, outs = model.stepper(precision), None, []
    for t in range(25):
        logits, state = step(tokens[:, t], state)
        outs.append(logits)
    err = (torch.stack(outs, dim=1) - ref).abs().max().item()
    # relative to the logits' scale past 1: a residual cell's (parallel_cells.py) outputs are
    # not squashed into [-1, 1], and the head's int8 input quantization errs in proportion
    assert err < TOLERANCE[precision] * max(1.0, ref.abs().max().item())
    if precision != "fp32":  # a lower precision really is in use: not bit-equal to fp32
        assert err > 1e-7


def reference_generate(model, vocab, prime_text, length, cfg, seed, rows):
    """The plain loop: the whole model, one (B, 1) call per token."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.tensor(prompt_ids(vocab, prime_text)).expand(rows, -1)
    with torch.no_grad():
        logits, state = model(start)
        out = []
        for _ in range(length):
            token = sample_next_token(logits[:, -1], cfg, gen)
            out.append(token)
            logits, state = model(token[:, None], state)
    return torch.stack(out, dim=1).tolist()


@pytest.mark.parametrize("cell", CELLS)
def test_generate_draws_the_same_text_as_the_plain_loop(cell):
    torch.manual_seed(2)
    vocab = CharVocab(list("abcdefgh \n"))
    model = CharLM(CharLMConfig(vocab_size=len(vocab), cell=cell, hidden_size=24)).eval()
    cfg = SamplingConfig(temperature=0.9, top_k=6)
    got = generate(model, vocab, "abc", 60, cfg, torch.Generator().manual_seed(5), 4)
    assert got == reference_generate(model, vocab, "abc", 60, cfg, 5, 4)


@needs_int8
def test_int8_sampling_stays_close_to_the_model():
    """The distribution int8 samples from differs from fp32's by a small KL at every step."""
    torch.manual_seed(3)
    model = CharLM(CharLMConfig(vocab_size=40, hidden_size=64)).eval()
    tokens = torch.randint(0, 40, (4, 50))
    exact, fast = model.stepper("fp32"), model.stepper("int8")
    s1 = s2 = None
    for t in range(50):
        l1, s1 = exact(tokens[:, t], s1)
        l2, s2 = fast(tokens[:, t], s2)
        kl = torch.nn.functional.kl_div(l2.log_softmax(-1), l1.log_softmax(-1),
                                        log_target=True, reduction="batchmean")
        assert kl < 1e-3


def test_lines_mode_rows_end_at_eos_and_generation_stops():
    vocab = CharVocab(list("ab"), specials=["<bos>", EOS])
    model = CharLM(CharLMConfig(vocab_size=len(vocab), hidden_size=8)).eval()
    with torch.no_grad():  # make <eos> certain after the first token
        model.head.bias.zero_()
        model.head.weight.zero_()
        model.head.bias[vocab.id_of(EOS)] = 50.0
    rows = generate(model, vocab, "", 100, SamplingConfig(), torch.Generator().manual_seed(0), 3)
    assert rows == [[], [], []]


def test_a_model_without_feedback_keeps_its_own_step():
    """Its step must blank the drawn token as forward() does, so two different draws lead to
    the same next distribution."""
    model = CharLM(CharLMConfig(vocab_size=4, hidden_size=8, feedback=False)).eval()
    with torch.no_grad():
        _, state = model(torch.tensor([[1], [1]]))
    logits, _ = model.stepper()(torch.tensor([2, 3]), state)
    torch.testing.assert_close(logits[0], logits[1])


def test_bad_precision_is_refused():
    model = CharLM(CharLMConfig(vocab_size=5, hidden_size=8))
    with pytest.raises(ValueError, match="precision"):
        model.stepper("fp8")


def seq2seq(cell: str, attention: str) -> Seq2Seq:
    torch.manual_seed(4)
    cfg = Seq2SeqConfig(vocab_size=11, tgt_vocab_size=9, cell=cell, hidden_size=16,
                        embed_size=8, num_layers=2, attention=attention, bidirectional=True)
    return Seq2Seq(cfg).eval()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ["none", "dot", "additive"])
def test_seq2seq_stepper_equals_its_step_and_beam_search_is_unchanged(cell, attention):
    model = seq2seq(cell, attention)
    src = torch.randint(1, 11, (4, 6))
    lengths = torch.tensor([6, 3, 5, 1])
    state = model.encode(src, lengths)
    tokens = torch.randint(1, 9, (4,))
    with torch.no_grad():
        want, _ = model.step(tokens, state)
    got, _ = model.stepper()(tokens, state)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    args = (state, 4, 1, 2)
    search = {"beam": 3, "max_length": 8, "n_best": 2}
    slow = beam_search(model.step, model.reorder_state, *args, **search)
    fast = beam_search(model.stepper(), model.reorder_state, *args, **search)
    assert [[t for t, _ in h] for h in fast] == [[t for t, _ in h] for h in slow]
    assert greedy_decode(model.stepper(), *args, 8) == greedy_decode(model.step, *args, 8)


class HalvedLSTM(cells.LSTMCell):
    """An LSTM with its own update (h halved): the LSTM's fast step would compute the wrong
    function for it."""

    def update(self, gi, gh, state):
        h, (_, c) = super().update(gi, gh, state)
        return h / 2, (h / 2, c)


class OwnGatesRNN(cells.RNNCell):
    """An RNN with its own products (x doubled): only its forward knows them."""

    def gates(self, x, h):
        return super().gates(2 * x, h)


@pytest.mark.parametrize("cell", [HalvedLSTM, OwnGatesRNN])
def test_a_subclass_with_its_own_arithmetic_is_stepped_by_it(cell):
    torch.manual_seed(5)
    rnn = Recurrent(cell, 6, 8, 2).eval()
    assert not rnn.fused
    x, state = torch.randn(3, 5, 6), random_state(rnn, 3)
    with torch.no_grad():
        want, _ = rnn(x, state)
    step = RecurrentStep(rnn)
    for t in range(5):
        out, state = step(x[:, t], state)
        torch.testing.assert_close(out, want[:, t])


def test_a_cell_with_its_own_products_has_no_lower_precision_step():
    rnn = Recurrent(OwnGatesRNN, 6, 8, 1)
    with pytest.raises(ValueError, match="OwnGatesRNN has no bf16 single step"):
        RecurrentStep(rnn, precision="bf16")
    RecurrentStep(Recurrent(HalvedLSTM, 6, 8, 1), precision="bf16")  # the general step
