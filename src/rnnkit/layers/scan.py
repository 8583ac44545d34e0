"""The linear recurrence h_t = a_t * h_{t-1} + b_t over a whole sequence at once.

The recurrence of minGRU, minLSTM and the LRU (parallel_cells.py): a_t and b_t depend on the
input alone, never on h, so all T steps can be computed together instead of one after the
other. Two ways, both exact up to float32 rounding:

- ``log_scan``, for positive b (minGRU, minLSTM), in log space after Heinsen 2023 ("Efficient
  Parallelization of a Ubiquitous Sequential Computation"): with a*_t = sum_{s<=t} log a_s,

      h_t = exp(a*_t) h_0 + exp(a*_t + logcumsumexp_{s<=t}(log b_s - a*_s)),

  a cumulative sum and a cumulative log-sum-exp, each one kernel over time.
- ``linear_scan``, for any a and b, complex included (the LRU): in linear space, by
  Hillis & Steele's doubling (log2(chunk) passes, each combining step t with step t - 2^k).
  The LRU takes this one: in complex float32 the log-space formula loses about 2e-5 of h
  (relative) to the rounding of a*_t's phase and decay, where this one errs no more than the
  step-by-step loop does.

Both share two choices:

- h_0 stays out of the logs (the first term above, where the paper takes log h_0 as the first
  term of the sum): the state carried in may be any number, zero (the default state) or
  negative (a state made by tanh, as a seq2seq bridge's).
- Time is cut into chunks of ``CHUNK`` steps. In log space a*_t and the log-sum-exp grow
  with the steps they span, and adding them loses float32 digits in proportion (about
  |a*_t| * 6e-8 relative error in h): short chunks bound that. Every chunk is scanned from a
  zero start, all chunks at once; the state before each chunk is then carried across the
  chunk ends, one small (B, H) step per chunk, and each chunk adds its start state times its
  own decay. Memory stays linear in T, the arithmetic per chunk the same however long the
  sequence.

Both run in float32 or wider (complex64 for a complex recurrence) with autocast off, and give
h back in b's dtype. ``sequential_scan`` is the step-by-step reference they are tested against.

Shapes: B batch, T time, H channels (each channel its own recurrence), K chunks, C steps per
chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 64  # steps per chunk: |a*| over 64 steps of a typical gate stays below about 100
# log 0, finite: logcumsumexp's backward turns an -inf input into nan
NEG = -1e30


def log_scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None,
             mask: Tensor | None = None, chunk: int = CHUNK) -> Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 0 .. T-1, from h_{-1} = h0, in log space.

    Args:
        log_a: (B, T, H) log a_t <= 0 (0 < a_t <= 1).
        log_b: (B, T, H) log b_t (b_t > 0); ``NEG`` stands for b_t = 0.
        h0: (B, H) state before step 0, any sign; None: zeros.
        mask: (B, T) bool, False at padding: there a_t = 1 and b_t = 0, so the state passes
            through unchanged (the caller zeroes its outputs there).
        chunk: steps per chunk (module docstring).

    Returns:
        h (B, T, H) in log_b's dtype; h[:, -1] is the final state, the one after each row's
        last unmasked step.
    """
    dtype = log_b.dtype
    with torch.autocast(log_b.device.type, enabled=False):
        log_a, log_b = at_least_fp32(log_a), at_least_fp32(log_b)
        if mask is not None:
            log_a, log_b = _where(mask, log_a, 0), _where(mask, log_b, NEG)
        T = log_b.shape[1]
        log_a, log_b = _chunks(log_a, chunk, 0), _chunks(log_b, chunk, NEG)
        a_star = log_a.cumsum(2)  # (B, K, C, H), restarting in every chunk
        h = (a_star + torch.logcumsumexp(log_b - a_star, dim=2)).exp()  # from zero
        return _join(h, a_star.exp(), h0, T).to(dtype)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, mask: Tensor | None = None,
                chunk: int = CHUNK) -> Tensor:
    """``log_scan`` in linear space, for any a and b (real or complex; |a| <= 1 keeps it
    stable): h_t = a_t * h_{t-1} + b_t from h_{-1} = h0 (None: zeros).

    Shape: a and b (B, T, H) (a may broadcast against b), h0 (B, H), mask (B, T) bool (False:
    a = 1, b = 0). Returns h (B, T, H) in b's dtype; h[:, -1] is the final state.
    """
    dtype = b.dtype
    with torch.autocast(b.device.type, enabled=False):
        a, b = at_least_fp32(a).expand_as(b), at_least_fp32(b)
        if mask is not None:
            a, b = _where(mask, a, 1), _where(mask, b, 0)
        T = b.shape[1]
        a, b = _chunks(a, chunk, 1), _chunks(b, chunk, 0)
        # after the pass with shift s, step t holds the composition of steps t-2s+1 .. t:
        # its product of a, and its h from a zero start
        shift = 1
        while shift < a.shape[2]:
            b = torch.cat([b[:, :, :shift], torch.addcmul(b[:, :, shift:], a[:, :, shift:],
                                                          b[:, :, :-shift])], dim=2)
            a = torch.cat([a[:, :, :shift], a[:, :, shift:] * a[:, :, :-shift]], dim=2)
            shift *= 2
        return _join(b, a, h0, T).to(dtype)


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


def _chunks(x: Tensor, chunk: int, fill: float) -> Tensor:
    """(B, T, H) -> (B, K, C, H), the last chunk filled up with ``fill`` (an identity step:
    a = 1, b = 0, or their logs)."""
    B, T, H = x.shape
    C = min(chunk, T)
    K = -(-T // C)
    if K * C > T:
        x = torch.cat([x, x.new_full((B, K * C - T, H), fill)], dim=1)
    return x.view(B, K, C, H)


def _join(h: Tensor, decay: Tensor, h0: Tensor | None, steps: int) -> Tensor:
    """(B, T, H) states from the chunks' own scans ``h`` (from zero) and ``decay`` (products
    of a up to each step), both (B, K, C, H): carry the state across the chunk ends, one
    chunk at a time, and add each chunk's start state times its decay."""
    B, K, C, H = h.shape
    if K > 1 or h0 is not None:
        start = h.new_zeros(B, H) if h0 is None else h0.to(h.dtype)
        starts = [start]
        for k in range(K - 1):
            start = decay[:, k, -1] * start + h[:, k, -1]
            starts.append(start)
        h = h + decay * torch.stack(starts, dim=1)[:, :, None]
    return h.reshape(B, K * C, H)[:, :steps]


def _where(mask: Tensor, x: Tensor, fill: float) -> Tensor:
    # torch.where, not arithmetic: whatever the padding holds (even inf) sends no gradient
    return torch.where(mask[..., None], x, fill)


def at_least_fp32(x: Tensor) -> Tensor:
    """x in float32, unless it is float64 or complex already (kept as it is)."""
    if x.dtype in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        return x
    return x.float()
