"""Bidirectional layers: a second copy of a layer reads each sequence back to front.

State layout (as in ``nn.LSTM(bidirectional=True)``): every state tensor stacks the forward
direction's (L, B, H) on top of the backward direction's along dim 0, giving (2L, B, H).
``BiRecurrent`` interleaves per layer instead, in torch's order: l0 forward, l0 backward,
l1 forward, l1 backward ...

Shapes: B batch, T time, D input features, H hidden units, L layers.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .cells import State
from .recurrent import Recurrent, check_lengths, check_state, zero_state

_MERGES = ("concat", "sum")


def reverse_padded(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Reverse each row in time within its own length; the padding stays at the end.

    Its own inverse: ``reverse_padded(reverse_padded(x, lengths), lengths)`` is ``x``.

    Args:
        x: (B, T, ...) batch-first sequences.
        lengths: optional (B,) integer tensor of valid steps per row; None means all T
            (a plain flip).

    Shape:
        Returns a tensor of x's shape, with ``out[b, t] = x[b, lengths[b] - 1 - t]`` for
        t < lengths[b] and ``out[b, t] = x[b, t]`` otherwise.
    """
    if lengths is None:
        return x.flip(1)
    t = torch.arange(x.shape[1], device=x.device)
    n = lengths.to(x.device)[:, None]
    index = torch.where(t < n, n - 1 - t, t)  # (B, T)
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, index]


def _reset_parameters(module: nn.Module) -> None:
    # a deep copy would start the backward direction as a clone of the forward one
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _cat_states(first: State, second: State) -> State:
    return tuple(torch.cat(pair, dim=0) for pair in zip(first, second, strict=True))


class Bidirectional(nn.Module):
    """Run a layer forward and a fresh copy of it backward in time, then merge the outputs.

    The backward layer reads each row reversed within its own length (``reverse_padded``) and
    its outputs are reversed back the same way, so step t of both directions lines up and
    padding never leaks into the valid steps.

    Args:
        layer: any module with ``out, state = layer(x, state, lengths)`` (like ``Recurrent``),
            where state is a tuple of (L, B, H) tensors; it becomes ``forward_layer``. The
            ``backward_layer`` is a deep copy with freshly reset parameters.
        merge: "concat" (outputs side by side) or "sum".
        feature_dim: the output dim that "concat" joins; None takes the layer's
            ``feature_dim`` attribute if it has one (``ConvRecurrent``: 2, the channels),
            else -1 (the features of ``Recurrent``).

    Shape:
        x: (B, T, D). state: None (zeros) or a tuple of (2L, B, H) tensors, the forward
        layer's (L, B, H) followed by the backward layer's along dim 0; the returned state has
        the same layout. lengths: optional (B,) integers in [1, T]. Returns outputs
        (B, T, 2H) for "concat" or (B, T, H) for "sum" (``output_size``), zero at steps
        t >= lengths[b]. For a conv layer read (B, T, C, *spatial) for x and
        (B, T, 2Hc, *spatial) for the concatenated outputs.
    """

    def __init__(self, layer: nn.Module, merge: str = "concat", feature_dim: int | None = None):
        super().__init__()
        if merge not in _MERGES:
            raise ValueError(f"merge must be one of {_MERGES}, got {merge!r}")
        self.merge = merge
        # exposed in turn, so a Bidirectional can itself be wrapped or stacked
        self.feature_dim = getattr(layer, "feature_dim", -1) if feature_dim is None else feature_dim
        self.forward_layer = layer
        self.backward_layer = copy.deepcopy(layer)
        _reset_parameters(self.backward_layer)
        size = getattr(layer, "output_size", None) or layer.hidden_size
        self.output_size = 2 * size if merge == "concat" else size

    def forward(self, x: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[1])
        state_f, state_b = self._split_state(state)
        out_f, state_f = self.forward_layer(x, state_f, lengths)
        out_b, state_b = self.backward_layer(reverse_padded(x, lengths), state_b, lengths)
        out_b = reverse_padded(out_b, lengths)
        if self.merge == "concat":
            out = torch.cat([out_f, out_b], dim=self.feature_dim)
        else:
            out = out_f + out_b
        return out, _cat_states(state_f, state_b)

    @staticmethod
    def _split_state(state: State | None) -> tuple[State | None, State | None]:
        if state is None:
            return None, None
        if any(s.shape[0] % 2 for s in state):
            raise ValueError("a bidirectional state stacks both directions along dim 0 and "
                             f"needs an even size there, got {[tuple(s.shape) for s in state]}")
        half = state[0].shape[0] // 2
        return tuple(s[:half] for s in state), tuple(s[half:] for s in state)

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}, feature_dim={self.feature_dim}"


