"""The checks every model config runs in ``__post_init__``, so a bad value fails with a clear
message before any layer is built (the CLI shows it as one line)."""

from __future__ import annotations

from dataclasses import fields
from typing import Literal, get_args, get_origin, get_type_hints


def check_config(cfg, positive: tuple[str, ...]) -> None:
    """``positive`` fields must be >= 1, ``dropout`` (if any) in [0, 1), and every Literal
    field one of its choices."""
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if hasattr(cfg, "dropout") and not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    hints = get_type_hints(type(cfg))
    for f in fields(cfg):
        choices = get_args(hints[f.name]) if get_origin(hints[f.name]) is Literal else ()
        if choices and getattr(cfg, f.name) not in choices:
            raise ValueError(f"{f.name} must be one of {', '.join(choices)}, got "
                             f"{getattr(cfg, f.name)!r}")
