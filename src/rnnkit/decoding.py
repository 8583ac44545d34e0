"""Autoregressive decoding: each sampled token is fed back as the next input.

The recurrent state (a transformer's KV cache) is carried step by step, so each new token costs
one step of the model (the prefix is read once, never re-fed). Randomness comes from an
explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .data.vocab import BOS, EOS, CharVocab
from .errors import RnnkitError
from .fair_share import keep_fair_share
from .models.protocols import LanguageModel, PrefillStep, Step

# Beam search keeps K hypotheses: each step runs K rows of the model and ranks K x V
# candidates. Widths past a few dozen rarely find likelier text; K = 1000 with a small model
# takes seconds on a CPU for 200 steps, while far wider beams only spend memory (K states) and
# time for nothing.
MAX_BEAM = 1000
# GNMT's alpha is 0.6-1.0 in practice; |alpha| <= 10 keeps lp(len) ** alpha a finite float
# for any length a search can reach
MAX_LENGTH_PENALTY = 10.0
# generate() gathers the tokens of this many steps into one (B, CHUNK) tensor: a Python list
# with a small tensor per step would cost about 1.5 kB per token
CHUNK = 1024


@dataclass(frozen=True)  # hashable: rows that share settings are sampled together
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
        if not 0 < self.temperature < math.inf:  # also refuses nan
            raise RnnkitError(f"--temperature must be > 0 and finite, got {self.temperature}; "
                              "use e.g. 0.8 (or --argmax for greedy decoding)")
        if self.top_k is not None and self.top_k < 1:
            raise RnnkitError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise RnnkitError(f"--top-p must be in (0, 1], got {self.top_p}")


def sample_next_token(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator) -> Tensor:
    """Sample one token per row from (B, V) logits. Returns (B,) int64."""
    if cfg.argmax:
        return logits.argmax(dim=-1)
    return draw(sampling_probs(logits, cfg), uniforms(logits.shape[0], generator, logits.device))


def sample_rows(logits: Tensor, cfgs: list[SamplingConfig],
                generators: list[torch.Generator]) -> Tensor:
    """``sample_next_token`` with settings and a generator per row of (B, V) logits: rows that
    share settings are sampled together, each drawing its uniform from its own generator, so
    a row gets the token it would get alone. Returns (B,) int64."""
    groups: dict[SamplingConfig, list[int]] = {}
    for row, cfg in enumerate(cfgs):
        groups.setdefault(cfg, []).append(row)
    tokens = torch.empty(len(cfgs), dtype=torch.long, device=logits.device)
    for cfg, rows in groups.items():
        index = torch.tensor(rows, device=logits.device)
        if cfg.argmax:
            tokens[index] = logits[index].argmax(dim=-1)
            continue
        u = torch.cat([uniforms(1, generators[r], logits.device) for r in rows])
        tokens[index] = draw(sampling_probs(logits[index], cfg), u)
    return tokens


def sampling_probs(logits: Tensor, cfg: SamplingConfig) -> Tensor:
    """(B, V) probabilities to draw from: the temperature, then top-k and top-p applied (the
    dropped tokens get 0; rows need not sum to 1)."""
    logits = logits.float()
    if cfg.temperature != 1:  # at 1 this is the identity: softmax shifts by the max itself
        # shift before dividing, so a tiny temperature gives -inf, never inf - inf = nan; and
        # keep the divisor a normal float32 (1e-300 would round to 0)
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
    return probs


def uniforms(rows: int, generator: torch.Generator, device) -> Tensor:
    """(rows, 1) uniforms in (0, 1]: then u * total > 0, so a zero-probability index (whose
    cdf equals its predecessor's) is never the first to reach it."""
    return 1 - torch.rand(rows, 1, generator=generator, device=device)


def draw(probs: Tensor, u: Tensor) -> Tensor:
    """One index per row of (B, V) probabilities (unnormalised is fine), by inverting the CDF:
    the first index whose cumulative probability reaches u * total, for (B, 1) ``u`` in
    (0, 1]. A third of torch.multinomial's time per step at batch 1, a tenth at batch 64."""
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(-1)


def prompt_ids(vocab: CharVocab, prime_text: str) -> list[int]:
    """Token ids that start generation: <bos> + prompt in lines mode; in stream mode the prompt,
    or, when there is none, the tokenizer's own start of text (GPT-2's <|endoftext|>) or a
    newline (a plausible start of text)."""
    unknown = vocab.unknown_in(prime_text)
    if unknown:
        raise RnnkitError(f"--prime-text has character(s) outside the model's vocabulary: "
                          f"{''.join(unknown)!r}; use only characters seen in training")
    ids = [int(i) for i in vocab.encode(prime_text)] if prime_text else []
    if BOS in vocab.specials:
        return [vocab.id_of(BOS)] + ids
    if ids:
        return ids
    if getattr(vocab, "start_id", None) is not None:
        return [vocab.start_id]
    return [int(vocab.encode("\n")[-1])] if not vocab.unknown_in("\n") else [0]


def read_prompt(model: LanguageModel, step: Step, tokens: Tensor) -> tuple[Tensor, Any]:
    """(B, V) logits after reading (B, P) prompt tokens, and the state to step on from. A
    recurrent model reads the prompt in one call of its sequence kernel; a transformer
    (``carries_state`` False) fills its KV cache in one pass where its stepper is a
    ``PrefillStep`` (the same cache as stepping through the prompt), else token by token."""
    if model.carries_state:
        logits, state = model(tokens)
        return logits[:, -1], state
    if isinstance(step, PrefillStep):
        return step.prefill(tokens)
    state = None
    for token in tokens.unbind(dim=1):
        logits, state = step(token, state)
    return logits, state


def generate(model: LanguageModel, vocab: CharVocab, prime_text: str, length: int,
             cfg: SamplingConfig, generator: torch.Generator, num_samples: int = 1,
             on_token: Callable[[Tensor], None] | None = None,
             precision: str = "fp32") -> list[list[int]]:
    """Generate ``length`` tokens after the prompt for ``num_samples`` rows in parallel.

    In lines mode a row ends at <eos> (not included); generation stops when all rows have.
    ``on_token`` gets each step's (B,) tokens as they are produced (for streaming output).
    The prompt runs through the model's sequence kernel, then each new token takes one step
    of ``model.stepper(precision)`` ("fp32", "bf16" or "int8"; layers/recurrent_step.py).
    """
    chunks, pending = [], []
    for tokens in generate_steps(model, vocab, prime_text, length, cfg, generator,
                                 num_samples, precision):
        if on_token is not None:
            on_token(tokens)
        pending.append(tokens)
        if len(pending) == CHUNK:
            chunks.append(torch.stack(pending, dim=1))
            pending = []
    tokens = torch.cat(chunks + [torch.stack(pending, dim=1)], dim=1)  # (B, T)
    stop = vocab.id_of(EOS) if EOS in vocab.specials else None
    return _cut_at_eos(tokens, stop) if stop is not None else tokens.tolist()


@torch.no_grad()
def generate_steps(model: LanguageModel, vocab: CharVocab, prime_text: str, length: int,
                   cfg: SamplingConfig, generator: torch.Generator, num_samples: int = 1,
                   precision: str = "fp32") -> Iterator[Tensor]:
    """``generate``, one step at a time: yields each step's (B,) tokens and keeps none of
    them, so a caller that writes them out runs in constant memory however long it samples.
    In lines mode the tokens of rows that have ended are still yielded (after their <eos>)."""
    was_training = model.training
    model.eval()
    try:
        step, state, logits = _start(model, vocab, prime_text, num_samples, precision)
        stop = vocab.id_of(EOS) if EOS in vocab.specials else None
        done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        for _ in range(length):
            keep_fair_share()
            token = sample_next_token(logits, cfg, generator)
            yield token
            if stop is not None:
                done |= token == stop
                if bool(done.all()):
                    return
            logits, state = step(token, state)
    finally:
        model.train(was_training)


def _start(model: LanguageModel, vocab: CharVocab, prime_text: str, num_samples: int,
           precision: str):
    """(step function, its state, the last logits) after reading the prompt."""
    device = next(model.parameters()).device
    start = torch.tensor(prompt_ids(vocab, prime_text), device=device)
    step = model.stepper(precision)
    logits, state = read_prompt(model, step, start.expand(num_samples, -1))
    return step, state, logits


@torch.no_grad()
def beam_continue(model: LanguageModel, vocab: CharVocab, prime_text: str, length: int,
                  beam: int, n_best: int = 1, length_penalty: float = 0.0,
                  precision: str = "fp32") -> list[list[int]]:
    """The ``n_best`` likeliest continuations of the prompt by beam search (``beam_search``
    over the model's single steps), best first: ``length`` tokens in stream mode, a line to
    its <eos> (not included) in lines mode, where ``length_penalty`` > 0 favours longer
    lines. Deterministic: no sampling."""
    was_training = model.training
    model.eval()
    try:
        step, state, logits = _start(model, vocab, prime_text, 1, precision)
        pending = [logits.float().log_softmax(-1)]

        def lm_step(tokens: Tensor, state):
            if pending:  # the prompt is read already: its next-token scores come first
                return pending.pop().expand(tokens.shape[0], -1), state
            logits, state = step(tokens, state)
            return logits.float().log_softmax(-1), state
        eos = vocab.id_of(EOS) if EOS in vocab.specials else -1  # -1: no token ends a text
        found = beam_search(lm_step, model.reorder_state, state, 1, 0, eos, beam, length,
                            length_penalty, n_best, device=logits.device)
        return [tokens for tokens, _ in found[0]]
    finally:
        model.train(was_training)


def logits_over(model: LanguageModel, tokens: Tensor) -> Tensor:
    """(B, T, V) next-token logits at every position of (B, T) tokens, however long: past its
    block_size a transformer's context slides as it does when sampling."""
    if model.carries_state or tokens.shape[1] <= model.config.block_size:
        return model(tokens)[0]
    step, state, out = model.stepper(), None, []
    for token in tokens.unbind(dim=1):
        logits, state = step(token, state)
        out.append(logits)
    return torch.stack(out, dim=1)


@torch.no_grad()
def greedy_continue(model: LanguageModel, prompts: Tensor, steps: int) -> Tensor:
    """Greedy continuations of a batch of equal-length prompts (B, P) -> (B, steps)."""
    step, out = model.stepper(), []
    logits, state = read_prompt(model, step, prompts)
    for _ in range(steps):
        token = logits.argmax(dim=-1)
        out.append(token)
        logits, state = step(token, state)
    return torch.stack(out, dim=1)


# ---------------------------------------------------------------- model-agnostic decoders
#
# The decoders below drive any model through two callables, so they work for an
# encoder-decoder model whose state is the encoder output plus a recurrent state:
#
#   step(tokens, state) -> (log_probs, state)   tokens (N,) int64, log_probs (N, V) float
#   reorder(state, index) -> state              keep rows ``index`` (M,) int64, in that order
#
# A ConditionalDecoder (models/protocols.py) provides both: ``model.step`` or
# ``model.stepper()``, and ``model.reorder_state``.
#
# A row is one sequence being decoded: N = B for greedy and sampling, N = B * K for beam
# search (B examples, K beams, V vocabulary). Only ``step`` and ``reorder`` look inside the
# state, so it can be a tensor, a tuple (h, c), or a dataclass holding the encoder output.

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any]]
ReorderFn = Callable[[Any, Tensor], Any]
Hypothesis = tuple[list[int], float]


