"""SequenceClassifier (many-to-one): encoder -> pooling over the valid steps -> MLP head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..layers.mlp import MLPHead
from ..layers.recurrent import step_mask
from .encoder import EncoderConfig, SequenceEncoder

POOLS = ("last", "mean", "max")


@dataclass
class ClassifierConfig(EncoderConfig):
    num_classes: int = 0
    """Labels, filled in from the data."""
    pool: Literal["last", "mean", "max"] = "last"
    """Classifier: summary of the sequence. last: the final state (both directions' when
    bidirectional); mean or max over the valid steps."""
    mlp_layers: int = 0
    """Extra hidden layers (GELU) between the RNN and the output layer."""


class SequenceClassifier(nn.Module):
    """``logits = model(tokens, lengths)``: tokens (B, S), lengths (B,) -> logits (B, C)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        assert config.vocab_size > 0 and config.num_classes > 0, "sizes come from the data"
        self.config = c = config
        self.encoder = SequenceEncoder(c)
        self.head = MLPHead(self.encoder.output_size, c.num_classes, c.mlp_layers,
                            dropout=c.dropout)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.encoder(tokens, lengths)
        return self.head(pool(out, lengths, self.config.pool, self.config.bidirectional))


def pool(out: Tensor, lengths: Tensor, how: str, bidirectional: bool) -> Tensor:
    """(B, S, F) outputs -> (B, F), looking only at each row's valid steps."""
    rows = torch.arange(out.shape[0], device=out.device)
    last = lengths.to(out.device) - 1
    if how == "last":
        if not bidirectional:
            return out[rows, last]
        # the backward direction ends its reading at step 0, the forward one at length - 1
        half = out.shape[-1] // 2
        return torch.cat([out[rows, last, :half], out[:, 0, half:]], dim=-1)
    mask = step_mask(lengths.to(out.device), out.shape[1])[..., None]
    if how == "mean":
        return (out * mask).sum(1) / mask.sum(1)
    return out.masked_fill(~mask, float("-inf")).amax(1)
