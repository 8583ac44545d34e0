"""Tasks: ``TASKS`` is the one table that maps a ``--task`` name to its code.

The config's choices, checkpoint kinds, ``rnnkit eval`` / ``predict``, the API and the tests'
parametrisation all read this table, so registering a task is one line::

    TASKS["mytask"] = MyTask()      # an object following tasks.base.Task

(tests/test_custom_task.py does exactly this with a task defined in the test file).
"""

from __future__ import annotations

from ..errors import RnnkitError
from .base import DecodeSettings, EvalRequest, PredictRequest, Task, TaskRun
from .lm import LanguageModelTask
from .pairs import ClassifyTask, Seq2SeqTask, TagTask
from .segment import SEGMENT
from .transcribe import TRANSCRIBE
from .vision import ACTIVITY, CAPTION, FRAMES

TASKS: dict[str, Task] = {
    "lm": LanguageModelTask(),
    "seq2seq": Seq2SeqTask(),
    "classify": ClassifyTask(),
    "tag": TagTask(),
    "activity": ACTIVITY,
    "caption": CAPTION,
    "frames": FRAMES,
    "segment": SEGMENT,
    "transcribe": TRANSCRIBE,
}


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def data_parallel_tasks() -> str:
    """The tasks that train under torchrun, for messages."""
    return ", ".join(name for name, task in TASKS.items() if task.data_parallel)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise RnnkitError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def task_of_kind(kind) -> Task | None:
    """The task whose checkpoints have ``meta["kind"] == kind``; None for no task's."""
    return next((t for t in TASKS.values() if t.kind == kind), None)


__all__ = ["TASKS", "DecodeSettings", "EvalRequest", "PredictRequest", "Task", "TaskRun",
           "data_parallel_tasks", "get_task", "task_names", "task_of_kind"]