def check_beam_width(beam: int, flag: str = "--beam") -> None:
    if not 1 <= beam <= MAX_BEAM:
        raise RnnkitError(f"{flag} must be between 1 and {MAX_BEAM} (the number of hypotheses "
                          f"kept), got {beam}")


def check_length_penalty(alpha: float, flag: str = "--length-penalty") -> None:
    if not -MAX_LENGTH_PENALTY <= alpha <= MAX_LENGTH_PENALTY:  # also refuses nan
        raise RnnkitError(f"{flag} must be a finite number between -{MAX_LENGTH_PENALTY:g} and "
                          f"{MAX_LENGTH_PENALTY:g} (GNMT's alpha; 0.6-1.0 is usual), got {alpha}")


def _check_at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _cut_at_eos(tokens: Tensor, eos: int) -> list[list[int]]:
    """(B, T) tokens -> B lists, each cut before its first eos."""
    is_eos = tokens == eos
    # argmax returns the first maximum, i.e. the first eos; a row without one keeps all T
    first = is_eos.to(torch.uint8).argmax(dim=1)
    lengths = torch.where(is_eos.any(dim=1), first, tokens.shape[1])
    return [row[:n] for row, n in zip(tokens.tolist(), lengths.tolist())]


def _decode_rows(step: StepFn, state: Any, batch_size: int, bos: int, eos: int,
                 max_length: int, device: torch.device | str,
                 pick: Callable[[Tensor], Tensor]) -> list[list[int]]:
    """Feed each row's picked token back until every row has emitted eos or max_length."""
    _check_at_least("batch_size", batch_size, 1)
    _check_at_least("max_length", max_length, 1)
    tokens = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    ended = torch.zeros(batch_size, dtype=torch.bool, device=device)
    out = []
    for _ in range(max_length):
        log_probs, state = step(tokens, state)
        tokens = pick(log_probs)
        out.append(tokens)
        ended |= tokens == eos
        if bool(ended.all()):
            break
    return _cut_at_eos(torch.stack(out, dim=1), eos)


