"""--ema: an exponential moving average of the weights, which evaluations, samples and
checkpoints use in place of the weights the optimizer is moving.

Late in a run the optimizer's weights jitter around a minimum at the learning rate's scale;
their average over the last few hundred steps sits nearer its bottom (Polyak averaging). The
average is bias-corrected as Adam's moments are: after t updates it weights update k by
(1 - d) d^(t-k) / (1 - d^t), so a short run's average is of its own steps, not pulled toward
the initial weights. Only parameters are averaged; buffers (running statistics) are the
model's own.

In a run folder, every checkpoint's weights are the average (what its metrics measured), and
last.pt keeps the optimizer's weights and the update count beside them, so --resume is exact.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class WeightAverage:
    """The average of ``model``'s parameters with decay ``decay`` (0: off, and every method
    does nothing)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.params = list(model.parameters()) if decay else []
        self.values = [p.detach().clone() for p in self.params]

    @property
    def on(self) -> bool:
        return bool(self.decay)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights in (after an optimizer step that changed them)."""
        if not self.on:
            return
        self.updates += 1
        weight = (1 - self.decay) / (1 - self.decay ** self.updates)  # 1 at the first update
        for value, p in zip(self.values, self.params):
            value.lerp_(p, weight)

    @contextmanager
    def applied(self):
        """Inside, the model holds the average; the optimizer's weights come back after.
        Yields those weights (tensors in parameters() order, for last.pt), or None when off."""
        if not self.on:
            yield None
            return
        live = [p.detach().clone() for p in self.params]
        copy(self.params, self.values)
        try:
            yield live
        finally:
            copy(self.params, live)

    def state(self, live: list[torch.Tensor] | None) -> dict:
        """What last.pt keeps besides the average (``live``: from ``applied``)."""
        if not self.on:
            return {}
        return {"train_weights": [t.cpu() for t in live], "average_updates": self.updates}

    @torch.no_grad()
    def restore(self, trainer: dict) -> None:
        """The model holds a checkpoint's weights (the average): take them as the average and
        put the optimizer's weights from ``trainer`` (last.pt's training state) back in."""
        if not self.on:
            return
        self.values = [p.detach().clone() for p in self.params]
        copy(self.params, trainer["train_weights"])
        self.updates = trainer["average_updates"]


@torch.no_grad()
def copy(params: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    for p, value in zip(params, values):
        p.copy_(value)
