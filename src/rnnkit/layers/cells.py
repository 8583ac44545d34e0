"""Recurrent cells: one time step each, with torch's parameter names and gate order.

Every cell has the same protocol, ``y_t, state = cell(x_t, state)``, where ``state`` is a
tuple of (B, H) tensors: ``(h,)`` for RNNCell and GRUCell, ``(h, c)`` for LSTMCell. The
parameters ``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H)
copy one-to-one into ``nn.RNNCell/GRUCell/LSTMCell`` or into layer k of ``nn.RNN/GRU/LSTM``.

Shapes: B batch, D input features, H hidden units, G gates (1 rnn, 3 gru, 4 lstm).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class _Cell(nn.Module):
    """Parameters and initialisation shared by the three cells."""

    num_gates = 1
    state_count = 1  # tensors in a state tuple

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gh = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gh)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(gh)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's own init (uniform in +-1/sqrt(H)), so fresh models match nn.LSTM statistics.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch_size: int, like: Tensor) -> State:
        """Zero state for ``batch_size`` rows, on ``like``'s device and dtype."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return tuple(zeros for _ in range(self.state_count))

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        gh = nn.functional.linear(h, self.weight_hh, self.bias_hh)
        return gi, gh

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(_Cell):
    """Elman cell: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        (h,) = state if state is not None else self.init_state(x.shape[0], x)
        gi, gh = self._gates(x, h)
        h = torch.tanh(gi + gh)
        return h, (h,)


class GRUCell(_Cell):
    """GRU (Cho et al. 2014) in torch's variant: the reset gate multiplies W_hh h + b_hn.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
    """

    num_gates = 3

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        (h,) = state if state is not None else self.init_state(x.shape[0], x)
        gi, gh = self._gates(x, h)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        return h, (h,)


class LSTMCell(_Cell):
    """LSTM (Hochreiter & Schmidhuber 1997, with forget gate), gate order i, f, g, o as in torch.

    i, f, o = sigmoid(.), g = tanh(.) of W_ih x + b_ih + W_hh h + b_hh (split in four)
    c' = f * c + i * g;  h' = o * tanh(c')
    """

    num_gates = 4
    state_count = 2

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, c = state if state is not None else self.init_state(x.shape[0], x)
        gi, gh = self._gates(x, h)
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


CELLS: dict[str, type[_Cell]] = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


@torch.no_grad()
def init_forget_bias(module: nn.Module, value: float) -> None:
    """Start the forget gate of every LSTMCell in ``module`` at bias ``value`` (1.0 as in
    Jozefowicz et al. 2015): the cells then keep their memory by default, and gradients reach
    far back from the first step instead of fading like 0.5**T."""
    for cell in module.modules():
        if isinstance(cell, LSTMCell):
            H = cell.hidden_size  # gate order i, f, g, o: the forget gate is rows H:2H
            cell.bias_ih[H:2 * H].fill_(value)
            cell.bias_hh[H:2 * H].zero_()
