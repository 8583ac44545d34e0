"""CTC decoding: the many-to-one map, best-path decoding and prefix beam search with an LM.

A CTC model emits, per frame, log-probabilities over V labels, one of them the blank. A path (one
label per frame) reads as the label sequence ``collapse(path)``: repeats merged, then blanks
dropped, so a repeated label needs a blank in between ("aa" is ``a _ a``). P_ctc(y|x) sums the
probabilities of every path that collapses to y (Graves et al. 2006).

- ``greedy_decode``: the most likely path, collapsed (best-path decoding); fast, batched.
- ``prefix_beam_search``: searches label sequences, not paths, so the probabilities of the many
  paths of one prefix are summed as it goes (Graves 2012, Hannun et al. 2014), optionally with a
  language model's score added to each prefix (shallow fusion) and a bonus per word.
- ``CharLMScorer``: a character LM trained by ``rnnkit train`` as that language model.

Shapes: T frames, V speech labels (blank included), B batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from .data.vocab import BOS, EOS

NEG_INF = float("-inf")


def collapse(ids: Sequence[int], blank: int = 0) -> list[int]:
    """CTC's many-to-one map: merge repeats, then drop blanks ([1,1,0,1,2,2] -> [1,1,2])."""
    out, prev = [], None
    for i in ids:
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame of (B, T, V) ``log_probs`` (or probabilities, or logits: only
    the argmax matters) over each row's first ``lengths[b]`` frames, collapsed. ``lengths`` (B,)."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    B, T, V = log_probs.shape
    lengths = torch.as_tensor(lengths).reshape(-1)
    if lengths.numel() != B:
        raise ValueError(f"lengths must have {B} entries (one per row), got {lengths.numel()}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in 0..{T}, got {lengths.tolist()}")
    _check_blank(blank, V)
    best = log_probs.argmax(dim=-1).tolist()  # (B, T): one transfer, then plain Python
    return [collapse(row[:n], blank) for row, n in zip(best, lengths.tolist(), strict=True)]


@runtime_checkable
class PrefixLM(Protocol):
    """A language model that scores label prefixes for shallow fusion.

    States are opaque to the search: it only passes them back. Log-prob vectors are (V,), indexed
    by speech label id (the blank's entry is never read).
    """

    def start(self) -> tuple[object, Tensor]:
        """(state, log-probs (V,) of the first label)."""
        ...

    def extend(self, states: list, tokens: list[int]) -> list[tuple[object, Tensor]]:
        """Batched: for each (state, token) the new state and the log-probs (V,) of the next
        label."""
        ...

    def end(self, state) -> float:
        """Log-prob that the text ends here (0.0 if the LM has no end symbol)."""
        ...


