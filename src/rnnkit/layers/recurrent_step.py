"""RecurrentStep: one time step of a Recurrent stack, for decoding (sampling, beam search).

``rnn(x[:, None], state)`` runs a whole sequence kernel for a single step: on CPU, torch's LSTM
repacks its weights and sets up a sequence on every call, which costs more than the step's
arithmetic at batch 1 (about 7 ms for a 2x512 LSTM). RecurrentStep computes the same function
with a few matrix products per layer, each layer's step made once by its own cell
(``cell.single_step``, cells.py):

- with an embedding in front, layer 0's input projection of every vocabulary entry (embedding
  -> W_ih, plus the biases) is a (V, G*H) table built once, so reading a token is a row lookup;
- the LSTM and RNN cells' upper layers multiply [x, h] by their stacked [W_ih; W_hh] at once;
- weights are transposed, concatenated and optionally converted once, when the step is made.

A cell that follows only the ``y, state = cell(x, state)`` protocol (no ``single_step``) is
called as it is, and then decodes in fp32 only.

``precision``: "fp32", "bf16" or "int8", the precision of the matrix products (affine.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .affine import PRECISIONS, Affine, int8_available
from .cells import LayerStep, plain_step

if TYPE_CHECKING:
    from .recurrent import Recurrent

# Affine, PRECISIONS and int8_available are read from here by the models and the API
__all__ = ["PRECISIONS", "Affine", "RecurrentStep", "int8_available"]


class RecurrentStep:
    """``out, state = step(inputs, state)`` for a ``Recurrent`` stack, one step, no dropout,
    no gradient.

    Args:
        rnn: the stack, of any cells.
        embedding: the embedding that feeds the stack, if any; then ``inputs`` are token ids
            (B,) int64, else features (B, D).
        precision: "fp32", "bf16" or "int8" (see affine.py).

    Shape: state is the stack's own, a tuple of (L, B, H) tensors (None: zeros); out (B, H)
    float32, the last layer's output. ``out`` may be a view of the new state's top h (no copy
    per step): change it in place and the state may change too.
    """

    def __init__(self, rnn: Recurrent, embedding: nn.Embedding | None = None,
                 precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device = next(rnn.parameters(), torch.empty(0)).device
        if precision == "int8" and not int8_available(device):
            raise ValueError("int8 decoding needs a CPU model and torch's fbgemm/x86 kernels")
        self.hidden_size, self.state_count = rnn.hidden_size, rnn.state_count
        with torch.no_grad():
            self.layers = [_layer_step(cell, precision, embedding if k == 0 else None, k > 0)
                           for k, cell in enumerate(rnn.cells)]

    @torch.no_grad()  # decoding only: the steps write their states in place
    def __call__(self, inputs: Tensor, state: tuple[Tensor, ...] | None = None):
        if state is None:
            zeros = torch.zeros(len(self.layers), inputs.shape[0], self.hidden_size,
                                device=inputs.device)
            state = (zeros,) * self.state_count
        old = tuple(s.float() for s in state)
        # each layer writes its new state straight into these: no stack, no copy per step
        new = tuple(torch.empty_like(s) for s in old)
        # per layer, its (B, H) views of every state tensor: one unbind per tensor costs less
        # than indexing each layer's rows apart
        per_layer = zip(zip(*(s.unbind() for s in old)), zip(*(s.unbind() for s in new)))
        x = inputs
        for step, (old_k, new_k) in zip(self.layers, per_layer, strict=True):
            x = step(x, old_k, new_k)
        return x, new


def _layer_step(cell: nn.Module, precision: str, embedding: nn.Embedding | None,
                upper: bool) -> LayerStep:
    make = getattr(cell, "single_step", None)
    if make is None:
        return plain_step(cell, precision, embedding)
    return make(precision, embedding, upper)
