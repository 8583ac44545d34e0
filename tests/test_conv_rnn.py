"""ConvLSTMCell, ConvGRUCell, ConvRecurrent, Bidirectional over conv layers, TimeDistributed.

References: with 1x1 kernels a conv cell is an ordinary cell applied at every pixel, so our
LSTMCell/GRUCell, torch's nn.LSTMCell/nn.GRUCell and Recurrent pin the arithmetic; the
peephole terms are checked against Shi et al. (2015)'s equations written out by hand.
"""

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from rnnkit.layers import (
    Bidirectional,
    ConvGRUCell,
    ConvLSTMCell,
    ConvRecurrent,
    GRUCell,
    LSTMCell,
    Recurrent,
    SmallCNN,
    TimeDistributed,
    reverse_padded,
)

CONV_CELLS = {"lstm": ConvLSTMCell, "gru": ConvGRUCell}
CELLS = {"lstm": LSTMCell, "gru": GRUCell}
TORCH_CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}
STATE_COUNT = {"lstm": 2, "gru": 1}
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
B, T, C, HC = 3, 4, 2, 3
LENGTHS = torch.tensor([2, 4, 1])  # unsorted, with a length-1 and a full-length row


def copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """Copy the four torch-named parameters, reshaping between (G*H, D) and (G*H, D, 1, ..)."""
    with torch.no_grad():
        for name in PARAMS:
            getattr(dst, name).copy_(getattr(src, name).reshape(getattr(dst, name).shape))


def random_state(kind, *lead, frame=(5, 4)):
    return tuple(torch.randn(*lead, HC, *frame) for _ in range(STATE_COUNT[kind]))


def padded_frames(frame=(5, 4), lengths=LENGTHS, garbage=False):
    """(B, T, C, *frame) random frames; the padding holds zeros, or inf/nan/huge garbage."""
    x = torch.randn(B, T, C, *frame)
    fill = torch.randn_like(x) * 1e6 if garbage else torch.zeros_like(x)
    if garbage:
        fill[:, :, 0] = float("nan")
        fill[:, :, 1] = float("inf")
    valid = torch.arange(T) < lengths[:, None]
    return torch.where(valid.view(B, T, *(1,) * (x.dim() - 2)), x, fill)


def pixels(t):
    """(B, Ch, *frame) -> (B * pixels, Ch): every pixel becomes its own batch row."""
    return t.movedim(1, -1).reshape(-1, t.shape[1])


# ---------------------------------------------------------------- cells: parity with LSTM/GRU


