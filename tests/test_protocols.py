"""The model protocols of models/protocols.py: every language model and conditional decoder
keeps its contract, and a GPT stepper's one-pass prefill equals stepping through the prompt."""

import pytest
import torch
from torch.testing import assert_close

from rnnkit.models import (
    GPT,
    Captioner,
    CaptionerConfig,
    CharLM,
    CharLMConfig,
    GPTConfig,
    Seq2Seq,
    Seq2SeqConfig,
)
from rnnkit.models.protocols import ConditionalDecoder, LanguageModel, PrefillStep, Step

V = 7


def tiny_lm(kind: str):
    torch.manual_seed(0)
    if kind == "rnn":
        return CharLM(CharLMConfig(vocab_size=V, embed_size=4, hidden_size=8, num_layers=2))
    return GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=8))


def tiny_decoder(kind: str):
    """A model, the inputs ``encode`` takes, and the batch size."""
    torch.manual_seed(0)
    if kind == "seq2seq":
        model = Seq2Seq(Seq2SeqConfig(vocab_size=V, tgt_vocab_size=V, embed_size=4,
                                      hidden_size=8, num_layers=2))
        return model, (torch.tensor([[2, 3, 4], [5, 6, 0]]), torch.tensor([3, 2]))
    model = Captioner(CaptionerConfig(vocab_size=V, cnn_width=4, cnn_blocks=1, embed_size=4,
                                      hidden_size=8, num_layers=2))
    return model, (torch.rand(2, 1, 16, 16),)


@pytest.mark.parametrize(("kind", "carries"), [("rnn", True), ("gpt", False)])
def test_language_models_keep_the_language_model_protocol(kind, carries):
    model = tiny_lm(kind)
    assert isinstance(model, LanguageModel) and not isinstance(model, ConditionalDecoder)
    assert "carries_state" in vars(type(model))  # declared by the class, not inherited or probed
    assert model.carries_state is carries
    assert isinstance(model.stepper(), Step)


def test_only_the_transformer_stepper_reads_a_prompt_in_one_pass():
    assert isinstance(tiny_lm("gpt").stepper(), PrefillStep)
    assert not isinstance(tiny_lm("rnn").stepper(), PrefillStep)


@pytest.mark.parametrize("kind", ["seq2seq", "caption"])
def test_conditional_decoders_keep_the_decoder_protocol(kind):
    model, inputs = tiny_decoder(kind)
    assert isinstance(model, ConditionalDecoder) and not isinstance(model, LanguageModel)
    assert not hasattr(model, "reorder")  # one name for beam search's state reordering
    assert isinstance(model.stepper(), Step)


@pytest.mark.parametrize("kind", ["seq2seq", "caption"])
def test_decoder_stepper_equals_its_step_after_a_reorder(kind):
    model, inputs = tiny_decoder(kind)
    model.eval()
    tokens = torch.tensor([[1, 1, 1], [3, 4, 5], [6, 2, 2]])  # (T, N): step t feeds row t
    with torch.no_grad():
        # three rows: example 1, then example 0 twice
        state = model.reorder_state(model.encode(*inputs), torch.tensor([1, 0, 0]))
        slow, fast, step = state, state, model.stepper()
        for t in range(tokens.shape[0]):
            want, slow = model.step(tokens[t], slow)
            got, fast = step(tokens[t], fast)
            assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length", [1, 6, 8, 9, 13])
def test_gpt_prefill_equals_stepping_token_by_token(length):
    model = tiny_lm("gpt").eval()  # block_size 8: the longer prompts overflow the cache
    tokens = torch.randint(0, V, (2, length))
    step, state = model.stepper(), None
    for token in tokens.unbind(dim=1):
        logits, state = step(token, state)
    prefilled, filled = step.prefill(tokens)
    assert_close(prefilled, logits, atol=1e-5, rtol=0)
    assert filled.history.equal(state.history)
    for a, b in zip(filled.keys + filled.values, state.keys + state.values, strict=True):
        assert_close(a, b, atol=1e-5, rtol=0)
