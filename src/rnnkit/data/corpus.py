"""Text files to a cached numpy memmap of token ids, and the train/val/test split.

A prepared corpus lives in a cache folder (``RUN_DIR/data`` for training):
    tokens.bin   token ids, the smallest unsigned dtype that fits the vocabulary
    vocab.json   the tokenizer (CharVocab, or one of data/tokenizers.py)
    meta.json    source name, sha256 of the source bytes, mode, tokenizer, dtype, length
It is rebuilt when the source's bytes, the mode or the tokenizer change. In lines mode every
newline becomes <eos>.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RnnkitError
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


def code_points(source: Source, name: str, mode: str):
    """The text's code points, chunk by chunk, checked and normalised: UTF-8 only, no NUL
    bytes, no BOM, \\n line ends; in lines mode no empty lines and a final newline."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, carry, after_newline, last, any_text, at_start = 0, "", True, NEWLINE, False, True
    for raw in itertools.chain(byte_chunks(source), [b""]):  # b"": flush the decoder
        if offset == 0 and b"\x00" in raw[:1 << 20]:
            raise RnnkitError(f"{name} looks binary (it holds NUL bytes); give a UTF-8 text file")
        buffered = len(decoder.getstate()[0])  # bytes of a character split across reads
        try:
            text = carry + decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            at = offset - buffered + e.start
            raise RnnkitError(f"{name} is not valid UTF-8 (bad byte at offset {at}); convert it "
                              "first, e.g. iconv -f latin1 -t utf-8") from None
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


def text_units(source: Source, name: str, mode: str):
    """The text as lists of pieces that encode independently (for the tokenizers that read
    more than one character at a time): whole lines without their newline in lines mode,
    else chunks cut where a token always ends (tokenizers.safe_cut)."""
    carry = ""
    for cps in code_points(source, name, mode):
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


def build_vocab(source: Source, name: str, mode: str, tokenizer: str = "char", size: int = 0):
    """One pass over the text for its vocabulary (newlines become <eos> in lines mode)."""
    specials = (BOS, EOS) if mode == "lines" else ()
    if tokenizer != "char":
        pieces = (t for units in text_units(source, name, mode) for t in units)
        return tokenizers.build_tokenizer(tokenizer, size, pieces, specials)
    present = np.zeros(0x110000, dtype=bool)  # one flag per possible code point
    for cps in code_points(source, name, mode):
        present[cps] = True
    seen = np.flatnonzero(present).astype(np.uint32)
    if mode == "lines":
        seen = seen[seen != NEWLINE]
    return CharVocab.from_codepoints(seen, specials)


def encoded_chunks(source: Source, name: str, mode: str, vocab):
    """Token ids, chunk by chunk; every character must be in ``vocab``."""
    if vocab.kind != "char":
        yield from encoded_units(source, name, mode, vocab)
        return
    dtype = vocab.token_dtype()
    for cps in code_points(source, name, mode):
        newline = cps == NEWLINE if mode == "lines" else np.zeros(len(cps), dtype=bool)
        check_known(vocab, cps[~newline], name)
        ids = np.empty(len(cps), dtype=dtype)
        ids[~newline] = vocab.encode_codepoints(cps[~newline], dtype)
        if mode == "lines":
            ids[newline] = vocab.id_of(EOS)
        yield ids


def encoded_units(source: Source, name: str, mode: str, vocab):
    eos = vocab.id_of(EOS) if mode == "lines" else None
    for units in text_units(source, name, mode):
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
    raise RnnkitError(f"{what} has {len(unknown)} character(s) outside the model's "
                      f"vocabulary: {shown!r}; use only characters seen in training")


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
                   vocab=None, tokenizer: tuple[str, int] = ("char", 0)) -> Corpus:
    """Load the cached encoding of ``source`` from ``cache_dir``, or build and cache it.

    ``tokenizer`` is (kind, size) of data/tokenizers.py, used when no ``vocab`` is given.
    The source is hashed (one read) to check the cache; building reads it twice more
    (the vocabulary, then ids), each time in CHUNK-sized pieces, so a corpus
    larger than memory prepares in flat memory and ends up as a memmap.
    """
    cache = Path(cache_dir)
    sha = digest(source)
    meta_path = cache / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    wanted = {"sha256": sha, "mode": mode, "tokenizer": list(tokenizer)}
    # caches written before the tokenizer choice hold characters
    saved = {"sha256": meta.get("sha256"), "mode": meta.get("mode"),
             "tokenizer": meta.get("tokenizer", ["char", 0])}
    if saved != wanted:
        vocab = vocab or build_vocab(source, name, mode, *tokenizer)
        meta = write_cache(source, name, mode, vocab, cache) | wanted
        atomic_write_json(meta_path, meta)
    cached_vocab = tokenizers.from_json(json.loads((cache / "vocab.json").read_text()))
    tokens = np.memmap(cache / "tokens.bin", dtype=meta["dtype"], mode="r")
    return Corpus(tokens, cached_vocab, mode)


def write_cache(source: Source, name: str, mode: str, vocab, cache: Path) -> dict:
    """Write tokens.bin and vocab.json; returns the rest of meta.json."""
    cache.mkdir(parents=True, exist_ok=True)
    length = 0

    def write(f):
        nonlocal length
        for ids in encoded_chunks(source, name, mode, vocab):
            f.write(ids.tobytes())
            length += len(ids)

    atomic_write(cache / "tokens.bin", write)
    atomic_write_json(cache / "vocab.json", vocab.to_json())
    return {"source": name, "dtype": np.dtype(vocab.token_dtype()).name, "length": length}


def encode_file(source: Source, name: str, mode: str, vocab) -> Corpus:
    """Encode text with an existing vocabulary, in memory (for ``rnnkit eval`` on new files)."""
    ids = np.concatenate(list(encoded_chunks(source, name, mode, vocab)))
    return Corpus(ids, vocab, mode)
