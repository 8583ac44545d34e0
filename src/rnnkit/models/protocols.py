"""The contracts between the models and the code that decodes them (decoding.py, the tasks).

Models keep them structurally: nothing here is a base class, and a model never inherits from
these. They are ``runtime_checkable``, so ``isinstance(step, PrefillStep)`` tells the steppers
that can read a whole prompt at once from those that cannot; ``isinstance`` checks only that
the members exist, not their signatures.

- ``LanguageModel``: CharLM (recurrent, ``carries_state`` True) and GPT (transformer, False).
- ``ConditionalDecoder``: Seq2Seq and Captioner, which write a sequence from an encoded input.
- ``Step``: what ``stepper()`` returns, one token per row per call; ``PrefillStep`` also reads
  a prompt in one pass (GPT's stepper fills its key/value cache that way).

Shapes: B batch (rows decoded together), T time, V vocabulary, M selected rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Step(Protocol):
    """One decoding step: ``scores, state = step(tokens, state)``.

    Args:
        tokens: (B,) int64, the token each row reads next.
        state: what the previous call returned; None starts a language model's rows.

    Shape: scores (B, V) float32: logits for a language model's stepper, log-probabilities
    for a conditional decoder's (which also serve as logits: they differ by a constant per row).
    """

    def __call__(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]: ...


@runtime_checkable
class PrefillStep(Step, Protocol):
    """A ``Step`` that can also read a whole prompt in one pass."""

    def prefill(self, tokens: Tensor) -> tuple[Tensor, Any]:
        """(B, V) logits after reading ``tokens`` (B, T) from an empty state, and the state to
        step on from: the same as calling the step on each column of ``tokens`` in turn."""
        ...


@runtime_checkable
class LanguageModel(Protocol):
    """A next-token model over one sequence: ``logits, state = model(tokens, state)``."""

    carries_state: bool
    """True: the state after one training window starts the next (a recurrent model). False:
    each window starts afresh and ``forward`` takes and returns None (a transformer, whose
    context is the window itself)."""

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """tokens (B, T) int64 -> logits (B, T, V), and the state after them."""
        ...

    def init_state(self, batch_size: int) -> Any:
        """The state ``batch_size`` new rows start from (None where the model builds it)."""
        ...

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """Rows ``index`` (M,) int64 of ``state``, in that order: beam search keeps, drops and
        repeats hypotheses."""
        ...

    def stepper(self, precision: str = "fp32") -> Step:
        """The fast single-step path for decoding, made once per decoding; its logits are the
        last position of ``forward``. ``precision``: "fp32", "bf16" or (recurrent) "int8"."""
        ...


@runtime_checkable
class ConditionalDecoder(Protocol):
    """A model that encodes an input (a source sequence, an image) into the initial state of a
    decoder, which then writes the output one token at a time."""

    encode: Callable[..., Any]
    """The model's inputs (Seq2Seq: src, src_lengths; Captioner: images) -> the decoder state
    of one row per example."""

    def decode(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """tokens (B, T) int64 -> logits (B, T, V), and the state after them (teacher forcing)."""
        ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """tokens (B,) -> log-probabilities (B, V) through the sequence kernel (a ``Step``)."""
        ...

    def stepper(self, precision: str = "fp32") -> Step:
        """``step`` without the sequence kernel's cost per call, made once per decoding."""
        ...

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """Rows ``index`` (M,) int64 of ``state``, in that order (see LanguageModel)."""
        ...
