"""Cells and Recurrent against torch's own modules, fused vs cells paths, gradients, state carry."""

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from rnnkit.layers import CELLS, LSTMCell, Recurrent, detach_state
from rnnkit.layers.cells import init_forget_bias

KINDS = ["lstm", "gru", "rnn"]
TORCH_CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}
TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
STATE_COUNT = {"lstm": 2, "gru": 1, "rnn": 1}
D, H, B, T = 5, 7, 3, 6


def random_state(kind, *lead, dtype=torch.float32, requires_grad=False):
    """A random state tuple: (h,) or (h, c), each of shape (*lead, H)."""
    return tuple(torch.randn(*lead, H, dtype=dtype, requires_grad=requires_grad)
                 for _ in range(STATE_COUNT[kind]))


def to_torch_state(kind, state):
    """Our state tuple -> what nn.LSTM/GRU/RNN(Cell) takes: (h, c) for LSTM, h otherwise."""
    return tuple(state) if kind == "lstm" else state[0]


def from_torch_state(kind, state):
    return tuple(state) if kind == "lstm" else (state,)


def make_recurrent_pair(kind, num_layers, seed=0, dropout=0.0):
    """A fused and a cells Recurrent with the same weights."""
    torch.manual_seed(seed)
    fused = Recurrent(kind, D, H, num_layers, dropout=dropout, impl="fused")
    cells = Recurrent(kind, D, H, num_layers, dropout=dropout, impl="cells")
    cells.load_state_dict(fused.state_dict())
    assert fused.fused and not cells.fused
    return fused, cells


# ---------------------------------------------------------------- cells vs torch cells


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_matches_torch_cell(kind, bias):
    torch.manual_seed(0)
    ours = CELLS[kind](D, H, bias=bias)
    ref = TORCH_CELLS[kind](D, H, bias=bias)
    # same parameter names and shapes: strict loading fails otherwise
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(ours.state_dict())
    for _ in range(4):
        x = 2 * torch.randn(B, D)
        state = random_state(kind, B)
        y, new_state = ours(x, state)
        expected = from_torch_state(kind, ref(x, to_torch_state(kind, state)))
        assert len(new_state) == STATE_COUNT[kind]
        for got, want in zip(new_state, expected):
            assert_close(got, want)
        assert_close(y, expected[0])  # the output is h


@pytest.mark.parametrize("kind", KINDS)
def test_cell_without_state_starts_from_zeros_like_torch(kind):
    torch.manual_seed(1)
    ours = CELLS[kind](D, H)
    ref = TORCH_CELLS[kind](D, H)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(B, D)
    _, state = ours(x)
    for got, want in zip(state, from_torch_state(kind, ref(x))):
        assert_close(got, want)


@pytest.mark.parametrize("kind", list(CELLS))
def test_every_registered_cell_names_its_state_tensors(kind):
    cell = CELLS[kind](D, H)
    _, state = cell(torch.randn(B, D))
    assert len(state) == cell.state_count == len(cell.state_names)
    assert len(set(cell.state_names)) == cell.state_count
    assert cell.state_names[0].startswith("h")  # "h", or the LRU's real part "h_re"


def test_forget_bias_reaches_every_cell_with_a_forget_gate_and_no_other():
    cells = nn.ModuleList([CELLS["lstm"](D, H), CELLS["gru"](D, H), CELLS["lstm"](D, H)])
    gru_bias = cells[1].bias_ih.clone()
    init_forget_bias(cells, 1.0)
    for lstm in (cells[0], cells[2]):  # gate order i, f, g, o: the forget gate is rows H:2H
        assert torch.all(lstm.bias_ih[H:2 * H] == 1) and torch.all(lstm.bias_hh[H:2 * H] == 0)
        assert not torch.all(lstm.bias_ih[:H] == 1)
    assert torch.equal(cells[1].bias_ih, gru_bias)


