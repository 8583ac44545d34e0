"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def save_results(obj, *paths: str | Path | None, echo: bool = True):
    """Write ``obj`` as indented JSON to each of ``paths`` (None skipped), each atomically,
    and print it when ``echo``: how the examples report. Returns ``obj``."""
    for path in paths:
        if path is not None:
            atomic_write_json(path, obj)
    if echo:
        print(json.dumps(obj, indent=2, ensure_ascii=False))
    return obj