class BiRecurrent(nn.Module):
    """Stacked bidirectional layers, like ``nn.LSTM(bidirectional=True, batch_first=True)``.

    Layer k is ``Bidirectional(Recurrent(cell, in_k, H, 1), "concat")`` where in_0 = D and
    in_k = 2H: every layer reads both directions of the layer below.

    Args:
        cell: a name in cells.CELLS ("lstm", "gru", "rnn", or one registered there), or a
            cell class following the cells.py protocol.
        input_size: D, features per input step.
        hidden_size: H, units per direction and layer.
        num_layers: L, stacked bidirectional layers.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        bias: whether the cells have biases.
        impl: "auto", "fused" or "cells", passed to every ``Recurrent``.

    Shape:
        x: (B, T, D). state: None (zeros) or a tuple of (2L, B, H) tensors, ``(h,)`` or
        ``(h, c)`` for LSTM, in torch's order: l0 forward, l0 backward, l1 forward, l1
        backward ... lengths: optional (B,) integers in [1, T]. Returns outputs (B, T, 2H)
        (forward then backward features; zero at steps t >= lengths[b]) and the final state
        in the same layout.
    """

    def __init__(self, cell, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True, impl: str = "auto"):
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout = hidden_size, num_layers, dropout
        self.layers = nn.ModuleList(
            Bidirectional(Recurrent(cell, input_size if k == 0 else 2 * hidden_size,
                                    hidden_size, 1, bias=bias, impl=impl), "concat")
            for k in range(num_layers))
        self.state_count = self.layers[0].forward_layer.state_count
        self.output_size = 2 * hidden_size

    def init_state(self, batch_size: int, like: Tensor) -> State:
        """Zero state of (2L, B, H) tensors, on ``like``'s device and dtype."""
        return zero_state(self.state_count, (2 * self.num_layers, batch_size, self.hidden_size),
                          like)

    def forward(self, x: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x)
        check_state(state, self.state_count, (2 * self.num_layers, x.shape[0], self.hidden_size))
        if lengths is not None:
            lengths = check_lengths(lengths, x.shape[0], x.shape[1])
        finals = []
        for k, layer in enumerate(self.layers):
            x, layer_state = layer(x, tuple(s[2 * k:2 * k + 2] for s in state), lengths)
            if k < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, self.training)
            finals.append(layer_state)
        return x, tuple(torch.cat(s, dim=0) for s in zip(*finals))

    def torch_state_dict(self) -> dict[str, Tensor]:
        """Our parameters under ``nn.LSTM/GRU/RNN`` names (``weight_ih_l0_reverse`` ...)."""
        return {f"{name}_l{k}{suffix}": p
                for k, bi in enumerate(self.layers)
                for suffix, rec in (("", bi.forward_layer), ("_reverse", bi.backward_layer))
                for name, p in rec.cells[0].named_parameters()}

    def load_torch_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Copy weights from a bidirectional ``nn.LSTM/GRU/RNN`` state_dict of the same shape."""
        with torch.no_grad():
            for name, p in self.torch_state_dict().items():
                p.copy_(sd[name])
