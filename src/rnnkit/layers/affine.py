"""Affine maps in a decoding precision, for the single-step paths of recurrent_step.py.

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
from torch import Tensor

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
            # (D, N): x @ W^T as one addmm. Copies, never views of the parameters: training
            # may go on while a step made from them is in use
            self.weight_t = weight.t().to(dtype, memory_format=torch.contiguous_format,
                                          copy=True)
            self.bias = bias.to(dtype, copy=True)

    def __call__(self, x: Tensor) -> Tensor:
        if self.precision == "int8":
            # reduce_range (7-bit activations), as torch's own x86 dynamic quantization: the
            # kernel sums pairs of u8 x s8 products in int16, which saturates at full range
            # on CPUs without VNNI (errors as large as the outputs themselves)
            return _LINEAR_INT8(x, self.packed, True)
        if self.precision == "bf16":
            return torch.addmm(self.bias, x.to(torch.bfloat16), self.weight_t).float()
        return torch.addmm(self.bias, x, self.weight_t)


class Diagonal:
    """y = x * w + b for a (N,) weight vector (a diagonal matrix), x (B, N) -> y (B, N). An
    elementwise product costs next to nothing, so it stays in float32 in every precision."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.weight = weight.detach().float().clone()
        self.bias = None if bias is None else bias.detach().float().clone()

    def __call__(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def product(weight: Tensor, bias: Tensor | None, precision: str) -> Affine | Diagonal:
    """The map a cell's weight stands for: a (N, D) matrix is an ``Affine`` in ``precision``,
    a (N,) vector a ``Diagonal`` (see ``linear``)."""
    return Diagonal(weight, bias) if weight.dim() == 1 else Affine(weight, bias, precision)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``nn.functional.linear`` for a (N, D) weight; for a (N,) weight, the diagonal map
    x * weight + bias (a cell's recurrent weight may be a diagonal)."""
    if weight.dim() == 1:
        return x * weight if bias is None else torch.addcmul(bias, x, weight)
    return torch.nn.functional.linear(x, weight, bias)


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
