"""Seq2seq, classifier and tagger models: padding invariance, causality, attention masking."""

import pytest
import torch

from rnnkit.layers.attention import Attention
from rnnkit.models import (
    ClassifierConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)
from rnnkit.models.classifier import pool

SIZES = {"vocab_size": 11, "embed_size": 6, "hidden_size": 8, "num_layers": 2}


def padded(tokens: list[list[int]], extra: int, fill: int = 0):
    """Right-padded batch with ``extra`` more padding columns than needed, filled with ``fill``
    (the models must never look past a row's length, whatever the padding holds)."""
    width = max(map(len, tokens)) + extra
    out = torch.full((len(tokens), width), fill)
    for r, row in enumerate(tokens):
        out[r, :len(row)] = torch.tensor(row)
    return out, torch.tensor([len(r) for r in tokens])


ROWS = [[4, 5, 6, 7, 8], [9, 4], [5, 5, 10]]


def build(kind: str, cell: str, bidirectional: bool, **extra):
    torch.manual_seed(0)
    common = {**SIZES, "cell": cell, "bidirectional": bidirectional}
    if kind == "classify":
        return SequenceClassifier(ClassifierConfig(**common, num_classes=3, **extra)).eval()
    if kind == "tag":
        return SequenceTagger(TaggerConfig(**common, num_tags=4, **extra)).eval()
    return Seq2Seq(Seq2SeqConfig(**common, tgt_vocab_size=7, **extra)).eval()


def outputs(model, kind: str, extra: int, fill: int):
    src, lengths = padded(ROWS, extra, fill)
    if kind != "seq2seq":
        out = model(src, lengths)
        return out if kind == "classify" else [o[:n] for o, n in zip(out, lengths)]
    tgt = torch.tensor([[1, 4, 5], [1, 6, 6], [1, 5, 4]])
    return model(src, lengths, tgt)


@pytest.mark.parametrize("kind,extra_cfg", [
    ("classify", {"pool": "last"}), ("classify", {"pool": "mean"}),
    ("classify", {"pool": "max"}), ("tag", {}), ("seq2seq", {"attention": "dot"}),
    ("seq2seq", {"attention": "additive"}), ("seq2seq", {"attention": "none"})])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_changes_a_prediction(kind, extra_cfg, cell, bidirectional):
    model = build(kind, cell, bidirectional, **extra_cfg)
    with torch.no_grad():
        tight = outputs(model, kind, 0, 0)
        loose = outputs(model, kind, 4, 3)  # more padding, holding a real token id
    for a, b in zip(tight, loose):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_a_row_scores_the_same_alone_and_in_a_batch():
    model = build("seq2seq", "lstm", True, attention="additive")
    src, lengths = padded(ROWS, 0)
    tgt = torch.tensor([[1, 4, 5], [1, 6, 6], [1, 5, 4]])
    with torch.no_grad():
        batch = model(src, lengths, tgt)
        alone = model(torch.tensor([ROWS[1]]), torch.tensor([2]), tgt[1:2])
    torch.testing.assert_close(batch[1:2], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_only_a_bidirectional_tagger_reads_the_future(bidirectional):
    model = build("tag", "lstm", bidirectional)
    a = torch.tensor([[4, 5, 6, 7]])
    b = torch.tensor([[4, 5, 6, 9]])  # differs at the last step only
    lengths = torch.tensor([4])
    with torch.no_grad():
        first_a, first_b = model(a, lengths)[0, 0], model(b, lengths)[0, 0]
    changed = not torch.allclose(first_a, first_b)
    assert changed == bidirectional


def test_pool_last_takes_each_direction_at_its_own_end():
    out = torch.arange(2 * 4 * 4, dtype=torch.float).view(2, 4, 4)  # (B, S, 2H) with H = 2
    lengths = torch.tensor([3, 1])
    got = pool(out, lengths, "last", bidirectional=True)
    torch.testing.assert_close(got[0], torch.cat([out[0, 2, :2], out[0, 0, 2:]]))
    torch.testing.assert_close(got[1], torch.cat([out[1, 0, :2], out[1, 0, 2:]]))
    torch.testing.assert_close(pool(out, lengths, "max", False)[0], out[0, 2])
    torch.testing.assert_close(pool(out, lengths, "mean", False)[1], out[1, 0])


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_attention_weights_sum_to_one_and_skip_padding(score):
    torch.manual_seed(0)
    att = Attention(score, query_size=5, key_size=6)
    query, memory = torch.randn(3, 4, 5), torch.randn(3, 7, 6)
    mask = torch.arange(7)[None] < torch.tensor([7, 3, 1])[:, None]
    context, weights = att(query, memory, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert (weights[~mask[:, None, :].expand_as(weights)] == 0).all()
    torch.testing.assert_close(context, weights @ memory)
    # the padding's content cannot move the context either
    garbage = memory.masked_fill(~mask[..., None], 1e4)
    torch.testing.assert_close(att(query, garbage, mask)[0], context)
    with pytest.raises(ValueError, match="score must be one of"):
        Attention("cosine", 5, 6)


@pytest.mark.parametrize("attention", ["none", "dot", "additive"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_decoding_step_by_step_equals_the_teacher_forced_pass(attention, bidirectional):
    model = build("seq2seq", "lstm", bidirectional, attention=attention)
    src, lengths = padded(ROWS, 2)
    tgt = torch.tensor([[1, 4, 5, 6], [1, 6, 6, 4], [1, 5, 4, 4]])
    with torch.no_grad():
        full = model(src, lengths, tgt).log_softmax(-1)
        state = model.encode(src, lengths)
        steps = []
        for t in range(tgt.shape[1]):
            logp, state = model.step(tgt[:, t], state)
            steps.append(logp)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_reorder_state_selects_and_repeats_rows_of_the_decoder_state():
    model = build("seq2seq", "gru", True)
    src, lengths = padded(ROWS, 1)
    with torch.no_grad():
        state = model.encode(src, lengths)
        picked = Seq2Seq.reorder_state(state, torch.tensor([2, 2, 0]))
        logp, _ = model.step(torch.tensor([1, 1, 1]), state)
        logp_picked, _ = model.step(torch.tensor([1, 1, 1]), picked)
    torch.testing.assert_close(logp_picked, logp[[2, 2, 0]])
    assert torch.equal(picked.mask, state.mask[[2, 2, 0]])


def test_models_learn_gradients_reach_every_parameter():
    for kind in ("classify", "tag", "seq2seq"):
        model = build(kind, "lstm", True).train()
        src, lengths = padded(ROWS, 1)
        if kind == "seq2seq":
            out = model(src, lengths, torch.tensor([[1, 4], [1, 5], [1, 6]]))
        else:
            out = model(src, lengths)
        out.float().pow(2).mean().backward()
        quiet = [n for n, p in model.named_parameters()
                 if p.grad is None or not p.grad.abs().sum() > 0]
        # <pad>'s embedding row is fixed at zero; every parameter tensor gets a gradient
        assert not quiet, (kind, quiet)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_forget_bias_reaches_every_lstm_cell_of_the_encoder(bidirectional):
    model = build("classify", "lstm", bidirectional, forget_bias=1.0)
    cells = [m for m in model.modules() if type(m).__name__ == "LSTMCell"]
    assert len(cells) == SIZES["num_layers"] * (2 if bidirectional else 1)
    H = SIZES["hidden_size"]
    for cell in cells:
        assert torch.all(cell.bias_ih[H:2 * H] == 1.0) and torch.all(cell.bias_hh[H:2 * H] == 0)
        assert not torch.all(cell.bias_ih[:H] == 1.0)  # the other gates keep torch's init
