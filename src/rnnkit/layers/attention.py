"""Attention over a padded memory: a decoder's queries read a weighted mix of encoder outputs.

Two score functions (Luong et al. 2015 name both):
- ``dot``: Luong's "general" score q . W k, a bilinear form (plain q . k needs equal sizes);
- ``additive``: Bahdanau et al. 2015's score v . tanh(W_q q + W_k k).

Shapes: B batch, T queries (decoder steps), S memory steps (source), Q query and K key features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SCORES = ("dot", "additive")


class Attention(nn.Module):
    """``context, weights = attention(query, memory, mask)``.

    Args:
        score: "dot" or "additive".
        query_size: Q.
        key_size: K, features per memory step (2H for a bidirectional encoder).
        attn_size: A, hidden size of the additive score (default Q).

    Shape:
        query (B, T, Q), memory (B, S, K), mask (B, S) bool (True = a real step). Returns the
        context (B, T, K) and the weights (B, T, S), which sum to 1 over the real steps and are
        exactly 0 on padding. ``keys`` (from ``keys(memory)``) may be passed in: a decoder
        that attends once per step computes them once per sequence instead.
    """

    def __init__(self, score: str, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.score = score
        if score == "dot":
            self.proj = nn.Linear(key_size, query_size, bias=False)
        else:
            a = attn_size or query_size
            self.w_query = nn.Linear(query_size, a, bias=False)
            self.w_key = nn.Linear(key_size, a)
            self.v = nn.Linear(a, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """The memory's side of the score, (B, S, Q) or (B, S, A): it does not depend on the
        query."""
        return self.proj(memory) if self.score == "dot" else self.w_key(memory)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """Unnormalised scores (B, T, S)."""
        if self.score == "dot":
            return query @ keys.transpose(1, 2)
        # (B, T, 1, A) + (B, 1, S, A): every query against every memory step
        mixed = torch.tanh(self.w_query(query)[:, :, None] + keys[:, None])
        return self.v(mixed).squeeze(-1)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor,
                keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        keys = self.keys(memory) if keys is None else keys
        scores = self.scores(query, keys).float()
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1).to(memory.dtype)
        return weights @ memory, weights
