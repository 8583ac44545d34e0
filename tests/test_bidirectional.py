"""Variable-length Recurrent (lengths), reverse_padded, Bidirectional and BiRecurrent vs torch."""

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.testing import assert_close

from rnnkit.layers import Bidirectional, BiRecurrent, Recurrent, reverse_padded

KINDS = ["lstm", "gru", "rnn"]
IMPLS = ["fused", "cells"]
TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
STATE_COUNT = {"lstm": 2, "gru": 1, "rnn": 1}
D, H, B, T = 5, 4, 4, 6
LENGTHS = torch.tensor([4, 6, 1, 3])  # unsorted, with a length-1 and a full-length row


def random_state(kind, lead, dtype=torch.float32):
    return tuple(torch.randn(lead, B, H, dtype=dtype) for _ in range(STATE_COUNT[kind]))


def padded_batch(lengths=LENGTHS, fill=0.0, dtype=torch.float32):
    """(B, T, D) random inputs whose steps t >= lengths[b] all hold ``fill``."""
    x = torch.randn(B, T, D, dtype=dtype)
    valid = torch.arange(T) < lengths[:, None]
    return torch.where(valid[..., None], x, torch.tensor(fill, dtype=dtype))


def with_garbage(x, lengths=LENGTHS):
    """x with huge values, inf and nan in the padding (valid steps untouched)."""
    junk = torch.randn_like(x) * 1e6
    junk[..., 0] = float("nan")
    junk[..., 1] = float("inf")
    valid = torch.arange(T) < lengths[:, None]
    return torch.where(valid[..., None], x, junk)


def to_torch_state(kind, state):
    return tuple(state) if kind == "lstm" else state[0]


def from_torch_state(kind, state):
    return tuple(state) if kind == "lstm" else (state,)


