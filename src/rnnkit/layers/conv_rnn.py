"""Convolutional recurrent cells and layers (ConvLSTM, Shi et al. 2015; ConvGRU).

The matrix products of an LSTM/GRU cell become convolutions with same padding, so inputs,
states and gates are images (channels x *spatial) and the state keeps the frame's size.
The cells follow cells.py's protocol, ``y_t, state = cell(x_t, state)``, split as there into
``gates`` (the convolutions) and ``update`` (the elementwise rest), with torch's parameter
names and gate order: ``weight_ih`` (G*Hc, C, *k), ``weight_hh`` (G*Hc, Hc, *k),
``bias_ih`` and ``bias_hh`` (G*Hc). With 1x1 kernels on 1x1 frames they compute exactly
``nn.LSTMCell`` / ``nn.GRUCell`` (the weights copy over after a reshape).

Shapes: B batch, T time, C input channels, Hc hidden channels, G gates (3 gru, 4 lstm),
*spatial the frame's (L,), (H, W) or (D, H, W) for dims 1, 2, 3; k the kernel size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .cells import State, cell_class, gru_update
from .recurrent import check_lengths, check_state, step_mask, zero_state

_CONVS = {1: nn.functional.conv1d, 2: nn.functional.conv2d, 3: nn.functional.conv3d}


def _kernel_tuple(kernel_size: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    if dims not in _CONVS:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims!r}")
    k = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * dims
    if len(k) != dims or any(type(n) is not int or n < 1 or n % 2 == 0 for n in k):
        # an even kernel has no centre: same padding would have to be lopsided
        raise ValueError(f"kernel_size must be an odd positive int or {dims} of them, "
                         f"got {kernel_size!r}")
    return k


def _masked(keep: Tensor, new: Tensor, old: Tensor | float) -> Tensor:
    """``new`` where the bool mask ``keep`` ((B,) or (B, T)) is True, else ``old``.

    The mask covers ``new``'s leading dims and is broadcast over the rest (channels, frame).
    """
    return torch.where(keep.view(*keep.shape, *(1,) * (new.dim() - keep.dim())), new, old)


class _ConvCell(nn.Module):
    """Parameters, initialisation, convolutions and ``forward`` shared by the conv cells."""

    num_gates = 1
    state_names: tuple[str, ...] = ("h",)
    state_count = 1  # tensors in a state tuple
    forget_gate: int | None = None  # as in cells.py: the forget gate's block of rows, if any

    def __init__(self, in_channels: int, hidden_channels: int,
                 kernel_size: int | tuple[int, ...] = 3, dims: int = 2, bias: bool = True):
        super().__init__()
        self.kernel_size = _kernel_tuple(kernel_size, dims)
        self.in_channels, self.hidden_channels, self.dims, self.bias = (
            in_channels, hidden_channels, dims, bias)
        self.padding = tuple(n // 2 for n in self.kernel_size)  # same padding at stride 1
        gh = self.num_gates * hidden_channels
        self.weight_ih = nn.Parameter(torch.empty(gh, in_channels, *self.kernel_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_channels, *self.kernel_size))
        self.bias_ih = nn.Parameter(torch.empty(gh)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(gh)) if bias else None

    @property
    def hidden_size(self) -> int:
        return self.hidden_channels

    def reset_parameters(self) -> None:
        # torch's cell init, uniform in +-1/sqrt(fan_in) of the state-to-state product; with a
        # 1x1 kernel this is exactly nn.LSTMCell's 1/sqrt(H), with a k x k kernel a hidden
        # unit sums k*k times more terms, so the bound shrinks to keep the gate scale
        bound = 1.0 / math.sqrt(self.hidden_channels * math.prod(self.kernel_size))
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def init_state(self, like: Tensor) -> State:
        """Zero state for the frame ``like`` (B, C, *spatial): the spatial size comes from it."""
        zeros = like.new_zeros(like.shape[0], self.hidden_channels, *like.shape[2:])
        return tuple(zeros for _ in range(self.state_count))

    def gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(gi, gh) = (W_ih * x + b_ih, W_hh * h + b_hh), each (B, G*Hc, *spatial)."""
        conv = _CONVS[self.dims]
        gi = conv(x, self.weight_ih, self.bias_ih, padding=self.padding)
        gh = conv(h, self.weight_hh, self.bias_hh, padding=self.padding)
        return gi, gh

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        """(y, new state) from the gates of ``gates`` and the old state."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        state = state if state is not None else self.init_state(x)
        return self.update(*self.gates(x, state[0]), state)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
                f"dims={self.dims}, bias={self.bias}")


class ConvGRUCell(_ConvCell):
    """Convolutional GRU in torch's GRU variant (the reset gate multiplies W_hn * h + b_hn).

    r = sigmoid(W_ir * x + b_ir + W_hr * h + b_hr)
    z = sigmoid(W_iz * x + b_iz + W_hz * h + b_hz)
    n = tanh(W_in * x + b_in + r o (W_hn * h + b_hn))
    h' = (1 - z) o n + z o h

    ``*`` is a same-padded convolution, ``o`` the elementwise product.

    Args:
        in_channels: C, channels of an input frame.
        hidden_channels: Hc, channels of the state.
        kernel_size: odd int (or one per spatial dim), for both convolutions.
        dims: 1, 2 or 3 spatial dimensions (conv1d, conv2d, conv3d).
        bias: whether the convolutions have biases.

    Shape:
        x_t: (B, C, *spatial). state: None (zeros) or ``(h,)`` with h (B, Hc, *spatial).
        Returns ``h', (h',)``.
    """

    num_gates = 3

    def __init__(self, in_channels: int, hidden_channels: int,
                 kernel_size: int | tuple[int, ...] = 3, dims: int = 2, bias: bool = True):
        super().__init__(in_channels, hidden_channels, kernel_size, dims, bias)
        self.reset_parameters()

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        h = gru_update(gi, gh, state[0])
        return h, (h,)


class ConvLSTMCell(_ConvCell):
    """ConvLSTM (Shi et al. 2015, arXiv:1506.04214), gate order i, f, g, o as in torch.

    i = sigmoid(W_xi * x + W_hi * h + W_ci o c + b_i)
    f = sigmoid(W_xf * x + W_hf * h + W_cf o c + b_f)
    c' = f o c + i o tanh(W_xc * x + W_hc * h + b_c)
    o = sigmoid(W_xo * x + W_ho * h + W_co o c' + b_o)
    h' = o o tanh(c')

    ``*`` is a same-padded convolution, ``o`` the elementwise product. As in the paper the
    input and forget gates peep at the old cell c and the output gate at the new one c'.
    Differences from the paper: each gate has two biases, ``b_i* + b_h*`` (torch's layout,
    so weights copy to and from ``nn.LSTMCell``); the peepholes are optional (off by default,
    as in Keras's ConvLSTM and torch's LSTM) and come in two sizes, see ``peephole``.

    Args:
        in_channels: C, channels of an input frame.
        hidden_channels: Hc, channels of the state.
        kernel_size: odd int (or one per spatial dim), for both convolutions.
        dims: 1, 2 or 3 spatial dimensions (conv1d, conv2d, conv3d).
        bias: whether the convolutions have biases.
        peephole: None (no W_c* terms); "channel", one weight per channel and gate, shape
            (Hc, 1, ..), shared over space; or the frame size (e.g. ``(H, W)``), the paper's
            full Hadamard weights ``weight_ci``, ``weight_cf``, ``weight_co`` of shape
            (Hc, *spatial), which then fixes the frame size the cell accepts.

    Shape:
        x_t: (B, C, *spatial). state: None (zeros) or ``(h, c)``, each (B, Hc, *spatial).
        Returns ``h', (h', c')``.
    """

    num_gates = 4
    state_names = ("h", "c")
    state_count = 2
    forget_gate = 1

    def __init__(self, in_channels: int, hidden_channels: int,
                 kernel_size: int | tuple[int, ...] = 3, dims: int = 2, bias: bool = True,
                 peephole: str | tuple[int, ...] | None = None):
        super().__init__(in_channels, hidden_channels, kernel_size, dims, bias)
        shape = _peephole_shape(peephole, hidden_channels, dims)
        # None, "channel" or the frame size as a tuple of ints
        self.peephole = peephole if peephole in (None, "channel") else tuple(shape[1:])
        for name in ("weight_ci", "weight_cf", "weight_co"):
            param = None if shape is None else nn.Parameter(torch.empty(shape))
            self.register_parameter(name, param)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.peephole is not None:
            # zero peepholes: a fresh cell computes the plain ConvLSTM, and training adds the
            # W_c* o c terms only where they help (random ones would push c, which is unbounded,
            # straight into the gates from step one)
            for p in (self.weight_ci, self.weight_cf, self.weight_co):
                nn.init.zeros_(p)

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        c = state[1]
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        if self.peephole is not None:
            self._check_frame(c)
            i, f = i + self.weight_ci * c, f + self.weight_cf * c  # the old cell c_{t-1}
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole is not None:
            o = o + self.weight_co * c  # the new cell c_t, as in the paper
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def _check_frame(self, c: Tensor) -> None:
        if self.peephole != "channel" and c.shape[2:] != self.peephole:
            # broadcasting would silently accept 1x1 weights or a 1x1 frame of the wrong size
            raise ValueError(f"full peepholes were built for frames of size "
                             f"{tuple(self.peephole)}, got {tuple(c.shape[2:])}")

    def extra_repr(self) -> str:
        return super().extra_repr() + f", peephole={self.peephole}"


def _peephole_shape(peephole, hidden_channels: int, dims: int) -> torch.Size | None:
    if peephole is None:
        return None
    if peephole == "channel":
        return torch.Size((hidden_channels,) + (1,) * dims)
    size = tuple(peephole) if isinstance(peephole, (tuple, list, torch.Size)) else ()
    if len(size) != dims or any(not isinstance(n, int) or n < 1 for n in size):
        raise ValueError(f"peephole must be None, 'channel' or the frame size ({dims} positive "
                         f"ints), got {peephole!r}")
    return torch.Size((hidden_channels,) + size)


CONV_CELLS: dict[str, type[_ConvCell]] = {"lstm": ConvLSTMCell, "gru": ConvGRUCell}


class ConvRecurrent(nn.Module):
    """Stacked convolutional recurrent layers over batch-first frame sequences.

    The conv counterpart of ``Recurrent`` (its cells path): layer k>0 reads layer k-1's
    hidden states, and ``lengths`` masks the state update as there.

    Args:
        cell: "lstm" or "gru", or a conv cell class following this module's protocol.
        in_channels: C, channels of an input frame.
        hidden_channels: Hc, channels of every layer's state.
        num_layers: L, stacked layers.
        kernel_size: odd int (or one per spatial dim), for every convolution.
        dims: 1, 2 or 3 spatial dimensions.
        dropout: dropout on the outputs of every layer but the last (as torch does).
        peephole: passed to every ConvLSTMCell (see there); must be None for other cells.
        bias: whether the convolutions have biases.

    Shape:
        x: (B, T, C, *spatial). state: None (zeros) or a tuple of (L, B, Hc, *spatial)
        tensors, ``(h,)`` or ``(h, c)`` for LSTM. lengths: optional (B,) integers in [1, T].
        Returns outputs (B, T, Hc, *spatial) of the last layer (channels at dim 2,
        ``feature_dim``) and the final state; with lengths, outputs at steps t >= lengths[b]
        are zero and row b's final state is the one after its step lengths[b] - 1.
    """

    feature_dim = 2  # Bidirectional concatenates the two directions' channels here

    def __init__(self, cell, in_channels: int, hidden_channels: int, num_layers: int = 1,
                 kernel_size: int | tuple[int, ...] = 3, dims: int = 2, dropout: float = 0.0,
                 peephole: str | tuple[int, ...] | None = None, bias: bool = True):
        super().__init__()
        cell_cls = cell_class(cell, CONV_CELLS)
        if peephole is not None and not issubclass(cell_cls, ConvLSTMCell):
            raise ValueError(f"peephole needs an LSTM cell, got {cell_cls.__name__}")
        extra = {} if peephole is None else {"peephole": peephole}
        self.cells = nn.ModuleList(
            cell_cls(in_channels if k == 0 else hidden_channels, hidden_channels,
                     kernel_size, dims, bias, **extra)
            for k in range(num_layers))
        self.in_channels, self.dims, self.num_layers, self.dropout = (
            in_channels, dims, num_layers, dropout)
        self.hidden_size = self.output_size = hidden_channels
        self.state_count = cell_cls.state_count

    def init_state(self, like: Tensor) -> State:
        """Zero state for the sequence ``like`` (B, T, C, *spatial), on its device and dtype."""
        return zero_state(self.state_count, self._state_shape(like), like)

    def forward(self, x: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        self._check_input(x)
        if state is None:
            state = self.init_state(x)
        check_state(state, self.state_count, self._state_shape(x))
        mask = None
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[1])
            mask = step_mask(lengths, x.shape[1], x.device)
            # zero the padding before any cell sees it: even inf/nan there cannot leak into
            # the gradients (0 * inf would)
            x = _masked(mask, x, 0)
        finals = []
        for k, cell in enumerate(self.cells):
            x, layer_state = _run_conv_cell(cell, x, tuple(s[k] for s in state), mask)
            if k < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, self.training)
            finals.append(layer_state)
        return x, tuple(torch.stack(s) for s in zip(*finals))

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != self.dims + 3 or x.shape[2] != self.in_channels:
            raise ValueError(f"x must be (B, T, {self.in_channels}, *spatial) with {self.dims} "
                             f"spatial dims, got {tuple(x.shape)}")

    def _state_shape(self, x: Tensor) -> tuple[int, ...]:
        return (self.num_layers, x.shape[0], self.hidden_size, *x.shape[3:])

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, dropout={self.dropout}"


def _run_conv_cell(cell: nn.Module, x: Tensor, state: State,
                   mask: Tensor | None) -> tuple[Tensor, State]:
    """One layer over time; where ``mask`` (B, T) is False the state is kept and y is zero."""
    outputs = []
    for t in range(x.shape[1]):
        y, new_state = cell(x[:, t], state)
        if mask is not None:
            keep = mask[:, t]
            new_state = tuple(_masked(keep, n, s) for n, s in zip(new_state, state))
            y = _masked(keep, y, 0)
        outputs.append(y)
        state = new_state
    return torch.stack(outputs, dim=1), state