@pytest.mark.parametrize("frame", [(1, 1), (3, 2)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_1x1_conv_cell_equals_our_cell_and_torch_cell_at_every_pixel(kind, frame):
    torch.manual_seed(0)
    ours, ref = CELLS[kind](C, HC), TORCH_CELLS[kind](C, HC)
    conv = CONV_CELLS[kind](C, HC, kernel_size=1)
    copy_weights(ours, ref)
    copy_weights(conv, ref)
    x, state = torch.randn(B, C, *frame), random_state(kind, B, frame=frame)
    y, new_state = conv(x, state)
    flat_state = tuple(pixels(s) for s in state)
    y_ours, state_ours = ours(pixels(x), flat_state)
    y_ref = ref(pixels(x), flat_state if kind == "lstm" else flat_state[0])
    state_ref = y_ref if kind == "lstm" else (y_ref,)
    assert y.shape == (B, HC, *frame)
    assert_close(pixels(y), y_ours)
    assert_close(pixels(y), state_ref[0])
    for got, a, b in zip(new_state, state_ours, state_ref, strict=True):
        assert_close(pixels(got), a)
        assert_close(pixels(got), b)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_1x1_conv_cell_parity_in_every_dims(kind, dims):
    torch.manual_seed(1)
    ref = TORCH_CELLS[kind](C, HC)
    conv = CONV_CELLS[kind](C, HC, kernel_size=1, dims=dims)
    copy_weights(conv, ref)
    x = torch.randn(B, C, *(1,) * dims)
    y, _ = conv(x)  # None state = zeros
    want = ref(pixels(x))
    assert_close(pixels(y), want[0] if kind == "lstm" else want)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_1x1_conv_recurrent_on_1x1_frames_equals_recurrent_with_lengths(kind):
    torch.manual_seed(2)
    ref = Recurrent(kind, C, HC, num_layers=2)  # auto = torch's packed kernels with lengths
    conv = ConvRecurrent(kind, C, HC, num_layers=2, kernel_size=1)
    for conv_cell, cell in zip(conv.cells, ref.cells, strict=True):
        copy_weights(conv_cell, cell)
    x = padded_frames(frame=(1, 1))
    state = random_state(kind, 2, B, frame=(1, 1))
    out, final = conv(x, state, LENGTHS)
    want, want_final = ref(x.flatten(2), tuple(s.flatten(2) for s in state), LENGTHS)
    assert out.shape == (B, T, HC, 1, 1)
    assert_close(out.flatten(2), want)
    for got, w in zip(final, want_final, strict=True):
        assert_close(got.flatten(2), w)


# ---------------------------------------------------------------- padding and shapes


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("frame", [(7,), (6, 5), (4, 3, 5)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_same_padding_keeps_the_frame_size(kind, frame, kernel_size):
    cell = CONV_CELLS[kind](C, HC, kernel_size, dims=len(frame))
    y, state = cell(torch.randn(2, C, *frame))
    assert y.shape == (2, HC, *frame)
    assert all(s.shape == (2, HC, *frame) for s in state)


def test_per_dim_kernel_sizes_keep_the_frame_size():
    cell = ConvLSTMCell(C, HC, kernel_size=(1, 5), dims=2)
    assert cell.weight_hh.shape == (4 * HC, HC, 1, 5)
    assert cell(torch.randn(2, C, 6, 5))[0].shape == (2, HC, 6, 5)


def test_same_padding_sees_neighbours_but_not_wraparound():
    # a 3x3 kernel: one pixel's input moves its 3x3 neighbourhood only (zero padding, no
    # wrap-around to the far edge), while a 1x1 kernel moves that pixel only
    torch.manual_seed(3)
    for k, reach in ((1, 0), (3, 1)):
        cell = ConvGRUCell(C, HC, kernel_size=k)
        x = torch.randn(1, C, 6, 6)
        bumped = x.clone()
        bumped[0, :, 0, 0] += 1.0
        changed = (cell(bumped)[0] - cell(x)[0]).abs().sum(1)[0] > 0
        want = torch.zeros(6, 6, dtype=torch.bool)
        want[:reach + 1, :reach + 1] = True
        assert torch.equal(changed, want)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_state_keeps_the_frame_size_over_time_and_carries_over(kind):
    torch.manual_seed(4)
    rnn = ConvRecurrent(kind, C, HC, num_layers=2)
    x = torch.randn(B, 2 * T, C, 5, 4)
    out, state = rnn(x)
    assert out.shape == (B, 2 * T, HC, 5, 4)
    assert len(state) == STATE_COUNT[kind] == rnn.state_count
    assert all(s.shape == (2, B, HC, 5, 4) for s in state)
    # two halves with the state handed over equal one pass over the whole sequence
    first, mid = rnn(x[:, :T])
    second, end = rnn(x[:, T:], mid)
    assert_close(torch.cat([first, second], dim=1), out)
    for a, b in zip(end, state, strict=True):
        assert_close(a, b)


def test_conv_cells_share_the_cells_state_names_and_forget_gate():
    from rnnkit.layers.cells import init_forget_bias
    lstm, gru = ConvLSTMCell(C, HC), ConvGRUCell(C, HC)
    assert (lstm.state_names, gru.state_names) == (LSTMCell.state_names, GRUCell.state_names)
    init_forget_bias(lstm, 1.0)  # gate order i, f, g, o: the forget gate is rows Hc:2Hc
    assert torch.all(lstm.bias_ih[HC:2 * HC] == 1) and torch.all(lstm.bias_hh[HC:2 * HC] == 0)
    assert gru.forget_gate is None


# ---------------------------------------------------------------- peepholes


def test_peephole_shapes_channel_and_full():
    assert ConvLSTMCell(C, HC, peephole="channel").weight_ci.shape == (HC, 1, 1)
    assert ConvLSTMCell(C, HC, dims=3, peephole="channel").weight_cf.shape == (HC, 1, 1, 1)
    full = ConvLSTMCell(C, HC, peephole=(5, 4))
    assert {n for n, _ in full.named_parameters()} >= {"weight_ci", "weight_cf", "weight_co"}
    assert full.weight_co.shape == (HC, 5, 4)
    assert ConvLSTMCell(C, HC, dims=1, peephole=(7,)).weight_ci.shape == (HC, 7)
    assert ConvLSTMCell(C, HC).weight_ci is None  # off by default


def test_full_peephole_rejects_another_frame_size():
    cell = ConvLSTMCell(C, HC, peephole=(5, 4))
    with pytest.raises(ValueError, match="frame"):
        cell(torch.randn(1, C, 1, 1))  # would broadcast silently without the check


@pytest.mark.parametrize("peephole", ["channel", (5, 4)])
def test_zero_initialised_peephole_equals_no_peephole(peephole):
    torch.manual_seed(5)
    peep = ConvRecurrent("lstm", C, HC, 2, peephole=peephole)
    plain = ConvRecurrent("lstm", C, HC, 2)
    assert all(torch.equal(p, torch.zeros_like(p))
               for n, p in peep.named_parameters() if "weight_c" in n)
    missing, unexpected = plain.load_state_dict(peep.state_dict(), strict=False)[:2]
    assert not missing and len(unexpected) == 2 * 3  # three peepholes per layer
    x, state = torch.randn(B, T, C, 5, 4), random_state("lstm", 2, B)
    assert_close(peep(x, state)[0], plain(x, state)[0])
    with torch.no_grad():
        peep.cells[0].weight_co.fill_(0.5)
    assert not torch.allclose(peep(x, state)[0], plain(x, state)[0])


@pytest.mark.parametrize("name", ["weight_ci", "weight_cf", "weight_co"])
def test_each_nonzero_peephole_changes_the_output(name):
    torch.manual_seed(6)
    cell = ConvLSTMCell(C, HC, peephole=(5, 4))
    x, state = torch.randn(B, C, 5, 4), random_state("lstm", B)
    before = cell(x, state)[0]
    with torch.no_grad():
        getattr(cell, name).normal_()
    assert not torch.allclose(cell(x, state)[0], before)


def paper_step(cell, x, h, c, o_sees_new_cell=True):
    """One ConvLSTM step written out gate by gate from Shi et al. 2015 (eqs. 3)."""
    conv = nn.functional.conv2d
    W_x = cell.weight_ih.chunk(4)
    W_h = cell.weight_hh.chunk(4)
    b = (cell.bias_ih + cell.bias_hh).chunk(4)  # the paper's single bias per gate

    def pre(k):
        return conv(x, W_x[k], b[k], padding=1) + conv(h, W_h[k], padding=1)

    i = torch.sigmoid(pre(0) + cell.weight_ci * c)
    f = torch.sigmoid(pre(1) + cell.weight_cf * c)
    c_new = f * c + i * torch.tanh(pre(2))
    o = torch.sigmoid(pre(3) + cell.weight_co * (c_new if o_sees_new_cell else c))
    return o * torch.tanh(c_new), c_new


def test_peephole_step_matches_the_paper_gate_by_gate():
    # i and f see C_{t-1}, o sees C_t; the wrong variant (o sees C_{t-1}) must be detectably
    # different, or this test would not discriminate
    torch.manual_seed(7)
    cell = ConvLSTMCell(C, HC, peephole=(5, 4)).double()
    with torch.no_grad():
        for name in ("weight_ci", "weight_cf", "weight_co"):
            getattr(cell, name).normal_()
    x = torch.randn(B, C, 5, 4, dtype=torch.float64)
    h, c = (2 * torch.randn(B, HC, 5, 4, dtype=torch.float64) for _ in range(2))
    y, (h1, c1) = cell(x, (h, c))
    want_h, want_c = paper_step(cell, x, h, c)
    assert_close(y, want_h)
    assert_close(h1, want_h)
    assert_close(c1, want_c)
    wrong_h, _ = paper_step(cell, x, h, c, o_sees_new_cell=False)
    assert (wrong_h - want_h).abs().max() > 1e-3


def test_channel_peephole_equals_full_peephole_with_the_weights_spread_over_space():
    torch.manual_seed(8)
    channel = ConvLSTMCell(C, HC, peephole="channel")
    full = ConvLSTMCell(C, HC, peephole=(5, 4))
    with torch.no_grad():
        for name in ("weight_ci", "weight_cf", "weight_co"):
            getattr(channel, name).normal_()
        full.load_state_dict({k: v.expand(HC, 5, 4) if k.startswith("weight_c") else v
                              for k, v in channel.state_dict().items()})
    x, state = torch.randn(B, C, 5, 4), random_state("lstm", B)
    assert_close(channel(x, state)[0], full(x, state)[0])


@pytest.mark.parametrize("peephole", ["channel", (5, 4)])
def test_gradients_reach_the_peephole_weights(peephole):
    torch.manual_seed(9)
    rnn = ConvRecurrent("lstm", C, HC, 2, peephole=peephole)  # zero peepholes at init
    out, _ = rnn(torch.randn(B, T, C, 5, 4))  # zero initial state: c is nonzero from step 2
    out.square().sum().backward()
    for name, p in rnn.named_parameters():
        if "weight_c" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            assert torch.isfinite(p.grad).all()


# ---------------------------------------------------------------- ConvRecurrent: loop and stack


def manual_loop(rnn, x, state):
    """Run the cells by hand: time inside, layers outside, no masks."""
    finals = []
    for k, cell in enumerate(rnn.cells):
        s, ys = tuple(t[k] for t in state), []
        for t in range(x.shape[1]):
            y, s = cell(x[:, t], s)
            ys.append(y)
        x = torch.stack(ys, dim=1)
        finals.append(s)
    return x, tuple(torch.stack(s) for s in zip(*finals))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_conv_recurrent_equals_a_manual_loop_over_its_cells(kind, dims):
    torch.manual_seed(10)
    frame = (5, 4, 3)[:dims]
    rnn = ConvRecurrent(kind, C, HC, num_layers=2, dims=dims)
    x, state = torch.randn(B, T, C, *frame), random_state(kind, 2, B, frame=frame)
    out, final = rnn(x, state)
    want, want_final = manual_loop(rnn, x, state)
    assert_close(out, want)
    for got, w in zip(final, want_final, strict=True):
        assert_close(got, w)


def test_stacking_feeds_each_layer_the_hidden_states_below():
    torch.manual_seed(11)
    stack = ConvRecurrent("lstm", C, HC, num_layers=2, kernel_size=(3, 5), peephole="channel")
    assert stack.cells[1].in_channels == HC and stack.output_size == stack.hidden_size == HC
    lower = ConvRecurrent("lstm", C, HC, kernel_size=(3, 5), peephole="channel")
    upper = ConvRecurrent("lstm", HC, HC, kernel_size=(3, 5), peephole="channel")
    lower.cells[0].load_state_dict(stack.cells[0].state_dict())
    upper.cells[0].load_state_dict(stack.cells[1].state_dict())
    x = torch.randn(B, T, C, 5, 4)
    mid, (h0, c0) = lower(x)
    out, (h1, c1) = upper(mid)
    got, (h, c) = stack(x)
    assert_close(got, out)
    assert_close(h, torch.cat([h0, h1]))
    assert_close(c, torch.cat([c0, c1]))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_equal_each_row_run_alone_and_padding_is_never_read(kind):
    torch.manual_seed(12)
    rnn = ConvRecurrent(kind, C, HC, num_layers=2)
    x = padded_frames(garbage=True)
    state = random_state(kind, 2, B)
    out, final = rnn(x, state, LENGTHS)
    (out * torch.randn_like(out)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in rnn.parameters())
    for b, n in enumerate(LENGTHS.tolist()):
        row_out, row_final = rnn(x[b:b + 1, :n], tuple(s[:, b:b + 1] for s in state))
        assert_close(out[b, :n], row_out[0])
        assert torch.equal(out[b, n:], torch.zeros_like(out[b, n:]))
        for got, want in zip(final, row_final, strict=True):
            assert_close(got[:, b], want[:, 0])


# ---------------------------------------------------------------- Bidirectional(ConvRecurrent)


def test_bidirectional_conv_concatenates_channels():
    torch.manual_seed(13)
    bi = Bidirectional(ConvRecurrent("lstm", C, HC, num_layers=2))
    assert bi.feature_dim == 2 and bi.output_size == 2 * HC
    x = torch.randn(B, T, C, 5, 4)
    out, (h, c) = bi(x)
    assert out.shape == (B, T, 2 * HC, 5, 4)
    assert h.shape == c.shape == (4, B, HC, 5, 4)
    fwd, _ = bi.forward_layer(x)
    bwd, _ = bi.backward_layer(x.flip(1))
    assert_close(out[:, :, :HC], fwd)
    assert_close(out[:, :, HC:], bwd.flip(1))
    summed, _ = Bidirectional(ConvRecurrent("gru", C, HC), merge="sum")(x)
    assert summed.shape == (B, T, HC, 5, 4)


def test_bidirectional_feature_dim_argument_overrides_the_layer():
    rec = Recurrent("gru", C, HC)
    assert Bidirectional(rec).feature_dim == -1  # unchanged default for flat layers
    # feature_dim=1 joins along time: (B, 2T, H), proving the argument is used
    out, _ = Bidirectional(rec, feature_dim=1)(torch.randn(B, T, C))
    assert out.shape == (B, 2 * T, HC)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_conv_with_lengths_ignores_padding(kind):
    torch.manual_seed(14)
    bi = Bidirectional(ConvRecurrent(kind, C, HC))
    clean = padded_frames()
    out, final = bi(clean, None, LENGTHS)
    dirty = clean.clone()
    dirty[~(torch.arange(T) < LENGTHS[:, None])] = float("nan")  # only the padding changes
    dirty_out, dirty_final = bi(dirty, None, LENGTHS)
    assert_close(dirty_out, out)
    for a, b in zip(dirty_final, final, strict=True):
        assert_close(a, b)
    # the backward direction starts at each row's last valid step, not at the padding
    for b, n in enumerate(LENGTHS.tolist()):
        row = clean[b:b + 1, :n]
        bwd, _ = bi.backward_layer(row.flip(1))
        assert_close(out[b, :n, HC:], bwd[0].flip(0))
        assert torch.equal(out[b, n:], torch.zeros_like(out[b, n:]))


# ---------------------------------------------------------------- TimeDistributed, SmallCNN


def test_time_distributed_equals_the_cnn_frame_by_frame():
    torch.manual_seed(15)
    cnn = SmallCNN(C, channels=(4, 6), out_features=5)
    x = torch.randn(B, T, C, 9, 7)  # odd sizes: ceil-mode pooling
    out = TimeDistributed(cnn)(x)
    assert out.shape == (B, T, cnn.out_features) == (B, T, 5)
    want = torch.stack([cnn(x[:, t]) for t in range(T)], dim=1)
    assert_close(out, want)
    assert SmallCNN(C, channels=(4, 6)).out_features == 6  # no linear layer


def test_time_distributed_with_lengths_zeroes_padding_and_ignores_its_values():
    torch.manual_seed(16)
    td = TimeDistributed(SmallCNN(C, channels=(4,), out_features=3))
    x = padded_frames(frame=(6, 6), garbage=True)
    out = td(x, LENGTHS)
    (out * torch.randn_like(out)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in td.parameters())
    for b, n in enumerate(LENGTHS.tolist()):
        assert_close(out[b, :n], td.module(x[b, :n]))
        assert torch.equal(out[b, n:], torch.zeros_like(out[b, n:]))


def test_time_distributed_cnn_feeds_a_recurrent_layer():
    td = TimeDistributed(SmallCNN(C, channels=(4,)))
    rnn = Recurrent("gru", td.module.out_features, HC)
    out, _ = rnn(td(torch.randn(B, T, C, 8, 8)), None, LENGTHS)
    assert out.shape == (B, T, HC)


# ---------------------------------------------------------------- gradcheck and validation


def test_gradcheck_conv_lstm_with_full_peephole_float64():
    torch.manual_seed(17)
    cell = ConvLSTMCell(1, 2, peephole=(3, 3)).double()
    with torch.no_grad():
        for name in ("weight_ci", "weight_cf", "weight_co"):
            getattr(cell, name).normal_()
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x, h, c = (torch.randn(1, n, 3, 3, dtype=torch.float64, requires_grad=True)
               for n in (1, 2, 2))

    def step(x, h, c, *ps):
        y, (h1, c1) = functional_call(cell, dict(zip(names, ps)), (x, (h, c)))
        return y, c1

    assert torch.autograd.gradcheck(step, (x, h, c, *params))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradcheck_conv_recurrent_with_lengths_float64(kind):
    torch.manual_seed(18)
    rnn = ConvRecurrent(kind, 1, 2, num_layers=2, dims=1).double()
    x = torch.randn(2, 3, 1, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)
                  for _ in range(STATE_COUNT[kind]))
    lengths = torch.tensor([3, 1])

    def run(x, *state):
        out, final = rnn(x, state, lengths)
        return out, *final

    assert torch.autograd.gradcheck(run, (x, *state))


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 2}, {"kernel_size": 0}, {"kernel_size": -3}, {"kernel_size": (3, 3, 3)},
    {"kernel_size": (3, 4)}, {"kernel_size": 3.0}, {"dims": 0}, {"dims": 4},
])
@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell, ConvRecurrent])
def test_bad_kernel_size_or_dims_raise_value_error(cls, kwargs):
    args = ("lstm", C, HC) if cls is ConvRecurrent else (C, HC)
    with pytest.raises(ValueError):
        cls(*args, **kwargs)


