"""Files in and out: input paths checked with one clear error, and atomic writes (a reader, or
a run killed mid-write, sees the old file or the new one)."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from .errors import RnnkitError

# atomic_write's temp files: .NAME.XXXXXXXX.tmp; a process killed mid-write leaves one behind
TEMP_GLOB = ".*.tmp"


def input_file(path: str | Path, flag: str = "--data", what: str = "data file") -> Path:
    """``path`` if it can be read as a file (a pipe such as <(...) counts), else one error that
    says what is wrong with it: missing, a directory, a symlink loop, unreadable."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise RnnkitError(f"{what} {str(p)!r} not found; check the {flag} path") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RnnkitError(f"{what} {str(p)!r} is a symlink loop (its links point back at "
                              f"each other); give {flag} the file itself") from None
        raise RnnkitError(f"{what} {str(p)!r} cannot be read ({e.strerror}); check the {flag} "
                          "path") from None
    if stat.S_ISDIR(mode):
        raise RnnkitError(f"{what} {str(p)!r} is a directory; give {flag} a file in it")
    if not os.access(p, os.R_OK):
        raise RnnkitError(f"{what} {str(p)!r} is not readable (permission denied); check its "
                          "permissions, or copy it somewhere you can read it")
    return p


def npz_arrays(path: str | Path, keys: tuple[str, ...], task: str
               ) -> tuple[dict[str, np.ndarray], Path]:
    """The arrays of a .npz file (pickles refused) and its path; one error line when the file
    is not a readable .npz or lacks one of ``keys`` (which ``--task task`` needs)."""
    p = input_file(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # a truncated zip, a pickle, a non-npz file
        raise RnnkitError(f"{p} is not a readable .npz file ({str(e)[:80]}); save the arrays "
                          "with numpy.savez") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise RnnkitError(f"{p} has no array named {missing[0]!r} (it holds "
                          f"{sorted(arrays)}); --task {task} needs {list(keys)}")
    return arrays, p


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    atomic_write_all({Path(path): write})


def atomic_write_all(files: dict) -> None:
    """Write several files as one: ``{path: write}`` with ``write(f)`` as for ``atomic_write``.
    Every file is written to its temp file first and only then are all renamed into place, so
    a failure in any write leaves every path as it was (an export's weights never appear
    without the metadata beside them)."""
    paths = [Path(p) for p in files]
    for path in paths:  # a folder in the way would fail the rename, after the others
        if path.is_dir():
            raise RnnkitError(f"{str(path)!r} is a folder; choose another name")
    temps: dict[Path, str] = {}
    try:
        for path, write in zip(paths, files.values(), strict=True):
            try:
                fd, temps[path] = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                   suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(temps[path], 0o666 & ~_umask())  # mkstemp's 0600: the usual mode
            except OSError as e:
                raise with_filename(e, path) from None
        for path in paths:
            os.replace(temps.pop(path), path)
    finally:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)


def with_filename(e: OSError, path: str | Path) -> OSError:
    """``e``, naming ``path`` when it names no file (a failed write() on a full disk) or only
    the temp file written for it (.NAME.XXXXXXXX.tmp), which the user never asked for."""
    temp = e.filename is not None and Path(str(e.filename)).name.startswith(
        f".{Path(path).name}.") and str(e.filename).endswith(".tmp")
    if (e.filename is not None and not temp) or e.errno is None:
        return e
    return type(e)(e.errno, e.strerror, str(path))


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files that killed writers left in ``folder`` and below; returns them."""
    left = [p for p in folder.rglob(TEMP_GLOB) if p.is_file()]
    for p in left:
        p.unlink(missing_ok=True)
    return left


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
