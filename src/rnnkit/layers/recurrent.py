"""Recurrent: a stack of cells run over time, batch-first.

Two paths compute the same function:
- fused: torch's own multi-layer kernels (``torch.lstm/gru/rnn_tanh``, the code behind
  ``nn.LSTM``: oneDNN on CPU, cuDNN on GPU), fed with our cells' parameters;
- cells: a Python loop over time and layers calling each cell, for cells torch has no kernel for.
``impl="auto"`` takes the fused path whenever every cell is one of the three standard cells.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .cells import CELLS, GRUCell, LSTMCell, RNNCell, State

_FUSED = {LSTMCell: torch.lstm, GRUCell: torch.gru, RNNCell: torch.rnn_tanh}


class Recurrent(nn.Module):
    """Stacked recurrent layers with inter-layer dropout, like ``nn.LSTM(batch_first=True)``.

    Args:
        cell: "lstm", "gru" or "rnn", or a cell class following the cells.py protocol.
        input_size: D, features per input step.
        hidden_size: H, units per layer.
        num_layers: L, stacked layers; layer k>0 reads layer k-1's outputs.
        dropout: dropout on the outputs of every layer but the last (as torch does).
        impl: "auto", "fused" or "cells" (see module docstring).

    Shape:
        x: (B, T, D). state: a tuple of (L, B, H) tensors, ``(h,)`` or ``(h, c)`` for LSTM;
        None means zeros. Returns outputs (B, T, H) of the last layer and the final state.
    """

    def __init__(self, cell, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True, impl: str = "auto"):
        super().__init__()
        cell_cls = CELLS[cell] if isinstance(cell, str) else cell
        if impl not in ("auto", "fused", "cells"):
            raise ValueError(f"impl must be auto, fused or cells, got {impl!r}")
        if impl == "fused" and cell_cls not in _FUSED:
            raise ValueError(f"no fused kernel for {cell_cls.__name__}")
        self.hidden_size, self.num_layers, self.dropout, self.bias = (
            hidden_size, num_layers, dropout, bias)
        self.cells = nn.ModuleList(
            cell_cls(input_size if k == 0 else hidden_size, hidden_size, bias)
            for k in range(num_layers))
        self.fused = impl != "cells" and cell_cls in _FUSED
        self.state_count = cell_cls.state_count

    def init_state(self, batch_size: int, like: Tensor) -> State:
        zeros = like.new_zeros(self.num_layers, batch_size, self.hidden_size)
        return tuple(zeros for _ in range(self.state_count))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x)
        expected = (self.num_layers, x.shape[0], self.hidden_size)
        if len(state) != self.state_count or any(s.shape != expected for s in state):
            # torch's kernels do not check this themselves (a wrong shape corrupts memory)
            raise ValueError(f"state must be {self.state_count} tensor(s) of shape {expected}, "
                             f"got {[tuple(s.shape) for s in state]}")
        if self.fused:
            return self._forward_fused(x, state)
        return self._forward_cells(x, state)

    def _flat_weights(self) -> list[Tensor]:
        # torch's layout: per layer w_ih, w_hh, b_ih, b_hh
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        return [getattr(c, n) for c in self.cells for n in names]

    def _forward_fused(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        kernel = _FUSED[type(self.cells[0])]
        hx = state if self.state_count == 2 else state[0]
        out, *new_state = kernel(x, hx, self._flat_weights(), self.bias, self.num_layers,
                                 self.dropout, self.training, False, True)
        return out, tuple(new_state)

    def _forward_cells(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        finals = []
        for k, cell in enumerate(self.cells):
            layer_state = tuple(s[k] for s in state)
            outputs = []
            for t in range(x.shape[1]):
                y, layer_state = cell(x[:, t], layer_state)
                outputs.append(y)
            x = torch.stack(outputs, dim=1)
            if k < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, self.training)
            finals.append(layer_state)
        return x, tuple(torch.stack(s) for s in zip(*finals))

    def torch_state_dict(self) -> dict[str, Tensor]:
        """Our parameters under ``nn.LSTM/GRU/RNN`` names (``weight_ih_l0`` ...)."""
        return {f"{name}_l{k}": p for k, cell in enumerate(self.cells)
                for name, p in cell.named_parameters()}

    def load_torch_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Copy weights from an ``nn.LSTM/GRU/RNN`` state_dict of the same shape."""
        with torch.no_grad():
            for name, p in self.torch_state_dict().items():
                p.copy_(sd[name])


def detach_state(state):
    """Cut the graph behind a state (tensor or nested tuple): backprop stops at the window edge."""
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)
