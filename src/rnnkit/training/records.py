"""metrics.jsonl (one JSON record per line) and the console line of an evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..fileio import atomic_write_bytes


class MetricsLog:
    """metrics.jsonl, one record per line, flushed as written; trimmed to a step on resume."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        if keep_until is not None and path.is_file():
            kept = [line for line in path.read_text(errors="replace").splitlines()
                    if parse_step(line) <= keep_until]
            atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())
        self.file = open(path, "a" if keep_until is not None else "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class NoMetrics:
    """What ranks other than 0 hold instead of metrics.jsonl: rank 0 alone writes files."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def parse_step(line: str) -> float:
    """A record's step; a torn or garbled line (a machine crash mid-write) counts as none."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf



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
