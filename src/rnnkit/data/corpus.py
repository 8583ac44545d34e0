"""Text files to a cached numpy memmap of token ids, and the train/val/test split.

A prepared corpus lives in a cache folder:
    tokens.bin   token ids, the smallest unsigned dtype that fits the vocabulary
    vocab.json   the tokenizer (CharVocab, or one of data/tokenizers.py)
    meta.json    source name, sha256 of the source bytes, mode, tokenizer, encoding, dtype, length
It is rebuilt when the source's bytes, the mode, the tokenizer or the encoding change. In lines
mode every newline becomes <eos>.

Training uses the shared cache (``shared_corpus``): one folder per prepared form of a text,
named by its content hash, under ``RNNKIT_CACHE`` (default ``~/.cache/rnnkit``), so runs on the
same text prepare it once. Folders are built under a temporary name and renamed into place, so
runs that start together never read a half-written one.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RnnkitError, UnseenTokens
from ..fileio import atomic_write, atomic_write_json, input_file
from . import tokenizers
from .vocab import BOS, EOS, CharVocab, codepoints

MODES = ("stream", "lines")
CHUNK = 1 << 22  # bytes read at a time: memory stays flat whatever the corpus size
NEWLINE = ord("\n")

Source = Path | bytes  # a file, or text already in memory (the built-in corpus)


def read_source(path: str | Path) -> Path:
    return input_file(path)


def byte_chunks(source: Source):
    if isinstance(source, bytes):
        yield from (source[i:i + CHUNK] for i in range(0, len(source), CHUNK))
        return
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def digest(source: Source) -> str:
    h = hashlib.sha256()
    for chunk in byte_chunks(source):
        h.update(chunk)
    return h.hexdigest()


def drop_empty_lines(cps: np.ndarray, after_newline: bool) -> tuple[np.ndarray, bool]:
    """Lines mode: remove a newline that follows a newline (empty lines are no sequences)."""
    if not len(cps):
        return cps, after_newline
    newline = cps == NEWLINE
    previous = np.concatenate([[after_newline], newline[:-1]])
    return cps[~(newline & previous)], bool(newline[-1])


def ascii_based(encoding: str) -> bool:
    """Whether the encoding writes ASCII as single bytes (so a NUL byte means binary data);
    UTF-16 and UTF-32 hold NUL bytes in every line."""
    return "\n".encode(encoding) == b"\n"


def decode_error(what: str, encoding: str) -> RnnkitError:
    """``what`` ("FILE (bad byte at offset N)") does not decode: one line with the fix."""
    if codecs.lookup(encoding).name == "utf-8":
        return RnnkitError(f"{what} is not valid UTF-8; pass its encoding (--encoding latin-1, "
                           "cp1252, ...) or convert it first")
    return RnnkitError(f"{what} is not valid {encoding}; check --encoding")


def code_points(source: Source, name: str, mode: str, encoding: str = "utf-8"):
    """The text's code points, chunk by chunk, checked and normalised: decoded from
    ``encoding``, no NUL bytes (in ASCII-based encodings), no BOM, \\n line ends; in lines mode
    no empty lines and a final newline."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, carry, after_newline, last, any_text, at_start = 0, "", True, NEWLINE, False, True
    for raw in itertools.chain(byte_chunks(source), [b""]):  # b"": flush the decoder
        if offset == 0 and ascii_based(encoding) and b"\x00" in raw[:1 << 20]:
            raise RnnkitError(f"{name} looks binary (it holds NUL bytes); give a text file, "
                              "or its --encoding if it is UTF-16 or UTF-32")
        buffered = len(decoder.getstate()[0])  # bytes of a character split across reads
        try:
            text = carry + decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            at = offset - buffered + e.start
            raise decode_error(f"{name} (bad byte at offset {at})", encoding) from None
        if at_start and text:  # the first decoded character may be a byte-order mark
            text, at_start = text.removeprefix("\ufeff"), False
        offset += len(raw)
        # a \r at a chunk's end may be half of a \r\n: keep it for the next chunk
        carry, text = ("\r", text[:-1]) if raw and text.endswith("\r") else ("", text)
        text = text.replace("\r\n", "\n")
        any_text = any_text or bool(text.strip())
        cps = codepoints(text)
        if mode == "lines":
            cps, after_newline = drop_empty_lines(cps, after_newline)
        last = cps[-1] if len(cps) else last
        yield cps
    if not any_text:
        raise RnnkitError(f"{name} is empty; give a UTF-8 text file with some text in it")
    if mode == "lines" and last != NEWLINE:
        yield np.array([NEWLINE], dtype=np.uint32)


