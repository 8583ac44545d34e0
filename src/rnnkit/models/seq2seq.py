"""Seq2Seq (many-to-many, read everything then write): encoder -> bridge -> decoder (+ attention).

The encoder reads the whole source; its final state, through a learned bridge when it is
bidirectional, starts the decoder, which writes the target one token at a time, reading its
own previous token (teacher forcing in training: the true one).

Attention follows Luong et al. 2015's global attention: the decoder's output at step t queries
the encoder outputs, and tanh(W_c [h_t; context_t]) feeds the softmax layer. The score is
Luong's bilinear ("dot") or Bahdanau et al. 2015's additive one. Because the query is the
decoder's own output (no input feeding), teacher-forced training runs the decoder over the
whole target in one fused kernel call and attends for all steps at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from ..layers.attention import Attention
from ..layers.cells import State
from ..layers.mlp import MLPHead
from ..layers.recurrent import Recurrent, step_mask
from ..layers.recurrent_step import RecurrentStep
from .encoder import PAD, EncoderConfig, SequenceEncoder


@dataclass
class Seq2SeqConfig(EncoderConfig):
    tgt_vocab_size: int = 0
    """Target vocabulary size, filled in from the data."""
    attention: Literal["none", "dot", "additive"] = "dot"
    """Seq2seq: attention over the encoder outputs; none: the decoder sees only the
    encoder's final state (Sutskever et al. 2014)."""


class DecoderState(NamedTuple):
    """What the decoder carries between steps."""
    rnn: State  # tuple of (L, B, H)
    memory: Tensor  # (B, S, K) encoder outputs
    mask: Tensor  # (B, S) True at real source steps
    keys: Tensor | None  # the attention's projection of the memory, computed once
    source: Tensor  # (B,) the example each row decodes: rows with equal ids share a memory


class Seq2Seq(nn.Module):
    """``logits = model(src, src_lengths, tgt_in)``; step by step: ``encode`` then ``decode``,
    ``step`` or ``stepper()`` (the ``ConditionalDecoder`` protocol of models/protocols.py).

    Shape: src (B, S) padded with 0, src_lengths (B,), tgt_in (B, T) = <bos> + target;
    logits (B, T, V_tgt).
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        assert config.vocab_size > 0 and config.tgt_vocab_size > 0, "sizes come from the data"
        self.config = c = config
        self.encoder = SequenceEncoder(c)
        H, K = c.hidden_size, self.encoder.output_size
        self.decoder = Recurrent(c.cell, c.embed_size, H, c.num_layers, c.dropout)
        # a bidirectional encoder ends each layer with two states: merge them into one
        self.bridge = nn.ModuleList(nn.Linear(2 * H, H) for _ in range(
            self.decoder.state_count)) if c.bidirectional else None
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.embed_size, padding_idx=PAD)
        self.attention = Attention(c.attention, H, K) if c.attention != "none" else None
        self.combine = nn.Linear(H + K, H) if self.attention is not None else None
        self.head = MLPHead(H, c.tgt_vocab_size, dropout=c.dropout)

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        memory, state = self.encoder(src, lengths)
        if self.bridge is not None:
            L, B, H = self.config.num_layers, src.shape[0], self.config.hidden_size
            # (2L, B, H), layer-major -> (L, B, 2H): both directions of each layer side by side
            state = tuple(torch.tanh(lin(s.view(L, 2, B, H).permute(0, 2, 1, 3)
                                         .reshape(L, B, 2 * H)))
                          for lin, s in zip(self.bridge, state))
        keys = self.attention.keys(memory) if self.attention is not None else None
        return DecoderState(state, memory, step_mask(lengths.to(src.device), src.shape[1]),
                            keys, torch.arange(src.shape[0], device=src.device))

    def decode(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """tokens (B, T) -> logits (B, T, V_tgt) and the state after them."""
        out, rnn = self.decoder(self.tgt_embed(tokens), state.rnn)
        return self._readout(out, state), state._replace(rnn=rnn)

    def _readout(self, out: Tensor, state: DecoderState) -> Tensor:
        """Decoder outputs (B, T, H) -> logits (B, T, V_tgt), attending to the memory."""
        if self.attention is not None:
            context, _ = self.attention(out, state.memory, state.mask, state.keys)
            out = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        return self.head(out)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(tgt_in, self.encode(src, src_lengths))[0]

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One step through the sequence kernel: tokens (N,) -> log-probs (N, V_tgt)."""
        logits, state = self.decode(tokens[:, None], state)
        return logits[:, -1].float().log_softmax(-1), state

    def stepper(self, precision: str = "fp32") -> Callable[[Tensor, DecoderState],
                                                          tuple[Tensor, DecoderState]]:
        """``step`` without the sequence kernel's cost per call: the decoder runs through a
        RecurrentStep (layers/recurrent_step.py), made once per decoding, without dropout."""
        rnn = RecurrentStep(self.decoder, self.tgt_embed, precision)

        @torch.no_grad()
        def step(tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
            out, new = rnn(tokens, state.rnn)
            logits = self._readout(out[:, None], state)[:, -1]
            return logits.float().log_softmax(-1), state._replace(rnn=new)
        return step

    @staticmethod
    def reorder_state(state: DecoderState, index: Tensor) -> DecoderState:
        """Rows ``index`` of the state (beam search keeps, drops and repeats hypotheses)."""
        rnn = tuple(s.index_select(1, index) for s in state.rnn)
        source = state.source.index_select(0, index)
        if torch.equal(source, state.source):
            # beams moved within their own example: every row still reads the same memory,
            # so the (large) memory need not be copied
            return state._replace(rnn=rnn)
        rows = lambda t: t.index_select(0, index) if t is not None else None  # noqa: E731
        return DecoderState(rnn, rows(state.memory), rows(state.mask), rows(state.keys), source)
