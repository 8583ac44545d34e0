"""Scheduled sampling (Bengio et al. 2015): train on inputs that are sometimes the model's own.

At every position t > 0 of a window, the input is the true token x_t with probability eps
(the teacher-forcing probability), otherwise the model's own prediction of that token, drawn
from its softmax (or its argmax) with no gradient through the choice. Position 0 is always
data: the start token in lines mode, and in stream mode the true token that opens the window;
``skip`` extends this to the first N positions, for sequences that open with a condition the
model must not rewrite (the digits of "4217=four thousand ...", a source sentence).

Two implementations of the same idea, for any ``model(tokens, state) -> (logits, state)``:

- ``sequential_forward``: exact. One step at a time, so each fed-back token is predicted from
  the mixed history the model has actually read. T small steps: slow on long windows.
- ``parallel_forward``: Duckworth et al. 2019. A no-grad teacher-forced pass predicts every
  position at once, the inputs are mixed per position, and a second pass over the mixed inputs
  (through the fused kernels) gives the logits that are trained. The fed-back tokens are
  predicted from the true history, not the mixed one: one round of the paper's multi-pass
  scheme, cheaper and close to the sequential version when eps is near 1.

With eps = 1 both are teacher forcing exactly; with eps = 0 the sequential one is free-running
decoding. The random choices use torch's global generator, so a checkpoint's RNG state makes
a resumed run repeat them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pick_tokens(logits: Tensor, argmax: bool) -> Tensor:
    """The model's own tokens from (..., V) logits: a softmax sample, or the argmax."""
    if argmax:
        return logits.argmax(dim=-1)
    probs = logits.detach().float().softmax(dim=-1)
    # a non-finite row (a diverging step) gets a uniform draw: the step's loss is non-finite
    # anyway, and the trainer skips it instead of crashing here
    bad = ~torch.isfinite(probs).all(dim=-1, keepdim=True)
    probs = torch.where(bad, torch.ones_like(probs), probs)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(probs.shape[:-1])


def keep_mask(shape, eps: float, device, skip: int = 1) -> Tensor:
    """True where the input stays the true token: probability eps, always in the first
    ``skip`` positions (at least the first)."""
    keep = torch.rand(shape, device=device) < eps
    keep[:, :max(skip, 1)] = True
    return keep


def parallel_forward(model, x: Tensor, state, eps: float, argmax: bool = False, skip: int = 1):
    """Two-pass scheduled sampling over x (B, T). Returns the second pass's (logits, state)."""
    if eps >= 1.0:
        return model(x, state)
    with torch.no_grad():
        logits, _ = model(x, state)
    # predictions of positions 1..T-1 come from the logits at 0..T-2
    own = torch.cat([x[:, :1], pick_tokens(logits[:, :-1], argmax)], dim=1)
    mixed = torch.where(keep_mask(x.shape, eps, x.device, skip), x, own)
    return model(mixed, state)


def sequential_forward(model, x: Tensor, state, eps: float, argmax: bool = False,
                       skip: int = 1):
    """Step-by-step scheduled sampling over x (B, T). Returns (logits (B, T, V), state)."""
    if eps >= 1.0:  # teacher forcing: one fused pass, not T single steps
        return model(x, state)
    keep = keep_mask(x.shape, eps, x.device, skip)
    token, outputs = x[:, :1], []
    for t in range(x.shape[1]):
        logits, state = model(token, state)
        outputs.append(logits)
        if t + 1 < x.shape[1]:
            own = pick_tokens(logits[:, -1], argmax)[:, None]
            token = torch.where(keep[:, t + 1:t + 2], x[:, t + 1:t + 2], own)
    return torch.cat(outputs, dim=1), state


IMPLEMENTATIONS = {"parallel": parallel_forward, "sequential": sequential_forward}
