"""SequenceEncoder: embedding -> stacked (optionally bidirectional) RNN over padded batches.

The shared front end of the seq2seq, classifier and tagger models. Padding is handled in one
way everywhere: a (B,) ``lengths`` tensor, id 0 (<pad>) in the padded positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..layers.bidirectional import BiRecurrent
from ..layers.cells import State, init_forget_bias
from ..layers.recurrent import Recurrent
from .checks import check_config

PAD = 0  # the id of <pad> in every vocabulary of the pair tasks


@dataclass
class EncoderConfig:
    vocab_size: int = 0
    """V, source vocabulary size, filled in from the data."""
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    """Recurrent cell type."""
    embed_size: int = 64
    """E, size of the learned token embedding."""
    hidden_size: int = 256
    """H, units per recurrent layer and direction."""
    num_layers: int = 2
    """L, stacked recurrent layers."""
    dropout: float = 0.0
    """Dropout between recurrent layers and before the output layers."""
    bidirectional: bool = True
    """Pair tasks: read the input in both directions (the encoder sees the future)."""
    forget_bias: float = 0.0
    """LSTM only: start the forget gates' bias at this value (1.0 as in Jozefowicz et al.
    2015, so cells remember by default); 0 keeps torch's initialisation."""

    def __post_init__(self):
        check_config(self, ("embed_size", "hidden_size", "num_layers"))


class SequenceEncoder(nn.Module):
    """``out, state = encoder(tokens, lengths)``.

    Shape:
        tokens (B, S) int64 padded with 0, lengths (B,). out (B, S, output_size) with zeros
        at padding; state a tuple of (L, B, H) tensors, or (2L, B, H) when bidirectional in
        torch's order (layer 0 forward, layer 0 backward, layer 1 forward, ...).
    """

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.embed_size, padding_idx=PAD)
        rnn_cls = BiRecurrent if c.bidirectional else Recurrent
        self.rnn = rnn_cls(c.cell, c.embed_size, c.hidden_size, c.num_layers, c.dropout)
        self.bidirectional = c.bidirectional
        self.output_size = c.hidden_size * (2 if c.bidirectional else 1)
        if c.cell == "lstm" and c.forget_bias:
            init_forget_bias(self.rnn, c.forget_bias)

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, State]:
        return self.rnn(self.embed(tokens), None, lengths)


def step_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, steps) bool, True at the real (unpadded) steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]
