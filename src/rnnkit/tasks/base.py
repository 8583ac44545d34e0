"""What a task supplies: the ``Task`` protocol (one object per ``--task`` name) and the
``TaskRun`` protocol (what a task prepared for one training run).

The generic trainer (training/loop.py), checkpoints, ``rnnkit eval`` / ``predict`` and the
Python API only ever talk to these two protocols: none of them asks which task it runs.

    Task      name, checkpoint kind, models (--model name -> model and config classes),
              config checks, prepare() for training, and for a trained model: its vocabulary
              from checkpoint meta, evaluate() and predict()
    TaskRun   the data of one run: batches by step, the training forward and loss, the
              validation metrics, a sample at each evaluation, and the checkpoint meta

A new task is one module that defines a Task and one line that registers it (``TASKS`` in
tasks/__init__.py); tests/test_custom_task.py is the worked example.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..decoding import SamplingConfig
from ..errors import RnnkitError
from ..limits import check_seed

Batch = dict[str, Tensor]


@dataclass
class DecodeSettings:
    """How a conditional model writes its output (classifiers take the most likely label)."""
    beam: int = 1
    """Beam width; 1 is greedy decoding."""
    n_best: int = 1
    """Hypotheses returned per input (<= beam)."""
    length_penalty: float = 0.0
    """GNMT's alpha: scores are divided by ((5 + length) / 6) ** alpha; 0 = raw log-prob."""
    max_length: int | None = None
    """Longest output, in tokens (None: the model's own limit, twice its longest training
    target plus 10)."""
    sampling: SamplingConfig | None = None
    """Sample (temperature, top-k, top-p) instead of searching."""
    seed: int = 1337
    lm: Any = None
    """transcribe: a character language model, (model, vocab) as ``api.load`` gives them,
    fused into the beam search."""
    lm_weight: float = 0.5
    """transcribe: the language model's weight in the search's score."""
    word_bonus: float = 0.0
    """transcribe: added to the score per word written (offsets the language model's
    preference for short texts)."""

    def __post_init__(self):
        if self.beam < 1 or not 1 <= self.n_best <= self.beam or (self.max_length or 1) < 1:
            raise RnnkitError(f"need --beam >= 1, 1 <= --n-best <= --beam and --max-length >= 1, "
                              f"got {self.beam}, {self.n_best} and {self.max_length}")
        if not (math.isfinite(self.lm_weight) and math.isfinite(self.word_bonus)
                and self.lm_weight >= 0):
            raise RnnkitError(f"--lm-weight must be a number >= 0 and --word-bonus a finite "
                              f"number, got {self.lm_weight} and {self.word_bonus}")
        if self.sampling is not None and self.beam > 1:
            raise RnnkitError("sampling and --beam > 1 exclude each other; drop one of them")
        check_seed(self.seed)


@dataclass
class EvalRequest:
    """What ``rnnkit eval`` asks of a trained model (fields a task does not use are ignored)."""
    data: str | None = None
    """Another file to evaluate on (None: the run's own data)."""
    split: str | None = None
    """val, test or all (None: the task's default)."""
    batch_size: int | None = None
    beam: int = 1
    free_running: bool = False
    """Language models: also score greedy continuations (exposure bias)."""
    prefix: int = 10
    continuation: int = 50
    max_cases: int = 1000
    encoding: str | None = None
    """The character encoding of ``data`` (None: the run's --encoding)."""
    lm: Any = None
    """transcribe: a character language model fused into the search (DecodeSettings.lm)."""
    lm_weight: float = 0.5
    word_bonus: float = 0.0


@dataclass
class PredictRequest:
    """What ``rnnkit predict`` asks of a trained model."""
    input: str | None = None
    """One input per line ("-": stdin), or a .npz file for the vision tasks."""
    count: int = 8
    """Vision tasks without an input: generated test examples."""
    batch_size: int = 64
    settings: DecodeSettings = field(default_factory=DecodeSettings)