@pytest.mark.parametrize("peephole", ["pixel", (5,), (5, 0), 5])
def test_bad_peephole_raises_value_error(peephole):
    with pytest.raises(ValueError, match="peephole"):
        ConvLSTMCell(C, HC, peephole=peephole)


def test_peephole_on_a_gru_raises_value_error():
    with pytest.raises(ValueError, match="LSTM"):
        ConvRecurrent("gru", C, HC, peephole="channel")


@pytest.mark.parametrize("bad", [
    lambda s: s[:1],  # one tensor for an LSTM
    lambda s: tuple(t[:, :, :, :3] for t in s),  # another frame size
    lambda s: tuple(t[:1] for t in s),  # one layer for two
])
def test_bad_state_raises_value_error(bad):
    rnn = ConvRecurrent("lstm", C, HC, num_layers=2)
    with pytest.raises(ValueError, match="state"):
        rnn(torch.randn(B, T, C, 5, 4), bad(random_state("lstm", 2, B)))


@pytest.mark.parametrize("shape", [(B, T, C + 1, 5, 4), (B, T, C, 5), (B, C, 5, 4)])
def test_bad_input_shape_raises_value_error(shape):
    with pytest.raises(ValueError, match="x must be"):
        ConvRecurrent("gru", C, HC)(torch.randn(shape))


def test_reverse_padded_works_on_frames():
    x = torch.randn(B, T, C, 2, 2)
    assert torch.equal(reverse_padded(reverse_padded(x, LENGTHS), LENGTHS), x)
