"""GPT: the cached stepper against forward, causality, the cache overflow rule, beam
reordering, precisions, gradients and a small learning run."""

import pytest
import torch
from torch.testing import assert_close

from rnnkit.decoding import read_prompt
from rnnkit.models.gpt import GPT, GPTConfig

V = 11


def make_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    settings = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16) | overrides
    return GPT(GPTConfig(**settings))


def step_all(step, tokens: torch.Tensor, state=None):
    """Feed tokens (B, T) one column at a time -> logits (B, T, V) and the final state."""
    out = []
    for t in range(tokens.shape[1]):
        logits, state = step(tokens[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1), state


def test_stepper_equals_forward_at_every_position():
    # train mode with dropout: the stepper must still run without dropout
    model = make_gpt(dropout=0.3, bias=True).train()
    tokens = torch.randint(0, V, (3, 12))
    stepped, state = step_all(model.stepper(), tokens)
    with torch.no_grad():
        expected = model.eval()(tokens)[0]
    assert_close(stepped, expected, atol=1e-5, rtol=0)
    assert state.history.equal(tokens)
    assert state.keys[0].shape == (3, 2, 12, 8)  # (B, nh, t, hd)


def test_changing_later_tokens_leaves_earlier_logits_unchanged():
    model = make_gpt().eval()
    tokens = torch.randint(0, V, (2, 16))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % V
    with torch.no_grad():
        a, b = model(tokens)[0], model(changed)[0]
    assert_close(a[:, :6], b[:, :6], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


def test_full_cache_restarts_from_the_last_half_block():
    model = make_gpt(block_size=8).eval()
    tokens = torch.randint(0, V, (2, 20))
    step, state, window = model.stepper(), None, 0  # window: how many tokens the cache covers
    for t in range(20):
        if window == 8:  # the rule: keep the last block_size // 2, then add the new token
            window = 4
        window += 1
        logits, state = step(tokens[:, t], state)
        with torch.no_grad():
            expected = model(tokens[:, t + 1 - window:t + 1])[0][:, -1]
        assert_close(logits, expected, atol=1e-5, rtol=0)
        assert state.history.equal(tokens[:, t + 1 - window:t + 1])


@pytest.mark.parametrize("length", [1, 5, 8, 9, 12, 13, 21, 30])
def test_prefill_reaches_the_state_stepping_through_the_prompt_reaches(length):
    """A prompt read in one pass (read_prompt) against token by token, across the cache
    overflows of an 8-position block; then both continue the same."""
    model = make_gpt(block_size=8).eval()
    tokens = torch.randint(0, V, (2, length + 6))
    step = model.stepper()
    stepped, state = step_all(step, tokens[:, :length])
    logits, filled = read_prompt(model, step, tokens[:, :length])
    assert filled.history.equal(state.history)
    assert_close(logits, stepped[:, -1], atol=1e-5, rtol=0)
    for a, b in zip(filled.keys + filled.values, state.keys + state.values, strict=True):
        assert_close(a, b, atol=1e-5, rtol=0)
    assert_close(step_all(step, tokens[:, length:], filled)[0],
                 step_all(step, tokens[:, length:], state)[0], atol=1e-5, rtol=0)


def test_reordered_state_continues_the_reordered_sequences():
    # 14 tokens through an 8-position cache: the overflow after the reorder reads the history
    model = make_gpt(block_size=8).eval()
    tokens = torch.randint(0, V, (3, 14))
    index = torch.tensor([2, 0, 0, 1])  # repeat one row and change the order
    step = model.stepper()
    _, state = step_all(step, tokens[:, :6])
    state = GPT.reorder_state(state, index)
    continued, _ = step_all(step, tokens[index, 6:], state)
    fresh, _ = step_all(step, tokens[index])
    assert_close(continued, fresh[:, 6:], atol=1e-5, rtol=0)


def test_bf16_is_close_to_fp32_and_int8_is_refused():
    model = make_gpt()
    tokens = torch.randint(0, V, (2, 10))
    fp32, _ = step_all(model.stepper("fp32"), tokens)
    bf16, _ = step_all(model.stepper("bf16"), tokens)
    diff = (bf16 - fp32).abs().max()
    assert bf16.dtype == torch.float32
    # bf16 keeps ~3 significant digits: some rounding, but small against the logits' scale
    assert 0 < diff < min(0.1, 0.05 * fp32.abs().max())
    with pytest.raises(ValueError, match="fp32 and bf16"):
        model.stepper("int8")


@pytest.mark.parametrize("tie", [True, False])
def test_gradients_reach_every_parameter_and_tying_shares_storage(tie):
    model = make_gpt(bias=True, tie_weights=tie)
    tokens = torch.randint(0, V, (2, 16))
    logits, state = model(tokens)
    assert state is None and logits.shape == (2, 16, V)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    shared = model.head.weight.data_ptr() == model.wte.weight.data_ptr()
    assert shared == tie


def test_initialisation_follows_gpt2():
    model = make_gpt(n_layer=4, n_embd=64)
    residual = 0.02 / (2 * 4) ** 0.5  # projections into the residual stream
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    for block in model.blocks:
        for proj in (block.attn.proj, block.mlp.proj):
            assert proj.weight.std().item() == pytest.approx(residual, rel=0.1)


def test_learns_a_repeated_string():
    text = "hello world, " * 50
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    model = make_gpt(vocab_size=len(chars), block_size=32, n_embd=32).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        starts = torch.randint(0, len(data) - 33, (16,), generator=g)
        batch = torch.stack([data[s:s + 33] for s in starts.tolist()])  # (16, 33)
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.0
    assert losses[-1] < 0.3


def test_config_and_length_errors():
    with pytest.raises(ValueError, match=r"n_embd \(30\).*n_head \(4\)"):
        GPTConfig(vocab_size=V, n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="n_head must be >= 1"):
        GPTConfig(vocab_size=V, n_head=0)
    model = make_gpt(block_size=8)
    with pytest.raises(ValueError, match="block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    assert model(torch.zeros(1, 8, dtype=torch.long))[0].shape == (1, 8, V)
    assert model.init_state(4) is None and not GPT.carries_state