def text_units(source: Source, name: str, mode: str, encoding: str = "utf-8"):
    """The text as lists of pieces that encode independently (for the tokenizers that read
    more than one character at a time): whole lines without their newline in lines mode,
    else chunks cut where a token always ends (tokenizers.safe_cut)."""
    carry = ""
    for cps in code_points(source, name, mode, encoding):
        text = carry + cps.astype("<u4").tobytes().decode("utf-32-le")
        if mode == "lines":
            *lines, carry = text.split("\n")
            yield lines
        else:
            cut = tokenizers.safe_cut(text)
            carry = text[cut:]
            yield [text[:cut]]
    if carry:
        yield [carry]


def build_vocab(source: Source, name: str, mode: str, tokenizer: str = "char", size: int = 0,
                encoding: str = "utf-8"):
    """One pass over the text for its vocabulary (newlines become <eos> in lines mode)."""
    specials = (BOS, EOS) if mode == "lines" else ()
    if tokenizer != "char":
        pieces = (t for units in text_units(source, name, mode, encoding) for t in units)
        return tokenizers.build_tokenizer(tokenizer, size, pieces, specials)
    present = np.zeros(0x110000, dtype=bool)  # one flag per possible code point
    for cps in code_points(source, name, mode, encoding):
        present[cps] = True
    seen = np.flatnonzero(present).astype(np.uint32)
    if mode == "lines":
        seen = seen[seen != NEWLINE]
    return CharVocab.from_codepoints(seen, specials)


def encoded_chunks(source: Source, name: str, mode: str, vocab, encoding: str = "utf-8"):
    """Token ids, chunk by chunk; every character must be in ``vocab``."""
    if vocab.kind != "char":
        yield from encoded_units(source, name, mode, vocab, encoding)
        return
    dtype = vocab.token_dtype()
    for cps in code_points(source, name, mode, encoding):
        newline = cps == NEWLINE if mode == "lines" else np.zeros(len(cps), dtype=bool)
        check_known(vocab, cps[~newline], name)
        ids = np.empty(len(cps), dtype=dtype)
        ids[~newline] = vocab.encode_codepoints(cps[~newline], dtype)
        if mode == "lines":
            ids[newline] = vocab.id_of(EOS)
        yield ids


def encoded_units(source: Source, name: str, mode: str, vocab, encoding: str = "utf-8"):
    eos = vocab.id_of(EOS) if mode == "lines" else None
    for units in text_units(source, name, mode, encoding):
        unknown = vocab.unknown_in("".join(units))
        if unknown:
            raise_unknown(unknown, name)
        yield vocab.encode_many(units, eos).astype(vocab.token_dtype())


def tokenize(text: str, mode: str, vocab: CharVocab | None = None, name: str = "the text"):
    """Encode text held in memory; builds the vocabulary unless one is given. (ids, vocab)."""
    source = text.encode("utf-8", errors="surrogatepass")
    vocab = vocab or build_vocab(source, name, mode)
    return np.concatenate(list(encoded_chunks(source, name, mode, vocab))), vocab


def check_known(vocab: CharVocab, cps: np.ndarray, what: str) -> None:
    unknown = vocab.unknown(cps)
    if unknown:
        raise_unknown(unknown, what)


def raise_unknown(unknown: list[str], what: str):
    shown = "".join(unknown[:20])
    raise UnseenTokens(what, unknown, f"{what} has {len(unknown)} character(s) outside the "
                       f"model's vocabulary: {shown!r}; use only characters seen in training")


@dataclass
class Corpus:
    tokens: np.ndarray  # (N,) token ids, a read-only memmap
    vocab: CharVocab  # or any tokenizer of data/tokenizers.py
    mode: str

    def split(self, val_frac: float, test_frac: float) -> dict[str, np.ndarray]:
        """Contiguous train/val/test parts; in lines mode the cuts fall after an <eos>."""
        n = len(self.tokens)
        cuts = [round(n * (1 - val_frac - test_frac)), round(n * (1 - test_frac))]
        if self.mode == "lines":
            eos = self.vocab.id_of(EOS)
            cuts = [line_end_from(self.tokens, max(c - 1, 0), eos) if c < n else n for c in cuts]
        return {"train": self.tokens[:cuts[0]], "val": self.tokens[cuts[0]:cuts[1]],
                "test": self.tokens[cuts[1]:], "all": self.tokens}


def line_end_from(tokens: np.ndarray, pos: int, eos: int) -> int:
    """Just past the first <eos> at or after ``pos``, scanning a window at a time (a memmap of
    any size is never loaded whole)."""
    while pos < len(tokens):
        hits = np.flatnonzero(tokens[pos:pos + CHUNK] == eos)
        if len(hits):
            return pos + int(hits[0]) + 1
        pos += CHUNK
    return len(tokens)


