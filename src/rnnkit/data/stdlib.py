"""The built-in corpus ``python-stdlib``: the .py files of this Python's own standard library.

Nothing is downloaded: the files are those of the running interpreter (``sysconfig``'s "stdlib"
path), so the corpus follows the Python version (Python 3.11.7: 734 files, 12.1 MB).
Folders of tests and installed packages are left out, files are taken in sorted path order,
each whole, with ``\\n`` line ends; a file that is not UTF-8 or holds a NUL is skipped.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from ..errors import RnnkitError

SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages",
                       "__pycache__"})


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | Path | None = None) -> list[Path]:
    """The .py files under ``root`` (default: the standard library), sorted by path, none of
    them inside a folder named in SKIP_DIRS; sorted, so a seeded sample is the same everywhere."""
    root = Path(root or stdlib_dir())
    return sorted(p for p in root.rglob("*.py")
                  if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))


def read_utf8(path: Path) -> str | None:
    """The file's text with \\n line ends and a final newline; None if it is not UTF-8."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


def stdlib_bytes() -> bytes:
    """The corpus as UTF-8: every usable file of ``stdlib_files()``, one after the other."""
    files = stdlib_files()
    if not files:
        raise RnnkitError(f"no .py files under {stdlib_dir()}: this Python has no standard "
                          "library sources to read")
    texts = (read_utf8(path) for path in files)
    return "".join(t for t in texts if t and "\x00" not in t).encode("utf-8")
