"""--tensorboard [DIR]: TensorBoard event files beside metrics.jsonl, written as its records
are (``TensorBoardLog`` wraps a MetricsLog, records.py).

    train/loss, train/lr, train/teacher_forcing_prob, train/<units>_per_sec   every record
    val/<metric> (val_loss as val/loss, ...), and the sample text (sample)   every evaluation

Rank 0 alone writes, as it alone writes metrics.jsonl. A resumed (or rolled back) run drops
the events past its checkpoint's step, as metrics.jsonl drops its records (purge_step).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .distributed import SameOnEveryRank
from .stages import stage_name

# keys of every record (metrics.jsonl) and their tags; also val_* and the throughput
TRAIN_TAGS = {"train_loss": "train/loss", "lr": "train/lr",
              "teacher_forcing_prob": "train/teacher_forcing_prob"}


def check_tensorboard(folder: str | None) -> None:
    """One error line, before any run folder exists, when --tensorboard cannot work."""
    if folder is not None and importlib.util.find_spec("tensorboard") is None:
        raise SameOnEveryRank("--tensorboard needs the tensorboard package: pip install "
                              "tensorboard")


def with_tensorboard(metrics, folder: str | None, out: Path, keep_until: int | None):
    """``metrics`` (a MetricsLog), also written to TensorBoard in ``folder`` (--tensorboard
    DIR; "" for the flag alone: RUN_DIR/tensorboard); as it is for None (no --tensorboard)."""
    if folder is None:
        return metrics
    return TensorBoardLog(metrics, Path(folder) if folder else out / "tensorboard", keep_until,
                          out / "samples")


def tag_of(key: str) -> str | None:
    """The TensorBoard tag of a record's key; None for the keys not shown (step, elapsed, the
    counts of skipped steps)."""
    if key in TRAIN_TAGS:
        return TRAIN_TAGS[key]
    if key.startswith("val_"):
        return "val/" + key.removeprefix("val_")
    return "train/" + key if key.endswith("_per_sec") else None


class TensorBoardLog:
    """A MetricsLog that also writes each record to TensorBoard. ``keep_until``: the step a
    resumed run continues from (the events after it are dropped), None for a new run."""

    def __init__(self, metrics, folder: Path, keep_until: int | None, samples: Path):
        from torch.utils.tensorboard import SummaryWriter  # seconds to import: only when used

        self.metrics, self.samples = metrics, samples
        purge = keep_until + 1 if keep_until is not None else None
        self.writer = SummaryWriter(str(folder), purge_step=purge)

    def write(self, record: dict, evaluated: bool = False) -> None:
        self.metrics.write(record, evaluated)
        step = record["step"]
        for key, value in record.items():
            tag = tag_of(key)
            if tag and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, value, step)
        sample = self.samples / f"{stage_name(step)}.txt"  # the vision tasks' are .png
        if evaluated and sample.is_file():
            text = sample.read_text(encoding="utf-8", errors="replace")
            self.writer.add_text("sample", "```\n" + text + "\n```", step)  # kept verbatim
        self.writer.flush()

    def close(self) -> None:
        self.metrics.close()
        self.writer.close()