def prepare_corpus(source: Source, name: str, mode: str, cache_dir: str | Path,
                   vocab=None, tokenizer: tuple[str, int] = ("char", 0),
                   encoding: str = "utf-8", sha: str | None = None) -> Corpus:
    """Load the cached encoding of ``source`` from ``cache_dir``, or build and cache it.

    ``tokenizer`` is (kind, size) of data/tokenizers.py, used when no ``vocab`` is given.
    The source is hashed (one read, unless ``sha`` is given) to check the cache; building
    reads it twice more (the vocabulary, then ids), each time in CHUNK-sized pieces, so a
    corpus larger than memory prepares in flat memory and ends up as a memmap.
    """
    cache = Path(cache_dir)
    sha = sha or digest(source)
    meta_path = cache / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    wanted = {"sha256": sha, "mode": mode, "tokenizer": list(tokenizer), "encoding": encoding}
    # caches written before the tokenizer and encoding choices hold UTF-8 characters
    saved = {"sha256": meta.get("sha256"), "mode": meta.get("mode"),
             "tokenizer": meta.get("tokenizer", ["char", 0]),
             "encoding": meta.get("encoding", "utf-8")}
    if saved != wanted:
        vocab = vocab or build_vocab(source, name, mode, *tokenizer, encoding)
        meta = write_cache(source, name, mode, vocab, cache, encoding) | wanted
        atomic_write_json(meta_path, meta)
    cached_vocab = tokenizers.from_json(json.loads((cache / "vocab.json").read_text()))
    tokens = np.memmap(cache / "tokens.bin", dtype=meta["dtype"], mode="r")
    return Corpus(tokens, cached_vocab, mode)


def cache_root() -> Path:
    """Where prepared corpora are shared: $RNNKIT_CACHE, else $XDG_CACHE_HOME/rnnkit, else
    ~/.cache/rnnkit."""
    if os.environ.get("RNNKIT_CACHE"):
        return Path(os.environ["RNNKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnkit"


def shared_corpus(source: Source, name: str, mode: str, vocab=None,
                  tokenizer: tuple[str, int] = ("char", 0), encoding: str = "utf-8") -> Corpus:
    """``prepare_corpus`` in the shared cache: a folder per text (its SHA-256), mode,
    tokenizer and encoding, and per vocabulary when one is imposed (a resumed or fine-tuned
    run) that differs from the one the text itself gives."""
    sha = digest(source)
    kind, size = tokenizer
    folder = cache_root() / f"{sha[:32]}-{mode}-{kind}{size or ''}-{codecs.lookup(encoding).name}"
    if vocab is not None and not same_vocab(folder, vocab):
        imposed = json.dumps(vocab.to_json(), sort_keys=True).encode()
        folder = folder.with_name(f"{folder.name}-v{hashlib.sha256(imposed).hexdigest()[:16]}")
    if not (folder / "meta.json").is_file():
        build_in_place(folder, lambda tmp: prepare_corpus(source, name, mode, tmp, vocab,
                                                          tokenizer, encoding, sha))
    return prepare_corpus(source, name, mode, folder, vocab, tokenizer, encoding, sha)


def same_vocab(folder: Path, vocab) -> bool:
    path = folder / "vocab.json"
    return path.is_file() and tokenizers.from_json(json.loads(path.read_text())) == vocab


def build_in_place(folder: Path, build) -> None:
    """Build a cache folder under a temporary name beside it, then rename it into place; when
    another process got there first, keep its folder (the same content) and drop ours."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as e:
        raise RnnkitError(f"cannot write prepared data in the cache folder {folder.parent} "
                          f"({e.strerror}); set RNNKIT_CACHE to a folder you can write to"
                          ) from None
    try:
        build(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_cache(source: Source, name: str, mode: str, vocab, cache: Path,
                encoding: str = "utf-8") -> dict:
    """Write tokens.bin and vocab.json; returns the rest of meta.json."""
    cache.mkdir(parents=True, exist_ok=True)
    length = 0

    def write(f):
        nonlocal length
        for ids in encoded_chunks(source, name, mode, vocab, encoding):
            f.write(ids.tobytes())
            length += len(ids)

    atomic_write(cache / "tokens.bin", write)
    atomic_write_json(cache / "vocab.json", vocab.to_json())
    return {"source": name, "dtype": np.dtype(vocab.token_dtype()).name, "length": length}


def encode_file(source: Source, name: str, mode: str, vocab, encoding: str = "utf-8") -> Corpus:
    """Encode text with an existing vocabulary, in memory (for ``rnnkit eval`` on new files)."""
    ids = np.concatenate(list(encoded_chunks(source, name, mode, vocab, encoding)))
    return Corpus(ids, vocab, mode)
