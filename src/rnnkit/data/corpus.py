"""Text files to a cached numpy memmap of token ids, and the train/val/test split.

A prepared corpus lives in a cache folder (``RUN_DIR/data`` for training):
    tokens.bin   token ids, the smallest unsigned dtype that fits the vocabulary
    vocab.json   the CharVocab
    meta.json    source name, sha256 of the source bytes, mode, dtype, length
It is rebuilt when the source's bytes change. In lines mode every newline becomes <eos>.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RnnkitError
from ..fileio import atomic_write_bytes, atomic_write_json
from .vocab import BOS, EOS, CharVocab, codepoints

MODES = ("stream", "lines")


def decode_text(raw: bytes, name: str) -> str:
    """Bytes to text, refusing empty, binary and non-UTF-8 input with a one-line reason."""
    if b"\x00" in raw[:1 << 20]:
        raise RnnkitError(f"{name} looks binary (it holds NUL bytes); give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RnnkitError(f"{name} is not valid UTF-8 (bad byte at offset {e.start}); "
                          "convert it first, e.g. iconv -f latin1 -t utf-8") from None
    # One newline convention, so Windows files split into the same lines.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.strip():
        raise RnnkitError(f"{name} is empty; give a UTF-8 text file with some text in it")
    return text


def read_source(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise RnnkitError(f"data file {str(p)!r} not found; check the --data path")
    return p.read_bytes()


def tokenize(text: str, mode: str, vocab: CharVocab | None = None):
    """Encode ``text``; builds the vocabulary unless one is given. Returns (ids, vocab)."""
    cps = codepoints(text)
    newline = cps == ord("\n")
    if mode == "lines":
        # Lines are independent sequences: drop empty ones, end each with <eos>.
        keep = ~(newline & np.concatenate([[True], newline[:-1]]))
        cps, newline = cps[keep], newline[keep]
        if not newline[-1]:
            cps, newline = np.append(cps, ord("\n")), np.append(newline, True)
    chars = cps[~newline] if mode == "lines" else cps
    if vocab is None:
        vocab = CharVocab.from_codepoints(chars, (BOS, EOS) if mode == "lines" else ())
    check_known(vocab, chars, "the text")
    ids = np.empty(len(cps), dtype=vocab.token_dtype())
    ids[~newline if mode == "lines" else slice(None)] = vocab.encode_codepoints(chars, ids.dtype)
    if mode == "lines":
        ids[newline] = vocab.id_of(EOS)
    return ids, vocab


def check_known(vocab: CharVocab, cps: np.ndarray, what: str) -> None:
    unknown = vocab.unknown(cps)
    if unknown:
        shown = "".join(unknown[:20])
        raise RnnkitError(f"{what} has {len(unknown)} character(s) outside the model's "
                          f"vocabulary: {shown!r}; use only characters seen in training")


@dataclass
class Corpus:
    tokens: np.ndarray  # (N,) token ids, a read-only memmap
    vocab: CharVocab
    mode: str

    def split(self, val_frac: float, test_frac: float) -> dict[str, np.ndarray]:
        """Contiguous train/val/test parts; in lines mode the cuts fall after an <eos>."""
        n = len(self.tokens)
        cuts = [round(n * (1 - val_frac - test_frac)), round(n * (1 - test_frac))]
        if self.mode == "lines":
            ends = np.flatnonzero(self.tokens == self.vocab.id_of(EOS)) + 1
            cuts = [int(ends[min(np.searchsorted(ends, c), len(ends) - 1)]) if c < n else n
                    for c in cuts]
        return {"train": self.tokens[:cuts[0]], "val": self.tokens[cuts[0]:cuts[1]],
                "test": self.tokens[cuts[1]:], "all": self.tokens}


def prepare_corpus(raw: bytes, name: str, mode: str, cache_dir: str | Path,
                   vocab: CharVocab | None = None) -> Corpus:
    """Load the cached encoding of ``raw`` from ``cache_dir``, or build and cache it."""
    cache = Path(cache_dir)
    digest = hashlib.sha256(raw).hexdigest()
    meta_path = cache / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("sha256") != digest or meta.get("mode") != mode:
        ids, built = tokenize(decode_text(raw, name), mode, vocab)
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache / "tokens.bin", ids.tobytes())
        atomic_write_json(cache / "vocab.json", built.to_json())
        meta = {"source": name, "sha256": digest, "mode": mode,
                "dtype": np.dtype(ids.dtype).name, "length": int(len(ids))}
        atomic_write_json(meta_path, meta)
    cached_vocab = CharVocab.from_json(json.loads((cache / "vocab.json").read_text()))
    tokens = np.memmap(cache / "tokens.bin", dtype=meta["dtype"], mode="r")
    return Corpus(tokens, cached_vocab, mode)


def encode_file(raw: bytes, name: str, mode: str, vocab: CharVocab) -> Corpus:
    """Encode text with an existing vocabulary, in memory (for ``rnnkit eval`` on new files)."""
    ids, _ = tokenize(decode_text(raw, name), mode, vocab)
    return Corpus(ids, vocab, mode)
