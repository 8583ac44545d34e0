"""RecurrentStep: one time step of a Recurrent stack, for decoding (sampling, beam search).

``rnn(x[:, None], state)`` runs a whole sequence kernel for a single step: on CPU, torch's LSTM
repacks its weights and sets up a sequence on every call, which costs more than the step's
arithmetic at batch 1 (about 7 ms for a 2x512 LSTM). RecurrentStep computes the same function
with a few matrix products per layer:

- with an embedding in front, layer 0's input projection of every vocabulary entry (embedding
  -> W_ih, plus the biases) is a (V, G*H) table built once, so reading a token is a row lookup;
- every other layer multiplies [x, h] by its stacked [W_ih; W_hh] at once;
- weights are transposed, concatenated and optionally converted once, when the step is made.

``precision``: "fp32" computes what the layer computes (up to float rounding). "bf16" multiplies
in bfloat16, which CPUs with AVX-512 BF16 run about twice as fast at batch 64 (and is the
precision a model trained in under bf16 autocast). "int8" multiplies by int8 weights (one
scale per output row) with activations quantized per row on the fly (torch's dynamic-quantized
linear, fbgemm/x86 kernels): the fastest on CPU, at a small likelihood cost that
``benchmarks/bench_sampling.py`` measures.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .cells import GRUCell, LSTMCell, RNNCell
from .recurrent import Recurrent

PRECISIONS = ("fp32", "bf16", "int8")
# torch.ops' Python wrapper scans the arguments for fake script objects on every call (~20 us,
# a tenth of a batch-1 step); its C++ callable, where this torch exposes it, skips that scan
_LINEAR_INT8 = getattr(getattr(torch.ops.quantized, "linear_dynamic", None), "default", None)
_LINEAR_INT8 = getattr(_LINEAR_INT8, "_op", _LINEAR_INT8)


class Affine:
    """y = x @ W^T + b in a precision; x (B, D) float32 -> y (B, N) float32. The weights are
    copied (transposed, converted or quantized) when it is made."""

    def __init__(self, weight: Tensor, bias: Tensor | None, precision: str):
        self.precision = precision
        bias = torch.zeros(weight.shape[0], device=weight.device) if bias is None else bias
        if precision == "int8":
            self.packed = _int8_pack(weight.float(), bias.float())
        else:
            dtype = torch.bfloat16 if precision == "bf16" else weight.dtype
            self.weight_t = weight.t().contiguous().to(dtype)  # (D, N): x @ W^T as one addmm
            self.bias = bias.to(dtype)

    def __call__(self, x: Tensor) -> Tensor:
        if self.precision == "int8":
            return _LINEAR_INT8(x, self.packed, False)
        if self.precision == "bf16":
            return torch.addmm(self.bias, x.to(torch.bfloat16), self.weight_t).float()
        return torch.addmm(self.bias, x, self.weight_t)


def _int8_pack(weight: Tensor, bias: Tensor):
    # one scale per output row keeps each gate's rows at full int8 resolution
    scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
    zero = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # torch marks quantized tensors as deprecated; its dynamic int8 kernel is still the
        # fastest CPU path for these shapes (4-5x fp32 at batch 64), and int8_available()
        # reports when a torch no longer has it
        warnings.simplefilter("ignore", UserWarning)
        q = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, bias)


def int8_available(device: torch.device | str = "cpu") -> bool:
    """Whether this torch has the dynamic int8 linear kernel for ``device`` (CPU only)."""
    engines = torch.backends.quantized.supported_engines
    return (torch.device(device).type == "cpu" and _LINEAR_INT8 is not None
            and any(e in engines for e in ("x86", "fbgemm")))


def _tanh_(x: Tensor, doubled: bool = False) -> Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1, in place: torch's CPU tanh takes several times as long
    as its sigmoid on these sizes, so even four cheap ops beat it. ``doubled``: x already
    holds 2x."""
    return (x if doubled else x.mul_(2)).sigmoid_().mul_(2).sub_(1)


