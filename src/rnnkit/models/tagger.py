"""SequenceTagger (synchronized many-to-many): one label per input step."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..layers.mlp import MLPHead
from .encoder import EncoderConfig, SequenceEncoder


@dataclass
class TaggerConfig(EncoderConfig):
    num_tags: int = 0
    """Tag labels, filled in from the data."""
    mlp_layers: int = 0
    """Extra hidden layers (GELU) between the RNN and the output layer."""


class SequenceTagger(nn.Module):
    """``logits = model(tokens, lengths)``: tokens (B, S), lengths (B,) -> logits (B, S, K).

    Unidirectional, step t's label is predicted from steps <= t; bidirectional, from the
    whole sequence (the lecture's case for reading the future).
    """

    def __init__(self, config: TaggerConfig):
        super().__init__()
        assert config.vocab_size > 0 and config.num_tags > 0, "sizes come from the data"
        self.config = c = config
        self.encoder = SequenceEncoder(c)
        self.head = MLPHead(self.encoder.output_size, c.num_tags, c.mlp_layers,
                            dropout=c.dropout)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.encoder(tokens, lengths)
        return self.head(out)