# ---------------------------------------------------------------- Recurrent with lengths


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_with_lengths_equals_each_row_run_alone(kind, impl, num_layers):
    torch.manual_seed(0)
    rnn = Recurrent(kind, D, H, num_layers, impl=impl).eval()
    x = padded_batch()
    state = random_state(kind, num_layers)
    out, final = rnn(x, state, LENGTHS)
    assert out.shape == (B, T, H)
    for b, n in enumerate(LENGTHS.tolist()):
        row_out, row_final = rnn(x[b:b + 1, :n], tuple(s[:, b:b + 1] for s in state))
        assert_close(out[b, :n], row_out[0])
        assert torch.equal(out[b, n:], torch.zeros(T - n, H))  # exactly zero, not just small
        for got, want in zip(final, row_final, strict=True):
            assert_close(got[:, b], want[:, 0])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_padding_values_change_nothing_and_get_no_gradient(kind, impl):
    torch.manual_seed(1)
    rnn = Recurrent(kind, D, H, 2, impl=impl)
    clean = padded_batch()
    w_out = torch.randn(B, T, H)

    def run(x, lengths):
        x = x.clone().requires_grad_()
        rnn.zero_grad()
        out, final = rnn(x, None, lengths)
        (out * w_out).sum().add(sum(s.sum() for s in final)).backward()
        return out, final, x.grad, [p.grad.clone() for p in rnn.parameters()]

    out_c, final_c, gx_c, gp_c = run(clean, LENGTHS)
    out_g, final_g, gx_g, gp_g = run(with_garbage(clean), LENGTHS.int())
    assert torch.equal(out_c, out_g)
    for a, b in zip([*final_c, *gp_c, gx_c], [*final_g, *gp_g, gx_g], strict=True):
        assert torch.equal(a, b)
    valid = torch.arange(T) < LENGTHS[:, None]
    assert torch.equal(gx_g[~valid], torch.zeros_like(gx_g[~valid]))  # padding: no gradient
    assert (gx_g[valid].abs().sum(-1) > 0).all()  # every valid step gets one


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_full_lengths_equal_no_lengths(kind, impl):
    torch.manual_seed(2)
    rnn = Recurrent(kind, D, H, 2, impl=impl).eval()
    x = torch.randn(B, T, D)
    state = random_state(kind, 2)
    out, final = rnn(x, state)
    out_l, final_l = rnn(x, state, torch.full((B,), T))
    assert_close(out_l, out)
    for a, b in zip(final_l, final, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_past_lengths_stay_zero_with_dropout_in_training(impl):
    torch.manual_seed(3)
    rnn = Recurrent("lstm", D, H, 3, dropout=0.5, impl=impl).train()
    out, _ = rnn(with_garbage(padded_batch()), None, LENGTHS)
    valid = torch.arange(T) < LENGTHS[:, None]
    assert torch.equal(out[~valid], torch.zeros_like(out[~valid]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_fused_and_cells_paths_agree_with_lengths(kind):
    torch.manual_seed(4)
    fused = Recurrent(kind, D, H, 2, impl="fused")
    cells = Recurrent(kind, D, H, 2, impl="cells")
    cells.load_state_dict(fused.state_dict())
    x = padded_batch()
    state = random_state(kind, 2)
    grads = []
    for rnn in (fused, cells):
        xi = x.clone().requires_grad_()
        out, final = rnn(xi, state, LENGTHS)
        (out.square().sum() + sum(s.sum() for s in final)).backward()
        grads.append((out, *final, xi.grad, *(p.grad for p in rnn.parameters())))
    for a, b in zip(*grads, strict=True):
        assert_close(a, b)


# ---------------------------------------------------------------- reverse_padded


def test_reverse_padded_reverses_within_each_length_and_keeps_padding_in_place():
    x = torch.arange(5.0).repeat(2, 1)[..., None]  # (2, 5, 1): 0 1 2 3 4 per row
    got = reverse_padded(x, torch.tensor([3, 5]))[..., 0]
    assert torch.equal(got, torch.tensor([[2.0, 1, 0, 3, 4], [4.0, 3, 2, 1, 0]]))


def test_reverse_padded_is_its_own_inverse_and_a_flip_without_lengths():
    torch.manual_seed(5)
    x = torch.randn(B, T, 2, 3)
    assert torch.equal(reverse_padded(reverse_padded(x, LENGTHS), LENGTHS), x)
    assert torch.equal(reverse_padded(x, None), x.flip(1))
    assert torch.equal(reverse_padded(x, torch.full((B,), T)), x.flip(1))


# ---------------------------------------------------------------- Bidirectional


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_concat_and_sum_are_the_two_directions(kind, impl):
    torch.manual_seed(6)
    cat = Bidirectional(Recurrent(kind, D, H, 2, impl=impl), "concat")
    add = Bidirectional(Recurrent(kind, D, H, 2, impl=impl), "sum")
    add.load_state_dict(cat.state_dict())
    assert (cat.output_size, add.output_size) == (2 * H, H)
    x, state = with_garbage(padded_batch()), random_state(kind, 4)  # (2L, B, H)
    out_cat, final = cat(x, state, LENGTHS)
    out_add, final_add = add(x, state, LENGTHS)
    fwd, final_f = cat.forward_layer(x, tuple(s[:2] for s in state), LENGTHS)
    bwd, final_b = cat.backward_layer(reverse_padded(x, LENGTHS), tuple(s[2:] for s in state),
                                      LENGTHS)
    assert_close(out_cat, torch.cat([fwd, reverse_padded(bwd, LENGTHS)], dim=-1))
    assert_close(out_add, out_cat[..., :H] + out_cat[..., H:])
    for got, got_add, f, b in zip(final, final_add, final_f, final_b, strict=True):
        assert got.shape == (4, B, H)
        assert_close(got, torch.cat([f, b]))
        assert_close(got_add, got)


def test_backward_layer_is_a_fresh_copy():
    torch.manual_seed(7)
    layer = Recurrent("lstm", D, H)
    bi = Bidirectional(layer)
    assert bi.forward_layer is layer
    for (name, p), q in zip(layer.named_parameters(), bi.backward_layer.parameters()):
        assert p.shape == q.shape and not torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr()


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_output_at_step_zero_sees_last_valid_step_not_padding(impl):
    torch.manual_seed(8)
    bi = Bidirectional(Recurrent("gru", D, H, impl=impl))
    x = padded_batch().requires_grad_()
    out, _ = bi(x, None, LENGTHS)
    out[:, 0, H:].sum().backward()  # backward direction at step 0 of every row
    for b, n in enumerate(LENGTHS.tolist()):
        assert x.grad[b, n - 1].abs().sum() > 0
        assert torch.equal(x.grad[b, n:], torch.zeros(T - n, D))
    out_garbage, _ = bi(with_garbage(x.detach()), None, LENGTHS)
    assert torch.equal(out_garbage, out)


# ---------------------------------------------------------------- BiRecurrent vs torch


def torch_reference(kind, ref, x, state, lengths):
    """nn.LSTM/GRU/RNN on a (maybe packed) batch -> padded (B, T, 2H) outputs, state tuple."""
    hx = None if state is None else to_torch_state(kind, state)
    if lengths is None:
        out, final = ref(x, hx)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = ref(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    return out, from_torch_state(kind, final)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_birecurrent_matches_torch_bidirectional(kind, num_layers, impl, with_state, padded):
    torch.manual_seed(9)
    ref = TORCH_LAYERS[kind](D, H, num_layers, batch_first=True, bidirectional=True).eval()
    ours = BiRecurrent(kind, D, H, num_layers, impl=impl).eval()
    assert ours.torch_state_dict().keys() == ref.state_dict().keys()
    ours.load_torch_state_dict(ref.state_dict())
    lengths = LENGTHS if padded else None
    x = padded_batch() if padded else torch.randn(B, T, D)
    state = random_state(kind, 2 * num_layers) if with_state else None
    out, final = ours(x, state, lengths)
    ref_out, ref_final = torch_reference(kind, ref, x, state, lengths)
    assert out.shape == (B, T, 2 * H) and ours.output_size == 2 * H
    assert_close(out, ref_out)  # torch pads with zeros as well
    assert len(final) == ours.state_count == STATE_COUNT[kind]
    for got, want in zip(final, ref_final, strict=True):
        assert got.shape == (2 * num_layers, B, H)
        assert_close(got, want)


@pytest.mark.parametrize("bias", [True, False])
def test_birecurrent_torch_state_dict_loads_strictly_into_torch(bias):
    torch.manual_seed(10)
    ours = BiRecurrent("lstm", D, H, 2, bias=bias).eval()
    ref = nn.LSTM(D, H, 2, bias=bias, batch_first=True, bidirectional=True).eval()
    ref.load_state_dict(ours.torch_state_dict())  # strict: names and shapes must match
    x = torch.randn(B, T, D)
    out, final = ours(x)
    ref_out, ref_final = ref(x)
    assert_close(out, ref_out)
    for got, want in zip(final, ref_final, strict=True):
        assert_close(got, want)


def test_birecurrent_init_state_and_dropout_between_layers_only():
    torch.manual_seed(11)
    rnn = BiRecurrent("gru", D, H, 2, dropout=0.5)
    (h,) = rnn.init_state(B, torch.empty(0, dtype=torch.float64))
    assert h.shape == (4, B, H) and h.dtype == torch.float64 and not h.any()
    x = padded_batch()
    eval_out, _ = rnn.eval()(x, None, LENGTHS)
    assert torch.equal(rnn(x, None, LENGTHS)[0], eval_out)  # eval: deterministic
    train_out, _ = rnn.train()(x, None, LENGTHS)
    assert not torch.allclose(train_out, eval_out)
    valid = torch.arange(T) < LENGTHS[:, None]
    assert torch.equal(train_out[~valid], torch.zeros_like(train_out[~valid]))
    single = BiRecurrent("gru", D, H, 1, dropout=0.5)  # nothing after the last layer
    assert torch.equal(single.train()(x)[0], single.eval()(x)[0])


# ---------------------------------------------------------------- bad arguments


def test_bad_merge_raises_value_error():
    with pytest.raises(ValueError, match="merge"):
        Bidirectional(Recurrent("lstm", D, H), merge="mean")


BAD_LENGTHS = {
    "too-long": (torch.tensor([4, 7, 1, 3]), r"\[1, 6\]"),
    "zero": (torch.tensor([4, 0, 1, 3]), r"\[1, 6\]"),
    "negative": (torch.tensor([4, -2, 1, 3]), r"\[1, 6\]"),
    "wrong-batch": (torch.tensor([4, 6, 1]), "shape"),
    "two-dims": (torch.tensor([[4, 6, 1, 3]]), "shape"),
    "float": (torch.tensor([4.0, 6, 1, 3]), "integer"),
}


@pytest.mark.parametrize("case", BAD_LENGTHS)
@pytest.mark.parametrize("make", [
    lambda: Recurrent("lstm", D, H, impl="fused"),
    lambda: Recurrent("lstm", D, H, impl="cells"),
    lambda: Bidirectional(Recurrent("gru", D, H)),
    lambda: BiRecurrent("rnn", D, H, 2),
], ids=["fused", "cells", "bidirectional", "birecurrent"])
def test_bad_lengths_raise_value_error(make, case):
    lengths, match = BAD_LENGTHS[case]
    with pytest.raises(ValueError, match=match):
        make()(torch.randn(B, T, D), None, lengths)


def test_birecurrent_state_of_wrong_layout_raises_value_error():
    rnn = BiRecurrent("lstm", D, H, 2)
    with pytest.raises(ValueError, match=r"\(4, 4, 4\)"):
        rnn(torch.randn(B, T, D), random_state("lstm", 2))  # (L, B, H) instead of (2L, B, H)


# ---------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("kind", KINDS)
def test_birecurrent_with_lengths_passes_gradcheck(kind):
    torch.manual_seed(12)
    rnn = BiRecurrent(kind, 2, 2, num_layers=2, impl="cells").double()
    names = [n for n, _ in rnn.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    lengths = torch.tensor([3, 2])
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    state = [torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
             for _ in range(STATE_COUNT[kind])]
    n_state = len(state)

    def f(x, *rest):
        args = (x, tuple(rest[:n_state]), lengths)
        y, final = functional_call(rnn, dict(zip(names, rest[n_state:])), args)
        return (y, *final)

    assert torch.autograd.gradcheck(f, (x, *state, *params))
