"""Generation for the playground, one record per character, as the characters are sampled."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..data.tokenizers import TextStream
from ..data.vocab import EOS, CharVocab
from ..decoding import SamplingConfig, prompt_ids, read_prompt, sample_next_token
from .units import layer_values


@torch.inference_mode()
def generation_steps(model, vocab: CharVocab, prompt: str, length: int, cfg: SamplingConfig,
                     generator: torch.Generator) -> Iterator[tuple[int, Tensor, tuple]]:
    """(token, the (V,) logits it was sampled from, the state after reading it), per token.

    The prompt runs through the model's sequence kernel, each new token through one step of
    ``model.stepper()`` (layers/recurrent_step.py), as ``rnnkit sample`` does.
    """
    device = next(model.parameters()).device
    step = model.stepper()
    last, state = read_prompt(model, step, torch.tensor([prompt_ids(vocab, prompt)],
                                                        device=device))
    for _ in range(length):
        token = sample_next_token(last, cfg, generator)
        # read the token at once: its hidden state belongs to its record
        logits, state = step(token, state)
        yield int(token), last[0], state
        last = logits


def records(model, vocab: CharVocab, prompt: str, length: int, cfg: SamplingConfig,
            generator: torch.Generator, top: int = 5,
            watch: tuple[int, int, int] | None = None) -> Iterator[dict]:
    """One dict per generated character: {"text", "prob", "top": [[char, prob], ...]}, and
    "act" (the watched unit's activation after reading the character) when ``watch`` names a
    (layer, state index, unit). ``prob`` is the character's probability at the sampling
    temperature, before top-k/top-p. In lines mode the stream ends at <eos>. The
    alternatives may name a special token ("<eos>")."""
    stop = vocab.id_of(EOS) if EOS in vocab.specials else None
    k, text = min(top, len(vocab)), TextStream(vocab)
    for token, logits, state in generation_steps(model, vocab, prompt, length, cfg, generator):
        if token == stop:
            return
        if token < len(vocab.specials):  # a sampled <bos> is no text (decode drops it too)
            continue
        # shift first, as the sampler does: a tiny temperature must give 0, never nan
        logits = logits.float()
        probs = ((logits - logits.max()) / max(cfg.temperature, 1e-30)).softmax(-1)
        top_p, top_i = probs.topk(k)
        record = {"text": text.feed(token), "prob": round(float(probs[token]), 4),
                  "top": [[vocab.itos[i], round(p, 4)]
                          for i, p in zip(top_i.tolist(), top_p.tolist())]}
        if watch is not None:
            layer, s, unit = watch
            record["act"] = round(float(layer_values(state)[layer, s, unit]), 4)
        yield record