@torch.no_grad()
def greedy_decode(step: StepFn, state: Any, batch_size: int, bos: int, eos: int,
                  max_length: int, *, device: torch.device | str = "cpu") -> list[list[int]]:
    """Decode each row by always taking its most likely next token.

    Args:
        step: ``step(tokens, state) -> (log_probs, state)`` with tokens (B,) int64 and
            log_probs (B, V).
        state: the decoder state of ``batch_size`` rows; only ``step`` looks inside it.
        batch_size: B, the number of rows.
        bos: the token fed first to every row.
        eos: the token that ends a row; it is not part of the output.
        max_length: the most tokens generated per row (>= 1), eos included.
        device: where the token tensors given to ``step`` are created.

    Returns:
        B lists of token ids, without bos and eos.
    """
    return _decode_rows(step, state, batch_size, bos, eos, max_length, device,
                        lambda log_probs: log_probs.argmax(dim=-1))


@torch.no_grad()
def sample_decode(step: StepFn, state: Any, batch_size: int, bos: int, eos: int,
                  max_length: int, cfg: SamplingConfig, generator: torch.Generator, *,
                  device: torch.device | str = "cpu") -> list[list[int]]:
    """Decode each row by drawing its next token with ``sample_next_token``.

    Takes the arguments of ``greedy_decode``, plus the sampling rules ``cfg`` (temperature,
    top-k, top-p; ``cfg.argmax`` is greedy decoding) and the ``generator`` that draws.
    Log-probabilities serve as logits: they differ only by a constant per row.

    Returns:
        B lists of token ids, without bos and eos.
    """
    return _decode_rows(step, state, batch_size, bos, eos, max_length, device,
                        lambda log_probs: sample_next_token(log_probs, cfg, generator))