@dataclass
class _Prefix:
    """One label prefix in the beam at a frame: its CTC log-probs split by the last path label,
    blank (p_b) or not (p_nb), and the parts of its score that depend only on the labels."""

    p_b: float = NEG_INF
    p_nb: float = NEG_INF
    lm: float = 0.0  # log P_lm of the labels so far (no end term)
    words: int = 0

    def ctc(self) -> float:
        return _logaddexp(self.p_b, self.p_nb)


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:  # also keeps -inf + -inf from becoming nan below
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def prefix_beam_search(log_probs: Tensor, beam: int, blank: int = 0, lm: PrefixLM | None = None,
                       lm_weight: float = 0.0, word_bonus: float = 0.0, space: int | None = None,
                       label_top_k: int | None = None, label_margin: float | None = None,
                       ) -> list[tuple[list[int], float]]:
    """CTC prefix beam search (Hannun et al. 2014; Graves 2012) over one utterance.

    Each hypothesis y is scored

        log P_ctc(y|x) + lm_weight * log P_lm(y) + word_bonus * words(y)

    where words(y) counts the runs of non-space labels of y when ``space`` (the id of the space
    character) is set, and is len(y) (a bonus per label, the usual insertion bonus of
    character-level decoding) when it is None. With ``lm`` (used only when lm_weight != 0),
    log P_lm(y) includes ``lm.end()`` at the end of the utterance; that term enters only the
    final ranking, since before the last frame no prefix has ended.

    At each frame the ``beam`` best prefixes by that score (without the end term) are kept. The
    search is exact (returns every label sequence with its exact score) when ``beam`` holds every
    prefix; a smaller beam can lose paths, so its scores are lower bounds of the exact ones.

    Optional label pruning, off by default: at each frame only the ``label_top_k`` most likely
    non-blank labels, and only labels whose log-prob is within ``label_margin`` of the frame's
    best (blank included), extend a prefix. Blank frames and repeats of a prefix's last label
    are always followed; they create no new prefixes.

    Args:
        log_probs: (T, V) log-probabilities (log_softmax) of one utterance's frames.
        beam: how many prefixes to keep per frame, and the most hypotheses returned.
        blank: the blank's label id.
        lm: scores label prefixes (``PrefixLM``); each frame makes at most one batched
            ``lm.extend`` call, for the prefixes new to the beam, and one more at the end.

    Returns:
        Up to ``beam`` (label ids without blanks, score), best first; label sequences that no
        path reaches (probability 0) are never returned.
    """
    _check_search_args(log_probs, beam, blank, space, label_top_k, label_margin)
    scorer = _LMCache(lm, log_probs.shape[1]) if lm is not None and lm_weight != 0 else None
    frames = log_probs.detach().double().cpu().tolist()  # plain floats: the loop is in Python

    def score(p: _Prefix) -> float:
        return p.ctc() + lm_weight * p.lm + word_bonus * p.words

    hyps = {(): _Prefix(p_b=0.0)}
    for frame in frames:
        if scorer is not None:
            scorer.cover(list(hyps))
        hyps = _step(hyps, frame, blank, _extensions(frame, blank, label_top_k, label_margin),
                     scorer, space)
        # a prefix no path reaches stays impossible: drop it rather than let it take a place
        alive = [h for h in hyps.items() if h[1].ctc() > NEG_INF]
        hyps = dict(sorted(alive, key=lambda h: score(h[1]), reverse=True)[:beam])
    final = [(list(y), score(p)) for y, p in hyps.items()]
    if scorer is not None:
        scorer.cover(list(hyps))
        final = [(y, s + lm_weight * scorer.end(tuple(y))) for y, s in final]
    return sorted(final, key=lambda h: h[1], reverse=True)


def _step(hyps: dict[tuple, _Prefix], frame: list[float], blank: int, labels: list[int],
          scorer: _LMCache | None, space: int | None) -> dict[tuple, _Prefix]:
    """One frame of the prefix recursion: every prefix of ``hyps`` stays (a blank, or its last
    label again) or grows by one of ``labels``. Returns the prefixes at the next frame."""
    out: dict[tuple, _Prefix] = {}
    for y, p in hyps.items():
        total = p.ctc()
        stay = out.setdefault(y, _Prefix(lm=p.lm, words=p.words))
        stay.p_b = _logaddexp(stay.p_b, total + frame[blank])
        last = y[-1] if y else None
        if last is not None:  # the same label again, with no blank between: still y
            stay.p_nb = _logaddexp(stay.p_nb, p.p_nb + frame[last])
        next_lm = scorer.next_log_probs(y) if scorer is not None else None
        for c in labels:
            grown = out.get(y + (c,))
            if grown is None:
                grown = out[y + (c,)] = _Prefix(
                    lm=p.lm + (next_lm[c] if next_lm is not None else 0.0),
                    words=p.words + _starts_word(last, c, space))
            # y ending in c grows by c only through a blank: from p_nb it would stay y
            came_from = p.p_b if c == last else total
            grown.p_nb = _logaddexp(grown.p_nb, came_from + frame[c])
    return out


