"""The checks every model config runs in ``__post_init__``, so a bad value fails with a clear
message before any layer is built (the CLI shows it as one line)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import field, fields
from typing import Literal, get_args, get_origin, get_type_hints

from ..layers.cells import CELLS


def cell_field(table: Mapping[str, type] = CELLS, default: str = "lstm"):
    """A config's ``cell`` field: a name in ``table`` (layers' CELLS, or CONV_CELLS).

    Its ``metadata["choices"]`` is a zero-arg callable returning the names, read when a
    config is checked or a parser built, so a cell registered after import is accepted.
    """
    return field(default=default, metadata={"choices": lambda: tuple(table)})


def check_config(cfg, positive: tuple[str, ...]) -> None:
    """``positive`` fields must be >= 1, ``dropout`` (if any) in [0, 1), every float finite,
    and every field with choices (``metadata["choices"]`` or a Literal type) one of them."""
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if hasattr(cfg, "dropout") and not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    hints = get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value}")
        if "choices" in f.metadata:
            choices = tuple(f.metadata["choices"]())
        else:
            choices = get_args(hints[f.name]) if get_origin(hints[f.name]) is Literal else None
        if choices is not None and getattr(cfg, f.name) not in choices:
            raise ValueError(f"{f.name} must be one of {choices}, got {getattr(cfg, f.name)!r}")