def _length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(len) = ((5 + len) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5 + length) / 6) ** alpha


def _first_k(mask: Tensor, k: int) -> Tensor:
    """Positions of the first k True entries of each row of a (B, C) mask, as (B, k)."""
    # a stable sort brings the True entries to the front and keeps their order (their rank)
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :k]


class _Beams:
    """Live and finished hypotheses of a batched beam search over B examples with K beams."""

    def __init__(self, batch_size: int, beam: int, eos: int, max_length: int,
                 length_penalty: float, device: torch.device | str, n_best: int = 1):
        self.beam, self.eos = beam, eos
        self.max_length, self.alpha = max_length, length_penalty
        # only the first beam starts live: K live copies of bos would yield each hypothesis K times
        self.scores = torch.full((batch_size, beam), float("-inf"), device=device)
        self.scores[:, 0] = 0.0
        self.history = torch.zeros((batch_size, beam, 0), dtype=torch.long, device=device)
        self.row_offset = torch.arange(batch_size, device=device)[:, None] * beam
        self.done = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self.finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch_size)]
        # the n_best-th best finished score, once there are n_best: the bar a live one must beat
        self.kth = [float("-inf")] * batch_size
        self.need = n_best
        # the example each row block holds: finished examples are dropped from the batch
        self.ids = torch.arange(batch_size, device=device)

    def drop_done(self, tokens: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Remove the finished examples (their hypotheses are settled) so later steps compute
        only live rows; returns the next tokens and state rows of the examples kept."""
        live = ~self.done
        K = self.beam
        self.scores, self.history, self.ids = self.scores[live], self.history[live], self.ids[live]
        self.done = self.done[live]
        self.row_offset = self.row_offset[:len(self.ids)]
        return tokens.view(-1, K)[live].view(-1), rows.view(-1, K)[live].view(-1)

    def advance(self, log_probs: Tensor) -> tuple[Tensor, Tensor]:
        """Extend the beams by one token; returns the (B*K,) next tokens and the state rows."""
        B, K = self.scores.shape
        V = log_probs.shape[-1]
        if V < 2:
            raise ValueError(f"beam search needs a vocabulary of >= 2 tokens, got {V}")
        cand = (self.scores[..., None] + log_probs.float().view(B, K, V)).view(B, K * V)
        # at most K of the best 2K are eos (one per beam), so K non-eos candidates remain
        top, flat = cand.topk(2 * K, dim=1)
        src, tok = flat // V, flat % V
        self._finish_eos(top, src, tok)
        keep = _first_k(tok != self.eos, K)
        self.scores = top.gather(1, keep)
        src, tok = src.gather(1, keep), tok.gather(1, keep)
        old = self.history.gather(1, src[..., None].expand(-1, -1, self.history.shape[2]))
        self.history = torch.cat([old, tok[..., None]], dim=2)
        self._update_done()
        return tok.view(-1), (self.row_offset + src).view(-1)

    def _finish_eos(self, top: Tensor, src: Tensor, tok: Tensor) -> None:
        K = self.beam
        # Hugging Face's rule: an eos finishes a hypothesis only when it ranks among the best K,
        # which makes beam=1 the same as greedy decoding
        ends = (tok[:, :K] == self.eos) & top[:, :K].isfinite() & ~self.done[:, None]
        b, rank = ends.nonzero(as_tuple=True)
        lp = _length_penalty(self.history.shape[2] + 1, self.alpha)  # the eos counts
        self._add(b, top[b, rank] / lp, self.history[b, src[b, rank]])

    def finish_live(self) -> None:
        """At max_length, live hypotheses that never emitted eos finish as they are."""
        b, k = (self.scores.isfinite() & ~self.done[:, None]).nonzero(as_tuple=True)
        lp = _length_penalty(self.history.shape[2], self.alpha)
        self._add(b, self.scores[b, k] / lp, self.history[b, k])

    def _add(self, examples: Tensor, scores: Tensor, tokens: Tensor) -> None:
        arrived: dict[int, list[tuple[float, list[int]]]] = {}
        for b, score, toks in zip(self.ids[examples].tolist(), scores.tolist(), tokens.tolist()):
            arrived.setdefault(b, []).append((score, toks))
        # one sort per example, not one per hypothesis: at max_length all K beams finish at once
        for b, new in arrived.items():
            hyps = self.finished[b] + new
            hyps.sort(key=lambda h: h[0], reverse=True)  # stable: ties keep their arrival order
            del hyps[self.beam:]
            self.finished[b] = hyps
            if len(hyps) >= self.need:
                self.kth[b] = hyps[self.need - 1][0]

    def _update_done(self) -> None:
        # log-probs only decrease, so a live hypothesis ends with raw score <= its score now;
        # dividing by the most favourable lp it can still reach bounds its normalised score
        n = self.history.shape[2]  # tokens in each live hypothesis
        reach = self.max_length + 1 if self.alpha > 0 else min(n + 1, self.max_length)
        best = self.scores.max(dim=1).values / _length_penalty(reach, self.alpha)
        kth = torch.tensor(self.kth, device=best.device)[self.ids]
        self.done |= best <= kth

    def best(self, n_best: int) -> list[list[Hypothesis]]:
        return [[(toks, score) for score, toks in hyps[:n_best]] for hyps in self.finished]


@torch.no_grad()
def beam_search(step: StepFn, reorder: ReorderFn, state: Any, batch_size: int, bos: int,
                eos: int, beam: int, max_length: int, length_penalty: float = 0.0,
                n_best: int = 1, *,
                device: torch.device | str = "cpu") -> list[list[Hypothesis]]:
    """Batched beam search: the ``n_best`` most likely outputs of each of B examples.

    Each example keeps K live hypotheses. At every step the B*K rows are extended by all V
    tokens and the best 2K of the K*V candidates per example are ranked. An eos candidate
    finishes a hypothesis only if its rank is < K (Hugging Face's rule, which makes K = 1
    exactly greedy decoding with ``length_penalty=0``); the best K non-eos candidates become
    the next live beams, and ``reorder`` moves the state rows along with them.

    A finished hypothesis of ``len`` tokens (eos included) scores ``logprob / lp(len)`` with
    GNMT's length penalty lp(len) = ((5 + len) / 6) ** length_penalty (Wu et al. 2016,
    "Google's Neural Machine Translation System", eq. 14); 0 means the raw log-probability.
    An example stops once it has ``n_best`` finished hypotheses and no live one can beat the
    n_best-th of them (waiting for K finished ones, when only the best is wanted, costs many
    steps for nothing: the 2nd to Kth hypotheses may take until max_length to end).
    The stop is exact, not a heuristic: log-probs only decrease and, for length_penalty > 0,
    lp grows with length, so a live hypothesis with raw score s ends at most at
    s / lp(max_length + 1) (for length_penalty < 0 the shortest reachable length is the best
    case). At max_length, live hypotheses that never emitted eos finish truncated, scored by
    their token count.

    Args:
        step: ``step(tokens, state) -> (log_probs, state)``, tokens (B*K,), log_probs (B*K, V).
        reorder: ``reorder(state, index) -> state`` keeping rows ``index`` (M,) int64 in order.
        state: the decoder state of B rows, one per example; it is expanded to B*K rows with
            ``reorder(state, arange(B).repeat_interleave(K))``, so beam b*K + k is example b.
        batch_size: B, the number of examples.
        bos: the token fed first.
        eos: the token that ends a hypothesis; it is not part of the output.
        beam: K >= 1, the live hypotheses kept per example.
        max_length: the most tokens per hypothesis (>= 1), eos included.
        length_penalty: the GNMT alpha; > 0 favours longer outputs (0.6-1.0 is usual).
        n_best: how many hypotheses to return per example, 1 <= n_best <= beam.
        device: where the token and index tensors given to ``step``/``reorder`` are created.

    Returns:
        Per example, up to ``n_best`` (tokens, normalised score) pairs, best first, with
        tokens free of bos and eos (fewer only when the model gives probability 0 to the rest).
    """
    _check_at_least("batch_size", batch_size, 1)
    _check_at_least("beam", beam, 1)
    _check_at_least("max_length", max_length, 1)
    if not 1 <= n_best <= beam:
        raise ValueError(f"n_best must be in [1, beam={beam}], got {n_best}")
    beams = _Beams(batch_size, beam, eos, max_length, length_penalty, device, n_best)
    index = torch.arange(batch_size, device=device).repeat_interleave(beam)
    tokens = torch.full((batch_size * beam,), bos, dtype=torch.long, device=device)
    for _ in range(max_length):
        keep_fair_share()
        # reorder lazily, right before the step that needs it: the last selection needs none
        log_probs, state = step(tokens, reorder(state, index))
        tokens, index = beams.advance(log_probs)
        if bool(beams.done.all()):
            break
        if bool(beams.done.any()):
            tokens, index = beams.drop_done(tokens, index)
    beams.finish_live()
    return beams.best(n_best)