# ---------------------------------------------------------------- Recurrent vs nn.LSTM/GRU/RNN


@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_matches_torch_layer(kind, num_layers, impl, with_state):
    torch.manual_seed(2)
    ref = TORCH_LAYERS[kind](D, H, num_layers, batch_first=True)
    ours = Recurrent(kind, D, H, num_layers, impl=impl)
    ours.load_torch_state_dict(ref.state_dict())
    ref.eval()
    ours.eval()
    x = torch.randn(B, T, D)
    state = random_state(kind, num_layers, B) if with_state else None
    out, new_state = ours(x, state)
    if with_state:
        ref_out, ref_state = ref(x, to_torch_state(kind, state))
    else:
        ref_out, ref_state = ref(x)
    assert out.shape == (B, T, H)
    assert_close(out, ref_out)
    ref_state = from_torch_state(kind, ref_state)
    assert len(new_state) == len(ref_state) == STATE_COUNT[kind]
    for got, want in zip(new_state, ref_state):
        assert got.shape == (num_layers, B, H)
        assert_close(got, want)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize("kind", KINDS)
def test_torch_state_dict_loads_strictly_into_torch_layer(kind, impl, bias):
    torch.manual_seed(3)
    ours = Recurrent(kind, D, H, 2, bias=bias, impl=impl)
    ref = TORCH_LAYERS[kind](D, H, 2, bias=bias, batch_first=True)
    sd = ours.torch_state_dict()
    assert sd.keys() == ref.state_dict().keys()
    ref.load_state_dict(sd)  # strict: names and shapes must match
    x = torch.randn(B, T, D)
    out, state = ours(x)
    ref_out, ref_state = ref(x)
    assert_close(out, ref_out)
    for got, want in zip(state, from_torch_state(kind, ref_state)):
        assert_close(got, want)


def test_load_torch_state_dict_copies_values_not_references():
    torch.manual_seed(4)
    ref = nn.LSTM(D, H, 2, batch_first=True)
    ours = Recurrent("lstm", D, H, 2)
    ours.load_torch_state_dict(ref.state_dict())
    for name, p in ours.torch_state_dict().items():
        assert_close(p, ref.state_dict()[name])
    with torch.no_grad():
        ref.weight_ih_l1.add_(1.0)
    assert not torch.equal(ours.cells[1].weight_ih, ref.weight_ih_l1)


# ---------------------------------------------------------------- fused path vs cells path


@pytest.mark.parametrize("mode,dropout", [("eval", 0.5), ("train", 0.0)])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_and_cells_paths_agree_with_gradients(kind, num_layers, mode, dropout):
    # in eval mode dropout must be off on both paths, so a non-zero rate must not matter
    fused, cells = make_recurrent_pair(kind, num_layers, seed=5, dropout=dropout)
    fused.train(mode == "train")
    cells.train(mode == "train")
    x = torch.randn(B, T, D)
    state = random_state(kind, num_layers, B)
    w_out = torch.randn(B, T, H)
    w_state = random_state(kind, num_layers, B)

    def run(rnn):
        xi = x.clone().requires_grad_()
        si = tuple(s.clone().requires_grad_() for s in state)
        out, new_state = rnn(xi, si)
        loss = (out * w_out).sum() + sum((s * w).sum() for s, w in zip(new_state, w_state))
        loss.backward()
        grads = {n: p.grad for n, p in rnn.named_parameters()}
        return out, new_state, grads, xi.grad, [s.grad for s in si]

    out_f, state_f, grads_f, gx_f, gs_f = run(fused)
    out_c, state_c, grads_c, gx_c, gs_c = run(cells)
    assert_close(out_f, out_c)
    for a, b in zip(state_f, state_c, strict=True):
        assert_close(a, b)
    assert grads_f.keys() == grads_c.keys()
    for name in grads_f:
        assert grads_f[name] is not None and grads_f[name].abs().sum() > 0, name
        assert_close(grads_f[name], grads_c[name], msg=lambda m, n=name: f"{n}: {m}")
    assert_close(gx_f, gx_c)
    for a, b in zip(gs_f, gs_c, strict=True):
        assert_close(a, b)


