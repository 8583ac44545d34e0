"""Losses and the units users compare: nats per character, bits per character, perplexity."""

from __future__ import annotations

import math

from torch import Tensor, nn

from ..data.batching import IGNORE


def sequence_nll(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross entropy over (B, T, V) logits and (B, T) targets; IGNORE targets add nothing."""
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                       ignore_index=IGNORE, reduction=reduction)


def loss_report(total_nats: float, count: int) -> dict:
    """{"loss" (nats/char), "bpc", "perplexity", "chars"} from a summed loss and its count."""
    loss = total_nats / max(count, 1)
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(min(loss, 700.0)),
            "chars": count}
