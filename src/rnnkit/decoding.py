"""Autoregressive decoding: each sampled token is fed back as the next input.

The recurrent state is carried step by step, so each new token costs one step of the RNN (the
prefix is read once, never re-fed). Randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .data.vocab import BOS, EOS, CharVocab, codepoints
from .errors import RnnkitError


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    """Divide logits by this (> 0); lower is more conservative."""
    top_k: int | None = None
    """Keep only the k most likely tokens (>= 1)."""
    top_p: float | None = None
    """Keep the smallest set of tokens whose probability reaches p, in (0, 1]."""
    argmax: bool = False
    """Always take the most likely token (greedy)."""

    def __post_init__(self):
        if not self.temperature > 0:
            raise RnnkitError(f"--temperature must be > 0, got {self.temperature}; use e.g. 0.8 "
                              "(or --argmax for greedy decoding)")
        if self.top_k is not None and self.top_k < 1:
            raise RnnkitError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise RnnkitError(f"--top-p must be in (0, 1], got {self.top_p}")


def sample_next_token(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator) -> Tensor:
    """Sample one token per row from (B, V) logits. Returns (B,) int64."""
    if cfg.argmax:
        return logits.argmax(dim=-1)
    logits = logits.float()
    # shift before dividing, so a tiny temperature gives -inf, never inf - inf = nan; and keep
    # the divisor a normal float32 (1e-300 would round to 0)
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    logits = shifted / max(cfg.temperature, 1e-30)
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        kth = logits.topk(cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # drop a token when the more likely ones already reach top_p (the first always stays)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= cfg.top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def prompt_ids(vocab: CharVocab, prime_text: str) -> list[int]:
    """Token ids that start generation: <bos> + prompt in lines mode; in stream mode the prompt,
    or a newline (a plausible start of text) when there is none."""
    unknown = vocab.unknown(codepoints(prime_text)) if prime_text else []
    if unknown:
        raise RnnkitError(f"--prime-text has character(s) outside the model's vocabulary: "
                          f"{''.join(unknown)!r}; use only characters seen in training")
    ids = [int(i) for i in vocab.encode(prime_text)] if prime_text else []
    if BOS in vocab.specials:
        return [vocab.id_of(BOS)] + ids
    if ids:
        return ids
    return [vocab.chars.index("\n") + len(vocab.specials)] if "\n" in vocab.chars else [0]


@torch.no_grad()
def generate(model, vocab: CharVocab, prime_text: str, length: int, cfg: SamplingConfig,
             generator: torch.Generator, num_samples: int = 1,
             on_token: Callable[[Tensor], None] | None = None) -> list[list[int]]:
    """Generate ``length`` tokens after the prompt for ``num_samples`` rows in parallel.

    In lines mode a row ends at <eos> (not included); generation stops when all rows have.
    ``on_token`` gets each step's (B,) tokens as they are produced (for streaming output).
    """
    was_training = model.training
    model.eval()
    try:
        return _generate(model, vocab, prime_text, length, cfg, generator, num_samples, on_token)
    finally:
        model.train(was_training)


def _generate(model, vocab, prime_text, length, cfg, generator, num_samples, on_token):
    device = next(model.parameters()).device
    start = torch.tensor(prompt_ids(vocab, prime_text), device=device)
    logits, state = model(start.expand(num_samples, -1))
    stop = vocab.id_of(EOS) if EOS in vocab.specials else None
    rows: list[list[int]] = [[] for _ in range(num_samples)]
    done = torch.zeros(num_samples, dtype=torch.bool, device=device)
    for _ in range(length):
        token = sample_next_token(logits[:, -1], cfg, generator)
        if stop is not None:
            done |= token == stop
        for row, (t, d) in enumerate(zip(token.tolist(), done.tolist())):
            if not d:
                rows[row].append(t)
        if on_token is not None:
            on_token(token)
        if bool(done.all()):
            break
        logits, state = model(token[:, None], state)
    return rows


@torch.no_grad()
def greedy_continue(model, prompts: Tensor, steps: int) -> Tensor:
    """Greedy continuations of a batch of equal-length prompts (B, P) -> (B, steps)."""
    logits, state = model(prompts)
    out = []
    for _ in range(steps):
        token = logits[:, -1].argmax(dim=-1)
        out.append(token)
        logits, state = model(token[:, None], state)
    return torch.stack(out, dim=1)