def test_auto_impl_uses_fused_kernel_only_for_standard_cells():
    class MyCell(LSTMCell):
        pass

    assert Recurrent("lstm", D, H).fused
    assert not Recurrent(MyCell, D, H).fused
    assert not Recurrent("gru", D, H, impl="cells").fused


# ---------------------------------------------------------------- gradcheck


def gradcheck_module(module, x, state):
    """gradcheck of a module's outputs and new state w.r.t. input, state and every weight."""
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    n_state = len(state)

    def f(x, *rest):
        y, new_state = functional_call(module, dict(zip(names, rest[n_state:])),
                                       (x, tuple(rest[:n_state])))
        return (y, *new_state)

    return torch.autograd.gradcheck(f, (x, *state, *params))


@pytest.mark.parametrize("kind", KINDS)
def test_cell_gradients_pass_gradcheck(kind):
    torch.manual_seed(6)
    cell = CELLS[kind](3, H).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(cell, x, random_state(kind, 2, dtype=torch.float64,
                                                  requires_grad=True))


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_cells_path_passes_gradcheck(kind):
    torch.manual_seed(7)
    rnn = Recurrent(kind, 2, H, num_layers=2, impl="cells").double()
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(rnn, x, random_state(kind, 2, 2, dtype=torch.float64,
                                                 requires_grad=True))


# ---------------------------------------------------------------- state carry and detach


@pytest.mark.parametrize("split", [1, 4])
@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize("kind", KINDS)
def test_running_in_two_halves_with_carried_state_equals_whole_run(kind, impl, split):
    torch.manual_seed(8)
    rnn = Recurrent(kind, D, H, 2, impl=impl).eval()
    x = torch.randn(B, T, D)
    state0 = random_state(kind, 2, B)
    whole, whole_state = rnn(x, state0)
    first, mid_state = rnn(x[:, :split], state0)
    second, end_state = rnn(x[:, split:], mid_state)
    assert_close(torch.cat([first, second], dim=1), whole)
    for got, want in zip(end_state, whole_state, strict=True):
        assert_close(got, want)
    # the carried state matters: restarting the second half from zeros gives something else
    restarted, _ = rnn(x[:, split:])
    assert not torch.allclose(restarted[:, 0], whole[:, split], atol=1e-3)


def test_detach_state_cuts_the_graph_of_a_tuple_state():
    torch.manual_seed(9)
    rnn = Recurrent("lstm", D, H, 2)
    _, state = rnn(torch.randn(B, T, D))
    assert all(s.grad_fn is not None for s in state)
    detached = detach_state(state)
    assert isinstance(detached, tuple) and len(detached) == 2
    for d, s in zip(detached, state):
        assert d.grad_fn is None and not d.requires_grad
        assert torch.equal(d, s)
    nested = detach_state((state, state[0]))
    assert isinstance(nested[0], tuple) and len(nested[0]) == 2
    assert all(t.grad_fn is None for t in (*nested[0], nested[1]))


# ---------------------------------------------------------------- bad arguments


def test_unknown_impl_raises_value_error():
    with pytest.raises(ValueError, match="bogus"):
        Recurrent("lstm", D, H, impl="bogus")


def test_unknown_cell_name_lists_the_registered_ones():
    names = r"\('rnn', 'gru', 'lstm', 'mingru', 'minlstm', 'lru'\)"
    with pytest.raises(ValueError, match="cell must be one of " + names):
        Recurrent("lstmx", D, H)


def test_fused_impl_for_cell_without_kernel_raises_value_error():
    class MyCell(LSTMCell):
        pass

    with pytest.raises(ValueError, match="MyCell"):
        Recurrent(MyCell, D, H, impl="fused")
