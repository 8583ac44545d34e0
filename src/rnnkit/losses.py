"""Losses and the units users compare: nats per token, bits per character, perplexity."""

from __future__ import annotations

import math

from torch import Tensor, nn

from .data.batching import IGNORE


def sequence_nll(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross entropy over (B, T, V) logits and (B, T) targets; IGNORE targets add nothing."""
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                       ignore_index=IGNORE, reduction=reduction)


def loss_report(total_nats: float, count: int, chars: int | None = None) -> dict:
    """{"loss" (nats/token), "bpc", "perplexity" (per token), "tokens", "chars"} from a summed
    loss over ``count`` tokens that stand for ``chars`` characters (default: one each). Bits
    per character compare models whose tokens differ (characters, bytes, words, BPE)."""
    chars = count if chars is None else chars
    loss = total_nats / max(count, 1)
    return {"loss": loss, "bpc": total_nats / max(chars, 1) / math.log(2),
            "perplexity": math.exp(min(loss, 700.0)), "tokens": count, "chars": chars}