def _starts_word(last: int | None, c: int, space: int | None) -> int:
    """1 if appending label c to a prefix ending in ``last`` adds a word (see words(y))."""
    if space is None:
        return 1
    return int(c != space and (last is None or last == space))


def _extensions(frame: list[float], blank: int, top_k: int | None,
                margin: float | None) -> list[int]:
    """The non-blank labels that may extend a prefix at this frame (all, without pruning)."""
    labels = [c for c in range(len(frame)) if c != blank]
    if margin is not None:
        best = max(frame)
        labels = [c for c in labels if frame[c] >= best - margin]
    if top_k is not None:
        labels = sorted(labels, key=lambda c: frame[c], reverse=True)[:top_k]
    return labels


class _LMCache:
    """The LM state and next-label log-probs of the prefixes in the beam, each computed once
    while the prefix stays in the beam (a prefix that leaves and comes back is computed again:
    keeping every prefix ever seen would hold T * beam LM states)."""

    def __init__(self, lm: PrefixLM, V: int):
        self.lm = lm
        state, log_probs = lm.start()
        if log_probs.shape != (V,):
            raise ValueError(f"the LM scores {tuple(log_probs.shape)} labels, the frames have "
                             f"{V}: they must share one label set")
        self.entries = {(): (state, log_probs.tolist())}

    def cover(self, prefixes: list[tuple]) -> None:
        """Compute the prefixes that lack an entry in one batched ``extend`` call, then forget
        every entry but theirs. A new prefix's parent was in the previous frame's beam, so it
        is still here."""
        new = [y for y in prefixes if y not in self.entries]
        if new:
            states = [self.entries[y[:-1]][0] for y in new]
            for y, (state, log_probs) in zip(new, self.lm.extend(states, [y[-1] for y in new]),
                                             strict=True):
                self.entries[y] = (state, log_probs.tolist())
        self.entries = {y: self.entries[y] for y in prefixes}

    def next_log_probs(self, y: tuple) -> list[float]:
        return self.entries[y][1]

    def end(self, y: tuple) -> float:
        return float(self.lm.end(self.entries[y][0]))


def _check_blank(blank: int, V: int) -> None:
    if not 0 <= blank < V:
        raise ValueError(f"blank must be a label id in 0..{V - 1}, got {blank}")


