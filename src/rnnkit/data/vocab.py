"""CharVocab: Unicode characters (not bytes) to integer ids and back, saved as JSON.

The other tokenizers (data/tokenizers.py) share its interface: ``encode``, ``decode``,
``unknown_in``, ``piece_bytes`` (a token's UTF-8 bytes, for streaming), ``char_counts`` (the
characters each token adds, for bits per character), ``to_json``."""

from __future__ import annotations

import numpy as np

BOS, EOS = "<bos>", "<eos>"


def codepoints(text: str) -> np.ndarray:
    """The text's Unicode code points as a uint32 array, without a Python list per character."""
    # surrogatepass: undecodable command-line bytes arrive as lone surrogates; they then show
    # up as unknown characters instead of crashing the encoder
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


class CharVocab:
    """Ids 0..S-1 are the special tokens (lines mode: <bos>, <eos>), then characters by code point.

    Args:
        chars: the characters, one string of length 1 each.
        specials: special token names, e.g. ["<bos>", "<eos>"]; empty in stream mode.
    """

    kind = "char"

    def __init__(self, chars, specials=()):
        self.specials = list(specials)
        self.chars = sorted(chars)
        self.itos = self.specials + self.chars
        self._cps = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        # id of every code point (-1: not in the vocabulary): encoding is one O(n) lookup
        self._lut = np.full(0x110000, -1, dtype=np.int32)
        self._lut[self._cps] = np.arange(len(self.chars)) + len(self.specials)

    @classmethod
    def from_codepoints(cls, cps: np.ndarray, specials=()) -> CharVocab:
        return cls([chr(c) for c in np.unique(cps)], specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and self.itos == other.itos

    def id_of(self, token: str) -> int:
        return self.itos.index(token)

    def unknown(self, cps: np.ndarray) -> list[str]:
        """Characters of ``cps`` that are not in the vocabulary, in order of first appearance."""
        missing = cps[self._lut[cps] < 0]
        _, first = np.unique(missing, return_index=True)
        return [chr(c) for c in missing[np.sort(first)]]

    def unknown_in(self, text: str) -> list[str]:
        return self.unknown(codepoints(text)) if text else []

    def piece_bytes(self, i: int) -> bytes:
        return self.itos[i].encode() if i >= len(self.specials) else b""

    def char_counts(self) -> np.ndarray:
        """(V,) characters each id stands for: 1, and 1 for <eos> (a line end), 0 for <bos>."""
        return np.array([int(t != BOS) for t in self.itos], dtype=np.int64)

    def encode_codepoints(self, cps: np.ndarray, dtype=np.int64) -> np.ndarray:
        """Vectorised encoding; every code point must be in the vocabulary (see ``unknown``)."""
        return self._lut[cps].astype(dtype)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_codepoints(codepoints(text))

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids if i >= len(self.specials))

    def to_json(self) -> dict:
        return {"specials": self.specials, "chars": self.chars}

    @classmethod
    def from_json(cls, d: dict) -> CharVocab:
        return cls(d["chars"], d["specials"])

    def token_dtype(self):
        """Smallest unsigned dtype that holds every id."""
        n = len(self)
        return np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32
