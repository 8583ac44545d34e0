"""GPT: a small causal transformer language model with CharLM's interface.

Pre-LayerNorm blocks (Radford et al. 2019, GPT-2), causal self-attention through
``F.scaled_dot_product_attention``, a GELU MLP of 4C units, learned absolute positions, and a
linear head that by default shares the token embedding's weight (Press & Wolf 2017). With
``bias=True, gelu="tanh"`` it is GPT-2 itself: models/hf_gpt2.py reads and writes Hugging Face
GPT-2 weights.

``logits, None = model(tokens)`` for training; ``step = model.stepper()`` (a ``GPTStep``)
decodes one token per call from a key/value cache (``GPTState``) instead of re-reading the
prefix, and ``step.prefill(prompt)`` reads a prompt into the cache in one pass.

Shapes: B batch, T time (T <= block_size), C n_embd, nh n_head, hd head size (C // nh),
t positions held in the cache, V vocabulary.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_config

PRECISIONS = ("fp32", "bf16")


@dataclass
class GPTConfig:
    vocab_size: int = 0
    """V, filled in from the data's vocabulary."""
    block_size: int = 128
    """Longest context: the number of learned position embeddings."""
    n_layer: int = 4
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide n_embd."""
    n_embd: int = 128
    """C, width of the residual stream."""
    dropout: float = 0.0
    """Dropout on the embeddings, attention weights and residual branches (training only)."""
    bias: bool = False
    """Biases in the linear layers and LayerNorms (GPT-2 has them; without is a bit faster)."""
    tie_weights: bool = True
    """The output head reuses the token embedding matrix (one V x C matrix, not two)."""
    gelu: Literal["none", "tanh"] = "none"
    """The MLP's GELU: none, the exact erf form; tanh, the approximation GPT-2 was trained
    with (F.gelu's approximate argument)."""
    layer_norm_eps: float = 1e-5
    """Added to the variance in every LayerNorm (GPT-2: 1e-5)."""

    def __post_init__(self):
        check_config(self, ("block_size", "n_layer", "n_head", "n_embd"))
        if not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"layer_norm_eps must be in (0, 1), got {self.layer_norm_eps}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head}): pick n_embd a multiple of n_head or another "
                             f"n_head")


