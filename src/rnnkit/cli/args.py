"""Config dataclasses -> argparse flags, and parsed flags -> config override layers."""

from __future__ import annotations

import argparse
import ast
import inspect
from collections.abc import Mapping
from dataclasses import fields
from functools import cache
from typing import Literal, get_args, get_origin, get_type_hints

from ..models import DATA_SIZES
from ..training.config import FLAG_NAMES

METAVARS = {int: "N", float: "F", str: "S", "data": "FILE", "init_from": "RUN_DIR|CHECKPOINT",
            "tensorboard": "DIR", "encoding": "CODEC", "corpus": "NAME"}


@cache
def field_docs(cls) -> dict[str, str]:
    """The string literal under each dataclass field (its attribute docstring), base classes
    included."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if hasattr(k, "__dataclass_fields__")]):
        body = ast.parse(inspect.getsource(klass)).body[0].body
        docs.update({a.target.id: b.value.value for a, b in zip(body, body[1:])
                     if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr)
                     and isinstance(b.value, ast.Constant)})
    return docs


def flag_type(hint, metadata: Mapping | None = None):
    """(argparse type, choices) for a field's type hint and metadata. A field's
    ``metadata["choices"]``, a zero-arg callable, is read here, as the parser is built: its
    names come from a table that may grow after import (a registered cell)."""
    if metadata and "choices" in metadata:
        return hint, tuple(metadata["choices"]())
    if get_origin(hint) is Literal:
        return type(get_args(hint)[0]), get_args(hint)
    args = [a for a in get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), None


def add_dataclass_arguments(parser, classes, section: str) -> None:
    """One ``--field-name`` flag per field of the dataclass(es): a class, or {task: class}
    for settings that differ by task (the first class's help where names repeat, and each
    task's default where they differ). Unset flags stay absent (defaults live elsewhere)."""
    group = parser.add_argument_group(f"{section} settings")
    by_task = classes if isinstance(classes, dict) else {"": classes}
    seen = set(DATA_SIZES)  # filled in from the data, never set by hand
    for cls in by_task.values():
        for f in fields(cls):
            if f.name not in seen:
                seen.add(f.name)
                help = f"{field_docs(cls).get(f.name, '')} ({defaults_text(f.name, by_task)})"
                help = help.replace("%", "%%")  # argparse formats help with %
                add_field(group, f.name, get_type_hints(cls)[f.name], help, section,
                          f.metadata)


def defaults_text(name: str, by_task: dict) -> str:
    """"default: X", or "defaults: lm 256, frames 64" when the tasks' defaults differ; a
    field's ``metadata["default_text"]`` where its default depends on other settings."""
    values = {task: f.default for task, cls in by_task.items() for f in fields(cls)
              if f.name == name}
    texts = {f.metadata["default_text"] for cls in by_task.values() for f in fields(cls)
             if f.name == name and "default_text" in f.metadata}
    if texts:
        return f"default: {texts.pop()}"
    if len(set(map(repr, values.values()))) == 1:
        value = next(iter(values.values()))
        return "default: not set" if value is None else f"default: {value}"
    return "defaults: " + ", ".join(f"{task} {value}" for task, value in values.items())


def add_field(group, name: str, hint, help: str, section: str,
              metadata: Mapping | None = None) -> None:
    kind, choices = flag_type(hint, metadata)
    flag = "--" + FLAG_NAMES.get(name, name.replace("_", "-"))
    # a renamed setting also answers to its own name, which errors and config files use
    flags = [flag] + (["--" + name.replace("_", "-")] if name in FLAG_NAMES else [])
    if kind is bool:  # --flag / --no-flag
        group.add_argument(*flags, dest=f"{section}.{name}", default=argparse.SUPPRESS,
                           action=argparse.BooleanOptionalAction, help=help)
        return
    # metadata["const"]: the value of the flag given alone (--tensorboard [DIR])
    given_alone = metadata and "const" in metadata
    optional = {"nargs": "?", "const": metadata["const"]} if given_alone else {}
    group.add_argument(*flags, dest=f"{section}.{name}", type=kind, choices=choices,
                       default=argparse.SUPPRESS, help=help, **optional,
                       metavar=None if choices else METAVARS.get(name, METAVARS[kind]))


def overrides(args: argparse.Namespace) -> dict:
    """{"model": {...}, "train": {...}} from the flags that were given."""
    layer: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            layer.setdefault(section, {})[name] = value
    return layer


def as_flags(args: argparse.Namespace) -> list[str]:
    """The dataclass flags that were given, back as command-line words (``overrides``
    inverted), to start the same command again in other processes."""
    words = []
    for key, value in vars(args).items():
        if "." not in key:
            continue
        name = key.split(".", 1)[1]
        flag = "--" + FLAG_NAMES.get(name, name.replace("_", "-"))
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:  # --flag=value: a value that starts with "-" stays a value
            words.append(f"{flag}={value}")
    return words
