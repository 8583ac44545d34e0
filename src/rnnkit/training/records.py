"""metrics.jsonl (one JSON record per line) and the console line of an evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..fileio import atomic_write_bytes, with_filename


class MetricsLog:
    """metrics.jsonl, one record per line, flushed as written; trimmed to a step on resume
    (``log`` says so when that drops a line that was cut off or garbled)."""

    def __init__(self, path: Path, keep_until: int | None, log=print):
        self.path = path
        if keep_until is not None and path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            torn = sum(parse_step(line) is None for line in lines)
            if torn:
                log(f"warning: {path}: dropped {torn} unreadable line(s), cut off or garbled "
                    "(a crash or a full disk while it was written); the other records are kept")
            kept = [line for line in lines
                    if (step := parse_step(line)) is not None and step <= keep_until]
            atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())
        self.file = open(path, "a" if keep_until is not None else "w", encoding="utf-8")

    def write(self, record: dict, evaluated: bool = False) -> None:
        """``evaluated``: the record of an evaluation (a sample was written at its step)."""
        try:
            # strict JSON: a non-finite number (an overflowing perplexity) is written as null
            self.file.write(json.dumps(finite(record), allow_nan=False) + "\n")
            self.file.flush()
        except OSError as e:
            raise with_filename(e, self.path) from None

    def close(self) -> None:
        self.file.close()


class NoMetrics:
    """What ranks other than 0 hold instead of metrics.jsonl: rank 0 alone writes files."""

    def write(self, record: dict, evaluated: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def parse_step(line: str) -> int | None:
    """A record's step; None for a torn or garbled line (a machine crash mid-write)."""
    try:
        step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def finite(record: dict) -> dict:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()}



def describe(record: dict) -> str:
    """One console line for an evaluation record."""
    parts = [f"step {record['step']}"]
    if record.get("train_loss") is not None:
        parts.append(f"train loss {record['train_loss']:.4f}")
    if "val_bpc" in record:
        parts.append(f"val loss {record['val_loss']:.4f} ({record['val_bpc']:.3f} bpc, "
                     f"ppl {record['val_ppl']:.2f})")
    elif "val_loss" in record:  # a pair task: its loss, then its own metrics
        parts += [f"{k.replace('_', ' ')} {v:.4f}" for k, v in record.items()
                  if k.startswith("val_") and isinstance(v, float)]
    rate = next(k for k in record if k.endswith("_per_sec"))
    return ", ".join(parts) + f", {record[rate]:,.0f} {rate[:-8]}/s"
