"""Shared by the benchmark scripts: print the result as JSON, and save it when asked."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, save: str | None = None) -> dict:
    text = json.dumps(result, indent=2)
    print(text)
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        Path(save).write_text(text + "\n")
    return result
