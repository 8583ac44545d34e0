"""SequenceEncoder: embedding -> stacked (optionally bidirectional) RNN over padded batches.

The shared front end of the seq2seq, classifier and tagger models. Padding is handled in one
way everywhere: a (B,) ``lengths`` tensor, id 0 (<pad>) in the padded positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..layers.bidirectional import BiRecurrent
from ..layers.cells import State, init_forget_bias
from ..layers.recurrent import Recurrent
from .recurrent_config import RecurrentConfig

PAD = 0  # the id of <pad> in every vocabulary of the pair tasks


@dataclass
class EncoderConfig(RecurrentConfig):
    bidirectional: bool = True
    """Read the input in both directions, so every step sees the future (the pair tasks'
    encoders, transcribe); --no-bidirectional reads left to right only."""


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
        if c.forget_bias:
            init_forget_bias(self.rnn, c.forget_bias)

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, State]:
        return self.rnn(self.embed(tokens), None, lengths)
