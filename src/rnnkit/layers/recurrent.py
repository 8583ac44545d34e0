"""Recurrent: a stack of cells run over time, batch-first.

Two paths compute the same function:
- fused: torch's own multi-layer kernels (``torch.lstm/gru/rnn_tanh``, the code behind
  ``nn.LSTM``: oneDNN on CPU, cuDNN on GPU), fed with our cells' parameters;
- cells: a Python loop over time and layers calling each cell, for cells torch has no kernel for;
  a cell with a ``sequence`` method computes its whole layer itself (parallel_cells.py: a
  parallel scan over time).
``impl="auto"`` takes the fused path whenever every cell is one of the three standard cells.

Variable-length batches (``lengths``) run through torch's packed-sequence kernels on the fused
path and through a masked update on the cells path; either way padding is never read.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .cells import GRUCell, LSTMCell, RNNCell, State, cell_class

_FUSED = {LSTMCell: torch.lstm, GRUCell: torch.gru, RNNCell: torch.rnn_tanh}


class Recurrent(nn.Module):
    """Stacked recurrent layers with inter-layer dropout, like ``nn.LSTM(batch_first=True)``.

    Args:
        cell: a name in cells.CELLS ("lstm", "gru", "rnn", or one registered there), or a
            cell class following the cells.py protocol.
        input_size: D, features per input step.
        hidden_size: H, units per layer.
        num_layers: L, stacked layers; layer k>0 reads layer k-1's outputs.
        dropout: dropout on the outputs of every layer but the last (as torch does).
        impl: "auto", "fused" or "cells" (see module docstring).

    Shape:
        x: (B, T, D). state: a tuple of (L, B, H) tensors, ``(h,)`` or ``(h, c)`` for LSTM;
        None means zeros. lengths: optional (B,) integers in [1, T], the valid steps of each
        row. Returns outputs (B, T, H) of the last layer and the final state; with lengths,
        outputs at steps t >= lengths[b] are zero and row b's final state is the one after
        its step lengths[b] - 1.
    """

    def __init__(self, cell, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True, impl: str = "auto"):
        super().__init__()
        cell_cls = cell_class(cell)
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
        self.output_size = hidden_size

    def init_state(self, batch_size: int, like: Tensor) -> State:
        """Zero state of (L, B, H) tensors, on ``like``'s device and dtype."""
        return zero_state(self.state_count, (self.num_layers, batch_size, self.hidden_size), like)

    def forward(self, x: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.shape[1] == 0:  # the kernels and the scan fail obscurely on it
            raise ValueError(f"x must be (B, T, D) with at least one step, got shape "
                             f"{tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.shape[0], x)
        check_state(state, self.state_count, (self.num_layers, x.shape[0], self.hidden_size))
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[1])
            if self.fused:
                return self._forward_packed(x, state, lengths)
            return self._forward_cells(x, state, step_mask(lengths, x.shape[1], x.device))
        if self.fused:
            return self._forward_fused(x, state)
        return self._forward_cells(x, state)

    def _flat_weights(self) -> list[Tensor]:
        # torch's layout: per layer w_ih, w_hh, b_ih, b_hh
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        return [getattr(c, n) for c in self.cells for n in names]

    def _forward_fused(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if _lstm_without_bf16(self.cells[0], x):
            with torch.autocast("cpu", enabled=False):
                return self._forward_fused(x.float(), tuple(s.float() for s in state))
        kernel = _FUSED[type(self.cells[0])]
        hx = state if self.state_count == 2 else state[0]
        out, *new_state = kernel(x, hx, self._flat_weights(), self.bias, self.num_layers,
                                 self.dropout, self.training, False, True)
        return out, tuple(new_state)

    def _forward_packed(self, x: Tensor, state: State, lengths: Tensor) -> tuple[Tensor, State]:
        if _lstm_without_bf16(self.cells[0], x):
            with torch.autocast("cpu", enabled=False):
                return self._forward_packed(x.float(), tuple(s.float() for s in state), lengths)
        # the packed overloads take (data, batch_sizes, ...) and no batch_first flag; rows are
        # sorted longest first inside the pack, so the state is permuted to match and back
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        hx = tuple(s.index_select(1, packed.sorted_indices) for s in state)
        kernel = _FUSED[type(self.cells[0])]
        data, *new_state = kernel(packed.data, packed.batch_sizes,
                                  hx if self.state_count == 2 else hx[0], self._flat_weights(),
                                  self.bias, self.num_layers, self.dropout, self.training, False)
        out = PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                             packed.unsorted_indices)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, tuple(s.index_select(1, packed.unsorted_indices) for s in new_state)

    def _forward_cells(self, x: Tensor, state: State,
                       mask: Tensor | None = None) -> tuple[Tensor, State]:
        if mask is not None:
            # zero the padding before any cell sees it: even inf/nan there cannot leak into
            # the gradients (0 * inf would)
            x = torch.where(mask[..., None], x, 0)
        finals = []
        for k, cell in enumerate(self.cells):
            x, layer_state = _run_cell(cell, x, tuple(s[k] for s in state), mask)
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


def _run_cell(cell: nn.Module, x: Tensor, state: State,
              mask: Tensor | None) -> tuple[Tensor, State]:
    """One layer over time; where ``mask`` (B, T) is False the state is kept and y is zero."""
    if hasattr(cell, "sequence"):  # all steps at once, same contract
        return cell.sequence(x, state, mask)
    outputs = []
    for t in range(x.shape[1]):
        y, new_state = cell(x[:, t], state)
        if mask is not None:
            keep = mask[:, t, None]
            new_state = tuple(torch.where(keep, n, s) for n, s in zip(new_state, state))
            y = torch.where(keep, y, 0)
        outputs.append(y)
        state = new_state
    return torch.stack(outputs, dim=1), state


def _lstm_without_bf16(cell, x: Tensor) -> bool:
    """oneDNN has no bf16 LSTM on CPUs without native bf16 (AVX2 only): under bf16 autocast
    there the fused LSTM runs in fp32 (the layers around it stay bf16) instead of failing."""
    return (type(cell) is LSTMCell and x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and not torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_lengths(lengths: Tensor, batch_size: int, steps: int) -> Tensor:
    """Validate per-row lengths at a layer's boundary.

    Args:
        lengths: (B,) integer tensor (any device) of valid steps per row.
        batch_size: B. steps: T, the padded length.

    Returns:
        The lengths as a CPU int64 tensor, where ``pack_padded_sequence`` needs them.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.shape != (batch_size,):
        raise ValueError(f"lengths must have shape ({batch_size},) (one per row), "
                         f"got {tuple(lengths.shape)}")
    lengths = lengths.to("cpu", torch.int64)
    if batch_size and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"lengths must lie in [1, {steps}] (the padded length T), "
                         f"got min {lengths.min().item()}, max {lengths.max().item()}")
    return lengths


def step_mask(lengths: Tensor, steps: int, device: torch.device | str | None = None) -> Tensor:
    """(B, T) bool mask, True at the valid steps t < lengths[b], on ``device`` (None: the
    device of ``lengths``)."""
    device = lengths.device if device is None else device
    return torch.arange(steps, device=device) < lengths.to(device)[:, None]


def zero_state(count: int, shape: tuple[int, ...], like: Tensor) -> State:
    """A state of ``count`` zero tensors of ``shape``, on ``like``'s device and dtype."""
    zeros = like.new_zeros(shape)
    return tuple(zeros for _ in range(count))


def check_state(state: State, count: int, shape: tuple[int, ...]) -> None:
    """Refuse a state that is not ``count`` tensors of ``shape``: torch's kernels do not check
    this themselves (a wrong shape corrupts memory)."""
    if len(state) != count or any(s.shape != shape for s in state):
        raise ValueError(f"state must be {count} tensor(s) of shape {shape}, "
                         f"got {[tuple(s.shape) for s in state]}")


def detach_state(state):
    """Cut the graph behind a state (tensor or nested tuple): backprop stops at the window edge.
    None (no state, as a transformer's) stays None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)