class RecurrentStep:
    """``out, state = step(inputs, state)`` for a ``Recurrent`` stack, one step, no dropout,
    no gradient.

    Args:
        rnn: the stack (LSTM, GRU or RNN cells).
        embedding: the embedding that feeds the stack, if any; then ``inputs`` are token ids
            (B,) int64, else features (B, D).
        precision: "fp32", "bf16" or "int8" (see the module docstring).

    Shape: state is the stack's own, a tuple of (L, B, H) tensors (None: zeros); out (B, H)
    float32, the last layer's output. ``out`` is a view of the new state's top h (no copy per
    step): change it in place and the state changes too.
    """

    def __init__(self, rnn: Recurrent, embedding: nn.Embedding | None = None,
                 precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        first = rnn.cells[0]
        if precision == "int8" and not int8_available(first.weight_ih.device):
            raise ValueError("int8 decoding needs a CPU model and torch's fbgemm/x86 kernels")
        self.cell_type = type(first)
        if self.cell_type not in (LSTMCell, GRUCell, RNNCell):
            raise ValueError(f"no single-step path for {self.cell_type.__name__}")
        self.hidden_size, self.state_count = rnn.hidden_size, rnn.state_count
        with torch.no_grad():
            self._build(rnn, embedding, precision)

    def _build(self, rnn: Recurrent, embedding: nn.Embedding | None, precision: str) -> None:
        first = rnn.cells[0]
        # LSTM: the candidate gate's rows are doubled here, so the one sigmoid over all gates
        # gives sigmoid(2g) and tanh(g) = 2 sigmoid(2g) - 1 costs two cheap ops, not a tanh
        self.rows = torch.ones(first.weight_hh.shape[0], 1, device=first.weight_hh.device)
        if self.cell_type is LSTMCell:
            self.rows[2 * self.hidden_size:3 * self.hidden_size] = 2
        # GRU's candidate gate scales only the hidden part by r, so its biases stay apart
        merge = self.cell_type is not GRUCell and first.bias_hh is not None
        bias = first.bias_ih + first.bias_hh if merge else first.bias_ih
        self.table = None
        if embedding is not None:
            table = nn.functional.linear(embedding.weight, first.weight_ih, bias)
            self.table = (table * self.rows.T).float()
        else:
            self.first_ih = self._affine(first.weight_ih, bias, precision)
        self.first_hh = self._affine(first.weight_hh, None if merge else first.bias_hh,
                                     precision)
        self.upper = [self._upper_layer(c, precision) for c in rnn.cells[1:]]

    def _affine(self, weight: Tensor, bias: Tensor | None, precision: str) -> Affine:
        return Affine(weight * self.rows, None if bias is None else bias * self.rows[:, 0],
                      precision)

    def _upper_layer(self, cell, precision: str):
        if self.cell_type is GRUCell:
            return (self._affine(cell.weight_ih, cell.bias_ih, precision),
                    self._affine(cell.weight_hh, cell.bias_hh, precision))
        bias = None if cell.bias_ih is None else cell.bias_ih + cell.bias_hh
        return self._affine(torch.cat([cell.weight_ih, cell.weight_hh], dim=1), bias, precision)

    @torch.no_grad()  # decoding only: the in-place writes below have no gradient
    def __call__(self, inputs: Tensor, state: tuple[Tensor, ...] | None = None):
        if state is None:
            zeros = torch.zeros(len(self.upper) + 1, inputs.shape[0], self.hidden_size,
                                device=inputs.device)
            state = (zeros,) * self.state_count
        old = tuple(s.float() for s in state)
        # each layer writes its new state straight into these: no stack, no copy per step
        new = tuple(torch.empty_like(s) for s in old)
        if self.table is not None:
            gi = nn.functional.embedding(inputs, self.table)
        else:
            gi = self.first_ih(inputs.float())
        x = self._cell(gi, self.first_hh(old[0][0]), old, new, 0)
        for layer, upper in enumerate(self.upper, 1):
            if self.cell_type is GRUCell:
                x = self._cell(upper[0](x), upper[1](old[0][layer]), old, new, layer)
            else:
                x = self._cell(upper(torch.cat([x, old[0][layer]], dim=1)), None, old, new,
                               layer)
        return x, new

    def _cell(self, gi: Tensor, gh: Tensor | None, old: tuple[Tensor, ...],
              new: tuple[Tensor, ...], layer: int) -> Tensor:
        """One cell update of ``layer`` from input-side gates ``gi`` and hidden-side gates
        ``gh`` (None: already summed into gi), writing its state into ``new``; returns h.
        Gate order as in torch: i, f, g, o / r, z, n. ``gi`` and ``gh`` are this step's own
        tensors, so they are overwritten in place: at batch 64 the allocations and extra
        passes cost about a tenth of a step."""
        H, h = self.hidden_size, new[0][layer]
        if self.cell_type is LSTMCell:
            act = (gi if gh is None else gi.add_(gh)).sigmoid_()
            g = act[:, 2 * H:3 * H].mul_(2).sub_(1)  # tanh(g): its rows were doubled in _build
            c = torch.mul(act[:, H:2 * H], old[1][layer], out=new[1][layer])
            c.addcmul_(act[:, :H], g)
            return torch.mul(act[:, 3 * H:], _tanh_(c * 2, doubled=True), out=h)
        if self.cell_type is GRUCell:
            rz = gi[:, :2 * H].add_(gh[:, :2 * H]).sigmoid_()
            n = _tanh_(gi[:, 2 * H:].addcmul_(rz[:, :H], gh[:, 2 * H:]))
            return torch.lerp(n, old[0][layer], rz[:, H:], out=h)  # (1 - z) * n + z * h
        return _tanh_(torch.add(gi, gh, out=h) if gh is not None else h.copy_(gi))