def _check_search_args(log_probs: Tensor, beam: int, blank: int, space: int | None,
                       top_k: int | None, margin: float | None) -> None:
    if not isinstance(log_probs, Tensor) or log_probs.dim() != 2:
        raise ValueError("log_probs must be a (T, V) tensor of one utterance, got "
                         f"{getattr(log_probs, 'shape', type(log_probs).__name__)}")
    if bool(torch.isnan(log_probs).any()):
        raise ValueError("log_probs contains nan")
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an int >= 1, got {beam!r}")
    V = log_probs.shape[1]
    _check_blank(blank, V)
    if space is not None and (not 0 <= space < V or space == blank):
        raise ValueError(f"space must be a non-blank label id in 0..{V - 1}, got {space}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"label_top_k must be >= 1 (None: no pruning), got {top_k}")
    if margin is not None and not margin >= 0:
        raise ValueError(f"label_margin must be >= 0 (None: no pruning), got {margin}")


class _CharLMState(NamedTuple):
    rnn: tuple[Tensor, ...]  # the model's state, tuple of (L, 1, H)
    log_probs: Tensor  # (V,) next speech label
    end: float  # log-prob that the text ends here


class CharLMScorer:
    """PrefixLM over a character language model trained by ``rnnkit train``
    (rnnkit.models.char_lm.CharLM), stepped one character per call with ``model.stepper()``.

    Args:
        model: the CharLM.
        lm_vocab: its CharVocab.
        labels: ``labels[i]`` is the character of speech label id i (``labels[blank]`` is
            unused, e.g. ""). A label that is not one character the LM knows gets ``floor`` as
            its log-prob, and reading it leaves the LM's state as it was.
        start_text: read by the LM before the first label: a newline, so the LM starts as at
            the beginning of a line. Characters the LM does not know are skipped. A lines-mode
            LM (with <bos>) reads <bos> first.
        floor: the log-prob of a label the LM cannot produce.
        precision: of the LM's steps ("fp32", "bf16", "int8"; layers/recurrent_step.py).

    ``end`` is the log-prob of "\\n" (else of <eos>, in lines mode; else 0.0).
    """

    def __init__(self, model, lm_vocab, labels: list[str], start_text: str = "\n",
                 floor: float = math.log(1e-6), precision: str = "fp32"):
        if getattr(lm_vocab, "kind", None) != "char":
            raise ValueError("CharLMScorer needs a character vocabulary (CharVocab), got "
                             f"{type(lm_vocab).__name__}")
        self.model, self.vocab, self.floor = model, lm_vocab, float(floor)
        self.device = next(model.parameters()).device
        self.step = model.stepper(precision)
        ids = [self._lm_id(ch) for ch in labels]
        self.lm_ids = ids  # per speech label, its LM token id or None
        self.index = torch.tensor([-1 if i is None else i for i in ids], device=self.device)
        self.end_id = self._lm_id("\n")
        if self.end_id is None and EOS in lm_vocab.specials:
            self.end_id = lm_vocab.id_of(EOS)
        self.start_ids = [lm_vocab.id_of(BOS)] if BOS in lm_vocab.specials else []
        self.start_ids += [i for i in map(self._lm_id, start_text) if i is not None]
        if not self.start_ids:
            raise ValueError(f"start_text {start_text!r} has no character the LM knows: it "
                             "needs one token to read before the first label")

    def _lm_id(self, ch: str) -> int | None:
        if len(ch) != 1 or self.vocab.unknown_in(ch):
            return None
        return int(self.vocab.encode(ch)[0])

    @torch.no_grad()
    def start(self) -> tuple[_CharLMState, Tensor]:
        state = None
        for i in self.start_ids:
            logits, state = self.step(torch.tensor([i], device=self.device), state)
        first = self._states(logits, state)[0]
        return first, first.log_probs

    @torch.no_grad()
    def extend(self, states: list[_CharLMState], tokens: list[int],
               ) -> list[tuple[_CharLMState, Tensor]]:
        out: list[_CharLMState | None] = [None] * len(states)
        rows = []  # the (state, token) pairs the LM reads
        for k, (state, token) in enumerate(zip(states, tokens, strict=True)):
            if self.lm_ids[token] is None:
                out[k] = state  # the LM cannot read it: the floor was its whole score
            else:
                rows.append(k)
        if rows:
            # one step for all of them: the states stacked along the batch dimension
            rnn = tuple(torch.cat(parts, dim=1) for parts in zip(*(states[k].rnn for k in rows)))
            ids = torch.tensor([self.lm_ids[tokens[k]] for k in rows], device=self.device)
            logits, rnn = self.step(ids, rnn)
            for k, new in zip(rows, self._states(logits, rnn), strict=True):
                out[k] = new
        return [(s, s.log_probs) for s in out]

    def end(self, state: _CharLMState) -> float:
        return state.end

    def _states(self, logits: Tensor, rnn: tuple[Tensor, ...]) -> list[_CharLMState]:
        """Split a step's (B, V_lm) logits and (L, B, H) state into B per-prefix states."""
        lm = logits.float().log_softmax(dim=-1)
        mapped = lm[:, self.index.clamp(min=0)].masked_fill(self.index < 0, self.floor).cpu()
        ends = lm[:, self.end_id].tolist() if self.end_id is not None else [0.0] * len(lm)
        return [_CharLMState(tuple(s[:, b:b + 1] for s in rnn), mapped[b], ends[b])
                for b in range(len(lm))]
