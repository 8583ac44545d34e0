"""What a language model computes over a text: each character's probability and every hidden
unit's activation after reading it, and which units track a feature of the text.

Karpathy's "The Unreasonable Effectiveness of Recurrent Neural Networks" (2015) and Karpathy,
Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks" (2015) found cells that
turn on inside quotes, count the position in a line or follow bracket depth. ``rank_units``
looks for them the same way: the Pearson correlation of each unit with a feature of the text.

Shapes: T characters, L layers, S state tensors per layer (h, and c for an LSTM), H units,
K alternatives, N = L * S * H units in all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.vocab import BOS, EOS, CharVocab, codepoints
from ..decoding import prompt_ids
from ..errors import RnnkitError
from ..layers.recurrent import Recurrent

QUOTES = '"'
OPENING, CLOSING = "([{", ")]}"


def inside_quotes(text: str) -> np.ndarray:
    """1 after reading a character that leaves us inside a double-quoted span (the opening
    quote included, the closing one not), else 0."""
    flips = np.array([c in QUOTES for c in text], dtype=np.int64)
    return (np.cumsum(flips) % 2).astype(np.float32)


def line_position(text: str) -> np.ndarray:
    """Characters since the last newline: 0 at a newline, 1 at the first character after it."""
    out, pos = np.zeros(len(text), np.float32), 0
    for t, c in enumerate(text):
        pos = 0 if c == "\n" else pos + 1
        out[t] = pos
    return out


def inside_brackets(text: str) -> np.ndarray:
    """1 after reading a character that leaves a (, [ or { open (the opening bracket
    included, the closing one not), else 0; a stray closing bracket is ignored."""
    out, depth = np.zeros(len(text), np.float32), 0
    for t, c in enumerate(text):
        if c in OPENING:
            depth += 1
        elif c in CLOSING:
            depth = max(depth - 1, 0)
        out[t] = depth > 0
    return out


def in_word(text: str) -> np.ndarray:
    """1 on letters, 0 elsewhere."""
    return np.array([c.isalpha() for c in text], dtype=np.float32)


FEATURES = {"inside_quotes": inside_quotes, "line_position": line_position,
            "inside_brackets": inside_brackets, "in_word": in_word}


@dataclass
class Activations:
    """A model's view of a text, one row per character.

    ``values`` holds h and, for an LSTM, tanh(c) (as in Karpathy et al.), so every unit lies
    in [-1, 1]; ``probs[t]`` is the probability the model gave character t before reading it,
    and ``top_ids``/``top_probs`` the K likeliest tokens at that point.
    """

    text: str
    values: np.ndarray  # (T, L, S, H) float32
    states: tuple[str, ...]  # ("h", "c") or ("h",)
    probs: np.ndarray  # (T,)
    top_ids: np.ndarray  # (T, K)
    top_probs: np.ndarray  # (T, K)

    def unit(self, layer: int, state: str, unit: int) -> np.ndarray:
        """(T,) activations of one unit."""
        return self.values[:, layer, self.states.index(state), unit]

    def flat(self) -> np.ndarray:
        """(T, N) activations, units in (layer, state, unit) order."""
        return self.values.reshape(len(self.text), -1)

    def unit_of(self, index: int) -> tuple[int, str, int]:
        """(layer, state, unit) of column ``index`` of ``flat()``."""
        layer, s, unit = np.unravel_index(index, self.values.shape[1:])
        return int(layer), self.states[s], int(unit)


def check_text(vocab: CharVocab, text: str, what: str = "the text",
               newline_ends_line: bool = True) -> None:
    """Refuse characters the model has never seen. In lines mode a newline in a text read by
    ``collect`` ends a line (its <eos>), so it is allowed there but not in a prompt."""
    if newline_ends_line and EOS in vocab.specials:
        text = text.replace("\n", "")
    unknown = vocab.unknown(codepoints(text)) if text else []
    if unknown:
        raise RnnkitError(f"{what} has character(s) outside the model's vocabulary: "
                          f"{''.join(unknown)!r}; use only characters seen in training")


def require_recurrent_chars(model, vocab, checkpoint) -> None:
    """The playground and the unit views read a recurrent model's states, character by
    character: a transformer or a model over other tokens has neither."""
    if not model.carries_state or vocab.kind != "char":
        what = "a transformer" if not model.carries_state else f"a {vocab.kind}-token model"
        raise RnnkitError(f"{checkpoint} holds {what}; the playground and the unit views "
                          "need a recurrent character model (--model rnn --tokenizer char); "
                          f"sample it with rnnkit sample {checkpoint}")


def state_names(model) -> tuple[str, ...]:
    """The names of each layer's state tensors, the cell's own: ("h", "c") for an LSTM."""
    return model.rnn.cells[0].state_names


@torch.inference_mode()
def collect(model, vocab: CharVocab, text: str, top: int = 5) -> Activations:
    """Run ``model`` over ``text`` as generation reads a prompt: from a zero state, after
    <bos> in lines mode. In lines mode each line is read on its own, as in training: a newline
    is the line's <eos>, and its activations are those after <bos>. In stream mode the first
    character's probability is the one a sample gives it (after a newline, see prompt_ids).
    """
    check_text(vocab, text)
    if not text:
        raise RnnkitError("the text is empty; give some text to read")
    model.eval()
    if EOS not in vocab.specials:
        parts = [stream_rows(model, vocab, text)]
    else:
        lines = text.split("\n")
        parts = [line_rows(model, vocab, line, ended=i < len(lines) - 1)
                 for i, line in enumerate(lines)]
    probs, targets, values = (torch.cat(x) for x in zip(*parts))
    top_probs, top_ids = probs.topk(min(top, len(vocab)), dim=-1)
    return Activations(text, values.cpu().numpy(), state_names(model),
                       probs.gather(1, targets[:, None])[:, 0].cpu().numpy(),
                       top_ids.cpu().numpy(), top_probs.cpu().numpy())


def stream_rows(model, vocab: CharVocab, text: str) -> tuple[Tensor, Tensor, Tensor]:
    """(T, V) distributions each character was drawn from, its (T,) ids, and the (T, L, S, H)
    activations after reading it, from a zero state."""
    device = next(model.parameters()).device
    tokens = torch.as_tensor(vocab.encode(text), device=device)[None]
    start = torch.tensor([prompt_ids(vocab, "")], device=device)
    before = model(start)[0][0, -1:]  # what a sample starts from
    logits = torch.cat([before, model(tokens)[0][0, :-1]])
    return logits.float().softmax(-1), tokens[0], layer_states(model, tokens)


def line_rows(model, vocab: CharVocab, line: str, ended: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``stream_rows`` for one line of a lines-mode model: read after <bos>; when ``ended``,
    the line's <eos> is one more row, with the activations after <bos>."""
    device = next(model.parameters()).device
    ids = [vocab.id_of(BOS)] + [int(i) for i in vocab.encode(line)]
    tokens = torch.tensor([ids], device=device)
    targets = torch.tensor(ids[1:] + ([vocab.id_of(EOS)] if ended else []), dtype=torch.long,
                           device=device)
    probs = model(tokens)[0][0, :len(targets)].float().softmax(-1)
    states = layer_states(model, tokens)
    return probs, targets, torch.cat([states[1:], states[:1]]) if ended else states[1:]


def layer_states(model, tokens: Tensor) -> Tensor:
    """(T, L, S, H) activations of every layer after each of the (1, T) tokens: h, and an
    LSTM's tanh(c) (any state tensor after h, squashed by tanh), from a zero state.

    The stacked kernel returns only the last layer's outputs, so each layer runs alone (on the
    fused kernel, through a one-layer Recurrent sharing the model's cell), reading the layer
    below; the rest of each cell's state is then rebuilt by ``later_states``. A residual block
    (a scan cell, whose output is not its state) is stepped instead.
    """
    if not model.config.feedback:
        tokens = model._without_feedback(tokens, first=True)
    x = model.embed(tokens)  # (1, T, E)
    layers = []
    for cell in model.rnn.cells:
        if hasattr(cell, "sequence"):
            y, states = stepped_states(cell, x[0])
            y = y[None]
        else:
            layer = Recurrent(type(cell), cell.input_size, cell.hidden_size, 1, bias=cell.bias)
            layer.cells[0] = cell
            y, _ = layer(x)  # (1, T, H); eval mode: no dropout between layers
            states = [y[0], *later_states(cell, x[0], y[0])]
        parts = [states[0], *(torch.tanh(s) for s in states[1:])]
        layers.append(torch.stack(parts, dim=1))  # (T, S, H)
        x = y
    return torch.stack(layers, dim=1).float()


def stepped_states(cell, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """A cell called step by step over (T, D) ``x`` from zeros: its (T, H) outputs, and each
    of its state tensors after every step, (T, H) each."""
    state, outputs, states = cell.init_state(1, x), [], []
    for t in range(len(x)):
        y, state = cell(x[t:t + 1], state)
        outputs.append(y)
        states.append(state)
    return torch.cat(outputs), [torch.cat(s) for s in zip(*states)]


def later_states(cell, x: Tensor, h: Tensor) -> list[Tensor]:
    """(T, H) each, the state tensors after h (an LSTM's c) of a layer that read (T, D) ``x``
    from zeros and output (T, H) ``h``; none for a cell whose state is h alone.

    A cell's gates depend only on x and the previous h, both known, so they are computed for
    every step at once, and only the cell's own ``update`` runs step by step: cheap elementwise
    steps instead of T model steps. A cell without ``gates`` and ``update`` is called instead.
    """
    if cell.state_count == 1:
        return []
    h_prev = torch.cat([h.new_zeros(1, h.shape[1]), h[:-1]])
    split = hasattr(cell, "gates") and hasattr(cell, "update")
    if split:
        gi, gh = cell.gates(x, h_prev)
    state, out = cell.init_state(1, h), []
    for t in range(len(x)):
        old = (h_prev[t:t + 1], *state[1:])
        _, state = (cell.update(gi[t:t + 1], gh[t:t + 1], old) if split
                    else cell(x[t:t + 1], old))
        out.append(state[1:])
    return [torch.cat(s) for s in zip(*out)]


def layer_values(state) -> np.ndarray:
    """(L, S, H) from a batch-of-one state: h as it is, an LSTM's c squashed by tanh."""
    h = state[0][:, 0]
    parts = [h] + [torch.tanh(c[:, 0]) for c in state[1:]]
    return torch.stack(parts, dim=1).float().cpu().numpy()


def correlations(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of (T, N) ``values`` with (T,) ``feature``; 0 for a
    constant column (or a constant feature), where the correlation is undefined."""
    a = values - values.mean(axis=0)
    f = feature - feature.mean()
    norms = np.linalg.norm(a, axis=0) * np.linalg.norm(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a.T @ f) / norms
    # a column whose spread is float noise is constant too
    return np.where(norms > 1e-6, r, 0.0)


def rank_units(acts: Activations, feature: str, top: int = 10) -> list[dict]:
    """The ``top`` units whose activation tracks ``feature`` best, by |correlation|.

    Returns dicts {"layer", "state", "unit", "r"}, best first; empty when the feature does
    not vary over the text (no quotes at all, say), since nothing can track a constant.
    """
    if feature not in FEATURES:
        raise RnnkitError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    f = FEATURES[feature](acts.text)
    if len(f) < 2 or f.min() == f.max():
        return []
    r = correlations(acts.flat(), f)
    best = np.argsort(-np.abs(r), kind="stable")[:top]
    return [dict(zip(("layer", "state", "unit"), acts.unit_of(int(i))), r=round(float(r[i]), 4))
            for i in best]
