"""One optimizer step of any task: the task's forward and loss, backward, clipping, and the
guard that keeps a non-finite loss or gradient out of the weights."""

from __future__ import annotations

import math

import torch

from ..layers.recurrent import detach_state
from .distributed import share_of_mean
from .precision import Update, autocast, scaled_update


def train_step(objective, model, optimizer, batch: dict, state, grad_clip: float,
               bf16: bool = False, eps: float = 1.0, ddp=None, scaler=None,
               ceiling: float = math.inf):
    """One step on ``batch`` (tensors on the model's device) with ``objective``'s
    ``forward(model, batch, state, eps) -> (outputs, state)`` and ``loss(outputs, batch)``
    (a task's TaskRun).

    Returns (loss, detached state, outcome). A non-finite loss or gradient norm, or a loss
    above ``ceiling`` (training diverged), skips the update (the outcome is false), so one
    bad batch never reaches the weights. ``ddp``: the
    training forward wrapped by DistributedDataParallel (``Ranks.wrap``) in a multi-process
    run; the loss is then this rank's share of the global batch's mean (``objective.loss_sum``)
    and the loss returned is that mean. ``scaler``: fp16's gradient scaler (the forward then
    runs under fp16 autocast).
    """
    with autocast(model_device(model), bf16, scaler):
        if ddp is None:
            outputs, state = objective.forward(model, batch, state, eps)
        else:
            outputs, state = ddp(batch, state, eps)
    if ddp is None:
        loss = mean = objective.loss(outputs, batch)
    else:
        loss, mean = share_of_mean(*objective.loss_sum(outputs, batch))
    outcome = apply_update(model, optimizer, loss, grad_clip, mean, scaler, ceiling)
    # detach: backprop stops at the window edge, but the state itself flows on
    return mean.item(), detach_state(state), outcome


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def apply_update(model, optimizer, loss, grad_clip: float, mean=None,
                 scaler=None, ceiling: float = math.inf) -> Update:
    """Backward, clip and step; a false outcome (weights untouched) for a non-finite loss or
    gradient, or a loss above ``ceiling``. ``mean``: the value that decides (the global loss
    of a multi-process step, the same on every rank); ``loss`` by default. ``scaler``: fp16's
    gradient scaler."""
    optimizer.zero_grad(set_to_none=True)
    value = float((loss if mean is None else mean).detach())
    if not value <= ceiling:  # nan, inf, or diverged
        return Update.BAD
    max_norm = grad_clip if grad_clip > 0 else math.inf
    if scaler is not None and scaler.is_enabled():
        return scaled_update(model, optimizer, loss, max_norm, scaler)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return Update.BAD
    optimizer.step()
    return Update.APPLIED