@runtime_checkable
class TaskRun(Protocol):
    """A task's data for one training run, as the trainer uses it.

    ``carries_state``: the recurrent state flows from one batch into the next (a language
    model's stream mode); ``units``: what ``count`` measures, logged as <units>_per_sec.
    """

    carries_state: bool

    def meta(self) -> dict:
        """What the checkpoint's meta holds besides the config: vocabularies, classes ..."""

    def batch(self, step: int) -> tuple[Batch, bool]:
        """Training batch ``step`` (a pure function of the step, so resume is exact), CPU
        tensors; and whether it starts fresh (no state carried into it)."""

    def count(self, batch: Batch) -> int:
        """Units trained on in ``batch`` (characters, examples), padding excluded."""

    def forward(self, model: nn.Module, batch: Batch, state: Any, eps: float
                ) -> tuple[Tensor, Any]:
        """The training forward: (outputs, state). eps < 1: scheduled sampling feeds some of
        the model's own outputs back."""

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        """The mean training loss of ``forward``'s outputs."""

    def evaluate(self, model: nn.Module, ranks) -> dict:
        """Validation metrics, keys prefixed val_ (val_loss decides best.pt); {} if no
        val split. ``ranks``: the training processes (their ``sum`` adds up shares)."""

    def write_sample(self, model: nn.Module, folder: Path, step: int) -> None:
        """Something to read progress by, written into RUN_DIR/samples at an evaluation."""


class Task(Protocol):
    """One ``--task``: everything the trainer, the checkpoints and the commands need.

    Attributes:
        name: the ``--task`` value.
        kind: the checkpoint's ``meta["kind"]``.
        help: one line for ``rnnkit train --help``.
        models: ``--model`` name -> (model class, config class); "rnn" is the default.
        meta_keys: keys a checkpoint's meta must hold for this task (its vocabulary).
        units: what the trainer's rate counts ("chars", "examples").
        data_parallel: whether it trains under torchrun (``loss_sum`` then exists).
        compilable: whether --compile applies (the training forward is one module call).
        tokenized: whether --tokenizer applies.
        predicts_files: ``predict`` writes files into a folder rather than lines.
    """

    name: str
    kind: str
    help: str
    models: dict[str, tuple[type, type]]
    meta_keys: tuple[str, ...]
    units: str
    data_parallel: bool
    compilable: bool
    tokenized: bool
    predicts_files: bool

    def check(self, cfg) -> None:
        """Refuse settings that do not fit the task (raise ValueError with the fix)."""

    def prepare(self, model_cfg, cfg, out: Path, meta: dict | None, ranks) -> TaskRun:
        """Read the run's data (checking it against a resumed run's ``meta``), fill the data's
        sizes into ``model_cfg`` and return the run's TaskRun."""

    def vocab(self, meta: dict, model: nn.Module) -> Any:
        """A trained model's vocabulary from its checkpoint meta, checked against the model."""

    def evaluate(self, model: nn.Module, vocab: Any, meta: dict, cfg,
                 request: EvalRequest) -> dict:
        """``rnnkit eval``: the task's metrics on a split of its data or another file
        (``cfg``: the run's TrainConfig, from the checkpoint)."""

    def predict(self, model: nn.Module, vocab: Any, meta: dict, cfg, request: PredictRequest):
        """``rnnkit predict``: one output line per input (a list of str), or for a task that
        ``predicts_files`` an object with ``write(folder)``."""


def slices(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``size`` covering range(n) (the last may be shorter)."""
    for i in range(0, n, size):
        yield slice(i, i + size)


def sample_path(folder: Path, step: int, suffix: str = ".txt") -> Path:
    """RUN_DIR/samples/step_XXXXXX.suffix, its folder made."""
    folder.mkdir(exist_ok=True)
    return folder / f"step_{step:06d}{suffix}"
