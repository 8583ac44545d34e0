"""The linear recurrence h_t = a_t * h_{t-1} + b_t over a whole sequence at once.

The recurrence of minGRU, minLSTM and the LRU (parallel_cells.py): a_t and b_t depend on the
input alone, never on h, so all T steps can be computed together instead of one after the
other. ``linear_scan`` does it for any a and b, real or complex, by Hillis & Steele's
doubling: log2(chunk) passes, each combining step t with step t - 2^k.

Three choices:

- **Linear space.** Every combination multiplies by products of a (|a| <= 1) and adds; none
  divides, so nothing overflows however long the sequence, and h errs no more than the
  step-by-step loop does. The log-space form of Heinsen 2023 (the minGRU paper's) reaches
  the same h through exp, log and a cumulative log-sum-exp, whose CPU kernel is scalar: it
  cost a minGRU layer several times this scan, and rounded h about 25 times more in float32.
- **Chunks.** Time is cut into chunks of ``CHUNK`` steps, each scanned from a zero start, all
  chunks at once; the state before each chunk is then carried across the chunk ends, one
  small (B, H) step per chunk, and each chunk adds its start state times its own decay.
  Memory stays linear in T and the passes over the data at log2(CHUNK), however long the
  sequence.
- **Its own backward.** The gradient of a linear recurrence is the same recurrence run
  backwards: g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}, then dL/db_t = g_t and dL/da_t =
  g_t conj(h_{t-1}). So the backward is one more scan, and only a and h are kept for it
  (autograd through the doubling would keep every pass).

It runs in float32 or wider (complex64 for a complex recurrence) with autocast off, and gives
h back in b's dtype. The state carried in, h0, may be any number (zero, negative, complex).
``sequential_scan`` is the step-by-step reference it is tested against.

Shapes: B batch, T time, H channels (each channel its own recurrence), K chunks, C steps per
chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

CHUNK = 64  # steps per chunk: 6 doubling passes, and T / 64 carries between chunks


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, mask: Tensor | None = None,
                chunk: int = CHUNK) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 0 .. T-1, from h_{-1} = h0.

    Args:
        a: (B, T, H), or anything that broadcasts to b (the LRU's (H,) lambda); |a| <= 1
            keeps h bounded. Real or complex.
        b: (B, T, H).
        h0: (B, H) state before step 0, any value; None: zeros.
        mask: (B, T) bool, False at padding: there a_t = 1 and b_t = 0, so the state passes
            through unchanged (the caller zeroes its outputs there).
        chunk: steps per chunk (module docstring).

    Returns:
        h (B, T, H) in b's dtype; h[:, -1] is the final state, the one after each row's last
        unmasked step.
    """
    dtype = b.dtype
    with torch.autocast(b.device.type, enabled=False):
        a, b = at_least_fp32(a).expand_as(b), at_least_fp32(b)
        if mask is not None:
            a, b = _where(mask, a, 1), _where(mask, b, 0)
        h0 = None if h0 is None else h0.to(b.dtype)
        return _LinearScan.apply(a, b, h0, chunk).to(dtype)


class _LinearScan(torch.autograd.Function):
    """``linear_scan`` with the backward of the module docstring. a and b (B, T, H) of one
    dtype, h0 (B, H) or None (zeros)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None, chunk: int) -> Tensor:
        h = _scan(a, b, h0, chunk)
        ctx.chunk = chunk
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor):
        a, h, h0 = ctx.saved_tensors
        # g_t = grad_h_t + conj(a_{t+1}) g_{t+1}: the same scan, backwards in time
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1).conj()
        g = _scan(a_next.flip(1), grad_h.flip(1), None, ctx.chunk).flip(1)
        first = torch.zeros_like(h[:, :1]) if h0 is None else h0[:, None]
        h_before = torch.cat([first, h[:, :-1]], dim=1)
        grad_h0 = None if h0 is None else g[:, 0] * a[:, 0].conj()
        return g * h_before.conj(), g, grad_h0, None


def _scan(a: Tensor, b: Tensor, h0: Tensor | None, chunk: int) -> Tensor:
    """The forward computation, no graph: doubling within chunks, then the carry across."""
    B, T, H = b.shape
    C = min(chunk, T)
    K = -(-T // C)
    a, b = _chunks(a, K, C, 1), _chunks(b, K, C, 0)  # fresh (B, K, C, H) tensors
    # after the pass with shift s, step t holds the composition of steps t-2s+1 .. t: its
    # product of a, and its h from a zero start
    shift = 1
    while shift < C:
        b[:, :, shift:] += a[:, :, shift:] * b[:, :, :-shift]
        a[:, :, shift:] = a[:, :, shift:] * a[:, :, :-shift]
        shift *= 2
    if K > 1 or h0 is not None:
        start = b.new_zeros(B, H) if h0 is None else h0
        starts = [start]
        for k in range(K - 1):
            start = a[:, k, -1] * start + b[:, k, -1]
            starts.append(start)
        b += a * torch.stack(starts, dim=1)[:, :, None]
    return b.view(B, K * C, H)[:, :T]


def _chunks(x: Tensor, K: int, C: int, fill: float) -> Tensor:
    """(B, T, H) -> a new (B, K, C, H) tensor, the last chunk filled up with ``fill`` (an
    identity step: a = 1, b = 0)."""
    B, T, H = x.shape
    out = x.new_full((B, K * C, H), fill) if K * C > T else x.new_empty((B, T, H))
    out[:, :T] = x
    return out.view(B, K, C, H)


def sequential_scan(a: Tensor, b: Tensor, h0: Tensor | None = None,
                    mask: Tensor | None = None) -> Tensor:
    """The reference: h_t = a_t * h_{t-1} + b_t one step at a time, in a and b's own dtype
    (T small steps: slow for long sequences). Shapes as ``linear_scan``."""
    a = a.expand_as(b)
    if mask is not None:
        a, b = _where(mask, a, 1), _where(mask, b, 0)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def _where(mask: Tensor, x: Tensor, fill: float) -> Tensor:
    # torch.where, not arithmetic: whatever the padding holds (even inf) sends no gradient
    return torch.where(mask[..., None], x, fill)


def at_least_fp32(x: Tensor) -> Tensor:
    """x in float32, unless it is float64 or complex already (kept as it is)."""
    if x.dtype in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        return x
    return x.float()
