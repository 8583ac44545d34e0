"""CharLM: embedding -> stacked RNN -> optional MLP decoder -> logits over the vocabulary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..layers.cells import State, init_forget_bias
from ..layers.recurrent import Recurrent
from ..layers.recurrent_step import Affine, RecurrentStep
from .recurrent_config import RecurrentConfig


@dataclass
class CharLMConfig(RecurrentConfig):
    mlp_layers: int = 0
    """Extra hidden layers (H units, GELU) between the RNN and the softmax layer."""
    feedback: bool = True
    """False: the model reads only the first token of a sequence and a fixed blank (id 0)
    after it, so each step's distribution cannot depend on what was sampled before: the
    lecture's independent-sampling baseline, not a useful language model."""


class CharLM(nn.Module):
    """Character-level language model.

    ``logits, state = model(tokens, state)``: tokens (B, T) int64, logits (B, T, V); ``state`` is
    the recurrent state (tuple of (L, B, H)) to carry into the next window, None for zeros.
    """

    carries_state = True  # each window's final state starts the next (models/protocols.py)

    def __init__(self, config: CharLMConfig):
        super().__init__()
        assert config.vocab_size > 0, "vocab_size must be set from the data"
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_size)
        self.rnn = Recurrent(c.cell, c.embed_size, c.hidden_size, c.num_layers, c.dropout)
        self.drop = nn.Dropout(c.dropout)
        mlp = []
        for _ in range(c.mlp_layers):
            mlp += [nn.Linear(c.hidden_size, c.hidden_size), nn.GELU()]
        self.mlp = nn.Sequential(*mlp)
        self.head = nn.Linear(c.hidden_size, c.vocab_size)
        if c.forget_bias:
            init_forget_bias(self.rnn, c.forget_bias)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if not self.config.feedback:
            tokens = self._without_feedback(tokens, first=state is None)
        x = self.embed(tokens)  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.head(self.mlp(self.drop(out))), state

    @staticmethod
    def _without_feedback(tokens: Tensor, first: bool) -> Tensor:
        blank = torch.zeros_like(tokens)
        if first:  # a sequence starts here: keep its first token, blank the rest
            blank[:, 0] = tokens[:, 0]
        return blank

    def stepper(self, precision: str = "fp32") -> Callable[[Tensor, State | None],
                                                          tuple[Tensor, State]]:
        """``logits, state = step(tokens, state)``, tokens (B,) -> logits (B, V): the function
        ``self(tokens[:, None], state)`` computes, for decoding, without the sequence kernel's
        cost per call (layers/recurrent_step.py; ``precision`` "fp32", "bf16" or "int8").
        It copies the weights when it is made, and runs without dropout."""
        if not self.config.feedback:  # only forward() knows how to blank the input
            def step(tokens, state):
                logits, state = self(tokens[:, None], state)
                return logits[:, -1], state
            return step
        rnn = RecurrentStep(self.rnn, self.embed, precision)
        with torch.no_grad():
            head = Affine(self.head.weight, self.head.bias, precision)

        @torch.no_grad()
        def step(tokens, state):
            out, state = rnn(tokens, state)
            return head(self.mlp(out)), state
        return step

    def init_state(self, batch_size: int) -> State:
        return self.rnn.init_state(batch_size, self.head.weight)

    @staticmethod
    def reorder_state(state: State, index: Tensor) -> State:
        """Rows ``index`` (M,) int64 of the state, in that order (beam search keeps, drops and
        repeats hypotheses)."""
        return tuple(s.index_select(1, index) for s in state)
