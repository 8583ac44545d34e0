"""Config dataclasses -> argparse flags, and parsed flags -> config override layers."""

from __future__ import annotations

import argparse
import ast
import inspect
from dataclasses import fields
from functools import cache
from typing import Literal, get_args, get_origin, get_type_hints

# char-rnn's flag names where ours differ from the dataclass field
FLAG_NAMES = {"hidden_size": "rnn-size"}
SKIP = {"vocab_size", "tgt_vocab_size", "num_classes", "num_tags"}  # sizes from the data
METAVARS = {int: "N", float: "F", str: "S"}  # filled in from the data, never set by hand


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


def flag_type(hint):
    """(argparse type, choices) for a field's type hint."""
    if get_origin(hint) is Literal:
        return type(get_args(hint)[0]), get_args(hint)
    args = [a for a in get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), None


def add_dataclass_arguments(parser, classes, section: str) -> None:
    """One ``--field-name`` flag per field of the dataclass(es), the first class's help where
    names repeat; unset flags stay absent (defaults live elsewhere)."""
    group = parser.add_argument_group(f"{section} settings")
    seen = set(SKIP)
    for cls in classes if isinstance(classes, (list, tuple)) else [classes]:
        for f in fields(cls):
            if f.name not in seen:
                seen.add(f.name)
                add_field(group, f, get_type_hints(cls)[f.name], field_docs(cls), section)


def add_field(group, f, hint, docs: dict, section: str) -> None:
    if True:
        kind, choices = flag_type(hint)
        flag = "--" + FLAG_NAMES.get(f.name, f.name.replace("_", "-"))
        if kind is bool:  # --flag / --no-flag
            group.add_argument(flag, dest=f"{section}.{f.name}", default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction,
                               help=f"{docs.get(f.name, '')} (default: {f.default})")
            return
        group.add_argument(flag, dest=f"{section}.{f.name}", type=kind, choices=choices,
                           default=argparse.SUPPRESS, metavar=None if choices else
                           "FILE" if f.name == "data" else METAVARS[kind],
                           help=f"{docs.get(f.name, '')} (default: {f.default})")


def overrides(args: argparse.Namespace) -> dict:
    """{"model": {...}, "train": {...}} from the flags that were given."""
    layer: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            layer.setdefault(section, {})[name] = value
    return layer