class GPTState(NamedTuple):
    """The decoding state: what the cache has read so far, row b = one sequence.

    keys, values: one (B, nh, t, hd) tensor per layer. history: (B, t) int64, the tokens the
    cache covers (its window), kept so the cache can be rebuilt when it reaches block_size.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    history: Tensor


def _pack(kvs: list[tuple[Tensor, Tensor]], history: Tensor) -> GPTState:
    """Per-layer (keys, values) pairs and the window they cover -> GPTState."""
    keys, values = zip(*kvs, strict=True)
    return GPTState(keys, values, history)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where step i reads steps <= i.

    Args:
        config: n_embd, n_head, dropout and bias are used.

    Shape:
        x (B, T, C) -> (B, T, C), plus this call's (keys, values), each (B, nh, t, hd) with
        t = T + the past's length. ``past`` (keys, values) from earlier steps allows T = 1 only.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = config
        self.n_head, self.dropout = c.n_head, c.dropout
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # noqa: E731
        q, k, v = map(heads, self.qkv(x).split(C, dim=2))  # each (B, nh, T, hd)
        if past is not None:
            # one new query sees every cached step, so no mask is needed (and the causal
            # mask, aligned to the top-left corner, would hide all but the first key)
            assert T == 1, "the cache extends one token at a time"
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)  # (B, nh, t, hd)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=past is None)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.drop(self.proj(y)), (k, v)


class MLP(nn.Module):
    """C -> 4C (GELU) -> C, applied to each position."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = config
        self.fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)
        self.approximate = c.gelu

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    Shape:
        x (B, T, C) -> (B, T, C), plus the attention's (keys, values).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = config
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class GPT(nn.Module):
    """Causal transformer language model.

    ``logits, state = model(tokens, state)`` as CharLM (the ``LanguageModel`` protocol of
    models/protocols.py), but a transformer carries nothing between training windows:
    ``state`` must be None and None is returned.

    Args:
        config: a GPTConfig with vocab_size set.

    Shape:
        tokens (B, T) int64 with T <= block_size -> logits (B, T, V).
    """

    carries_state = False
    """The trainer must not carry state from one window to the next."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.vocab_size > 0, "vocab_size must be set from the data"
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_weights:
            self.head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the projections that
        write into the residual stream scaled by 1/sqrt(2 n_layer), so the stream's variance
        does not grow with depth (two residual additions per block)."""
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def forward(self, tokens: Tensor, state: None = None) -> tuple[Tensor, None]:
        assert state is None, "a transformer carries no state between windows"
        if tokens.shape[1] > self.config.block_size:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds block_size "
                             f"{self.config.block_size}: feed windows of at most block_size")
        x, _ = self._transformer(tokens)
        return self.head(x), None

    def _transformer(self, tokens: Tensor, cache: GPTState | None = None
                     ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Final hidden states (B, T, C) of ``tokens`` read after the cache's positions, and
        each layer's keys and values covering cache + tokens."""
        start = 0 if cache is None else cache.history.shape[1]
        pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)  # (T,)
        x = self.drop(self.wte(tokens) + self.wpe(pos))  # (B, T, C)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else (cache.keys[i], cache.values[i]))
            kvs.append(kv)
        return self.ln_f(x), kvs

    def stepper(self, precision: str = "fp32") -> GPTStep:
        """A ``GPTStep``: ``logits, state = step(tokens, state)`` one token per call from a
        key/value cache, and ``step.prefill(tokens)`` to read a whole prompt at once.

        Args:
            precision: "fp32", or "bf16" (bfloat16 autocast; logits still float32).
        """
        return GPTStep(self, precision)

    def _window(self, length: int) -> int:
        """Where the window that stepping through ``length`` tokens ends on starts: a full
        cache keeps its last block_size // 2 tokens and goes on, so past block_size the window
        cycles between block_size // 2 + 1 and block_size tokens."""
        block, keep = self.config.block_size, self.config.block_size // 2
        if length <= block:
            return 0
        return length - (keep + 1 + (length - block - 1) % (block - keep))

    def _step(self, tokens: Tensor, state: GPTState | None) -> tuple[Tensor, GPTState]:
        """One decoding step: extend the cache by ``tokens`` (B,), or run the transformer over
        a fresh window when there is no cache or it is full."""
        new = tokens[:, None]  # (B, 1)
        if state is None:
            return self._prefill(new)
        t = state.history.shape[1]
        if t >= self.config.block_size:
            keep = self.config.block_size // 2
            return self._prefill(torch.cat((state.history[:, t - keep:], new), dim=1))
        x, kvs = self._transformer(new, state)
        history = torch.cat((state.history, new), dim=1)  # (B, t + 1)
        return self.head(x[:, -1]), _pack(kvs, history)

    def _prefill(self, window: Tensor) -> tuple[Tensor, GPTState]:
        """Read ``window`` (B, T) into an empty cache: logits (B, V) at its last position."""
        x, kvs = self._transformer(window)
        return self.head(x[:, -1]), _pack(kvs, window)

    @staticmethod
    def reorder_state(state: GPTState, index: Tensor) -> GPTState:
        """Rows ``index`` (M,) int64 of the state, in that order (beam search keeps, drops and
        repeats hypotheses): every layer's keys and values and the history."""
        rows = lambda ts: tuple(t.index_select(0, index) for t in ts)  # noqa: E731
        return GPTState(rows(state.keys), rows(state.values), state.history.index_select(0, index))

    def init_state(self, batch_size: int) -> None:
        """None: a transformer starts from an empty cache, which ``step`` builds itself."""
        return None


class GPTStep:
    """Decoding steps for a GPT (the ``PrefillStep`` protocol of models/protocols.py).

    ``logits, state = step(tokens, state)``: tokens (B,) int64 -> logits (B, V) float32, the
    last position of ``forward`` over the window the cache covers, reading one token per call
    from a key/value cache (``state=None`` starts the sequences). A full cache (block_size
    positions) is rebuilt from the last block_size // 2 tokens of its window before the new
    token is added, so positions stay within the learned ones.

    ``logits, state = step.prefill(tokens)``: tokens (B, T) read in one pass, reaching the same
    logits and cache as calling ``step`` on each column in turn (decoding.read_prompt).

    Args:
        model: the GPT; its weights are copied when the step is made, and the copy runs in
            eval mode (no dropout), whatever the model's mode.
        precision: "fp32", or "bf16" (bfloat16 autocast; logits still float32).
    """

    def __init__(self, model: GPT, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{precision!r}: the transformer supports fp32 and bf16")
        # a private eval-mode copy: decoding must not depend on the caller's train/eval mode
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.model.zero_grad(set_to_none=True)  # the copy needs no gradients the model had
        self.bf16 = precision == "bf16"

    @torch.no_grad()
    def __call__(self, tokens: Tensor, state: GPTState | None) -> tuple[Tensor, GPTState]:
        with self._autocast(tokens):
            logits, state = self.model._step(tokens, state)
        return logits.float(), state

    @torch.no_grad()
    def prefill(self, tokens: Tensor) -> tuple[Tensor, GPTState]:
        with self._autocast(tokens):
            # stepping through T tokens ends on a window of the last ones, not on all T
            logits, state = self.model._prefill(tokens[:, self.model._window(tokens.shape[1]):])
        return logits.float(), state

    def _autocast(self, tokens: Tensor) -> torch.autocast:
        return torch.autocast(tokens.device.type, torch.bfloat16, enabled=self.bf16)
