"""Exposure bias, measured: how a model does when it reads its own outputs.

Each case is a prompt of ``prefix`` true tokens and the true continuation after it: in lines
mode every held-out line long enough (prompt = <bos> + its first ``prefix`` characters, the
continuation runs to its <eos>), in stream mode evenly spaced windows of ``prefix + length``
characters. Two decodings of every continuation are scored position by position:

- teacher-forced: at each position the model reads the true history (training conditions);
- free-running: greedy decoding from the prompt, each output fed back as the next input
  (test conditions), so one early mistake changes everything the model reads afterwards.

The gap between the two per-position error curves is the exposure bias.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.batching import line_spans
from ..data.vocab import BOS, EOS, CharVocab
from ..decoding import greedy_continue, logits_over


def line_cases(tokens: np.ndarray, vocab: CharVocab, prefix: int, limit: int):
    starts, ends = line_spans(tokens, vocab.id_of(EOS))
    bos = vocab.id_of(BOS)
    cases = [([bos, *tokens[s:s + prefix]], tokens[s + prefix:e])
             for s, e in zip(starts, ends) if e - s > prefix + 1]
    return cases[:limit]


def stream_cases(tokens: np.ndarray, prefix: int, length: int, limit: int):
    last = len(tokens) - prefix - length
    if last < 0:
        return []
    starts = np.unique(np.linspace(0, last, num=min(limit, last + 1)).astype(int))
    return [(tokens[s:s + prefix], tokens[s + prefix:s + prefix + length]) for s in starts]


@torch.no_grad()
def decode_both(model, prompts: torch.Tensor, truths: list[torch.Tensor]):
    """(free-running, teacher-forced) predictions, each (B, longest continuation)."""
    steps = max(len(t) for t in truths)
    free = greedy_continue(model, prompts, steps)
    padded = torch.stack([torch.cat([t, t.new_zeros(steps - len(t))]) for t in truths])
    history = torch.cat([prompts, padded[:, :-1]], dim=1)
    forced = logits_over(model, history)[:, prompts.shape[1] - 1:].argmax(dim=-1)
    return free, forced


def score(preds: torch.Tensor, truths: list[torch.Tensor]) -> dict:
    """Exact-match rate and the error rate at each position of the continuation."""
    wrong = [(p[:len(t)] != t).numpy() for p, t in zip(preds, truths)]
    longest = max(len(w) for w in wrong)
    errors, counts = np.zeros(longest), np.zeros(longest)
    for w in wrong:
        errors[:len(w)] += w
        counts[:len(w)] += 1
    per_position = errors / counts
    return {"exact_match": float(np.mean([not w.any() for w in wrong])),
            "mean_position_error": float(np.concatenate(wrong).mean()),
            "position_error": [round(float(x), 4) for x in per_position]}


def free_running_report(model, vocab: CharVocab, tokens: np.ndarray, mode: str, prefix: int,
                        length: int = 50, max_cases: int = 1000, batch_size: int = 64) -> dict:
    """Teacher-forced and free-running scores of the continuations in ``tokens``."""
    if mode == "lines":
        cases = line_cases(tokens, vocab, prefix, max_cases)
    else:
        cases = stream_cases(tokens, prefix, length, max_cases)
    device = next(model.parameters()).device
    free, forced = [], []
    was_training = model.training
    model.eval()
    for i in range(0, len(cases), batch_size):
        chunk = cases[i:i + batch_size]
        prompts = torch.tensor(np.array([p for p, _ in chunk], dtype=np.int64), device=device)
        truths = [torch.from_numpy(np.asarray(t, dtype=np.int64)) for _, t in chunk]
        f, t = decode_both(model, prompts, [x.to(device) for x in truths])
        free += list(f.cpu())
        forced += list(t.cpu())
    model.train(was_training)
    truths = [torch.from_numpy(np.asarray(t, dtype=np.int64)) for _, t in cases]
    return {"cases": len(cases), "prefix": prefix,
            "teacher_forced": score(forced, truths) if cases else None,
            "free_running": score(free, truths) if cases else None}
