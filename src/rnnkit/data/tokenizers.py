"""Tokens beyond characters: UTF-8 bytes, words with a character fallback, byte-level BPE.

Each tokenizer has CharVocab's interface (data/vocab.py), so the corpus cache, the trainer, the
sampler and the checkpoints take any of them (``--tokenizer``):
    char  Unicode characters (CharVocab): the default, and what char-rnn uses
    byte  the 256 UTF-8 byte values: never an unknown input, 1 to 4 tokens per character
    word  the commonest words, space runs and punctuation marks of the training text; every
          other word is spelled out in characters, so no text maps to an <unk> token and
          bits per character stay comparable with the character models
    bpe   byte-level BPE trained on the training text with Hugging Face ``tokenizers`` (the
          ``bpe`` extra), offline; its merges are saved in vocab.json beside the weights
    gpt2  a Hugging Face byte-level BPE tokenizer read as it is (GPT-2's 50,257 tokens, with
          <|endoftext|>), from tokenizer.json or vocab.json + merges.txt: the vocabulary of a
          GPT-2 folder (models/hf_gpt2.py); never trained here, so no --tokenizer choice
Ids 0..S-1 are the special tokens (lines mode: <bos>, <eos>) in every tokenizer; the text
itself can never produce them, whatever it contains.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from ..errors import RnnkitError
from .vocab import EOS, CharVocab

TOKENIZERS = ("char", "byte", "word", "bpe")
DEFAULT_SIZE = {"word": 8192, "bpe": 1024}
WORD = re.compile(r"\w+|\s+|[^\w\s]")
SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable command-line bytes arrive as these


def safe_cut(text: str) -> int:
    """The last position between a non-space and a space character (0: none). Both the word
    pattern and byte-level BPE's pre-tokenizer always end a token there, so text cut at such
    points encodes exactly as it would whole."""
    i = len(text) - 1
    while i > 0 and not (text[i].isspace() and not text[i - 1].isspace()):
        i -= 1
    return max(i, 0)


class PieceVocab:
    """Shared by the tokenizers whose tokens stand for byte strings ("pieces")."""

    kind = ""

    def __init__(self, pieces: list[bytes], specials=()):
        self.specials = list(specials)
        self.pieces = [b""] * len(self.specials) + list(pieces)
        # what a token looks like on its own (a split character shows as U+FFFD)
        self.itos = self.specials + [p.decode("utf-8", "replace") for p in pieces]

    def __len__(self) -> int:
        return len(self.pieces)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self.to_json() == other.to_json()

    def id_of(self, token: str) -> int:
        return self.specials.index(token)

    def piece_bytes(self, i: int) -> bytes:
        return self.pieces[i]

    def decode(self, ids) -> str:
        return b"".join(self.pieces[int(i)] for i in ids).decode("utf-8", "replace")

    def unknown_in(self, text: str) -> list[str]:
        return sorted(set(SURROGATE.findall(text)))

    def char_counts(self) -> np.ndarray:
        """(V,) characters each id adds to the text: its bytes that start a UTF-8 character
        (so a character split over several tokens counts once); 1 for <eos>, 0 for <bos>."""
        counts = np.array([sum((b & 0xC0) != 0x80 for b in p) for p in self.pieces])
        if EOS in self.specials:
            counts[self.id_of(EOS)] = 1
        return counts.astype(np.int64)

    def encode_many(self, texts: list[str], eos: int | None = None) -> np.ndarray:
        """The texts' ids one after the other, each followed by ``eos`` when given."""
        end = [] if eos is None else [eos]
        parts = [np.concatenate([self.encode(t), end]) for t in texts]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def token_dtype(self):
        return np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.uint32


class ByteVocab(PieceVocab):
    kind = "byte"

    def __init__(self, specials=()):
        super().__init__([bytes([b]) for b in range(256)], specials)

    def encode(self, text: str) -> np.ndarray:
        raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        return raw.astype(np.int64) + len(self.specials)

    def to_json(self) -> dict:
        return {"type": "byte", "specials": self.specials}

    @classmethod
    def from_json(cls, d: dict) -> ByteVocab:
        return cls(d["specials"])


class WordVocab(PieceVocab):
    """Args:
        chars: every character of the training text (the fallback spelling).
        words: the multi-character tokens kept, commonest first.
    """

    kind = "word"

    def __init__(self, chars: list[str], words: list[str], specials=()):
        self.chars, self.words = sorted(chars), list(words)
        super().__init__([t.encode() for t in self.chars + self.words], specials)
        self._ids = {t: i for i, t in enumerate(self.itos) if i >= len(self.specials)}

    @classmethod
    def build(cls, texts: Iterable[str], size: int, specials=()) -> WordVocab:
        counts = Counter(t for text in texts for t in WORD.findall(text))
        chars = sorted({c for t in counts for c in t})
        longer = sorted((t for t in counts if len(t) > 1 and counts[t] > 1),
                        key=lambda t: (-counts[t], t))
        return cls(chars, longer[:max(size - len(chars), 0)], specials)

    def encode(self, text: str) -> np.ndarray:
        ids, get = [], self._ids.get
        for token in WORD.findall(text):
            i = get(token)
            if i is None:  # not a kept word: its characters (unknown_in has vetted them)
                ids.extend(self._ids[c] for c in token)
            else:
                ids.append(i)
        return np.array(ids, dtype=np.int64)

    def unknown_in(self, text: str) -> list[str]:
        return list(dict.fromkeys(c for c in text if c not in self._ids))

    def to_json(self) -> dict:
        return {"type": "word", "specials": self.specials, "chars": self.chars,
                "words": self.words}

    @classmethod
    def from_json(cls, d: dict) -> WordVocab:
        return cls(d["chars"], d["words"], d["specials"])


def byte_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte (GPT-2's table): printable Latin-1
    bytes stand for themselves, the others for code points 256 and up, in byte order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = [b for b in range(256) if b not in kept]
    table = {chr(b): b for b in kept}
    table.update({chr(256 + n): b for n, b in enumerate(shifted)})
    return table


def hf_tokenizers(what: str = "--tokenizer bpe"):
    try:
        import tokenizers
    except ImportError:
        raise RnnkitError(f"{what} needs Hugging Face tokenizers: pip install tokenizers "
                          "(or pip install 'rnnkit[bpe]')") from None
    return tokenizers


class BPEVocab(PieceVocab):
    """Byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level variant). The Hugging Face
    tokenizer knows nothing of the special tokens: its ids are shifted past them."""

    kind = "bpe"

    def __init__(self, serialized: str, specials=()):
        self.serialized = serialized
        self.tok = hf_tokenizers().Tokenizer.from_str(serialized)
        alphabet = byte_alphabet()
        vocab = sorted(self.tok.get_vocab().items(), key=lambda kv: kv[1])
        super().__init__([bytes(alphabet[c] for c in t) for t, _ in vocab], specials)

    @classmethod
    def build(cls, texts: Iterable[str], size: int, specials=()) -> BPEVocab:
        if size <= 256:
            raise RnnkitError(f"--tokenizer-size must exceed the 256 byte tokens for bpe, got "
                              f"{size}; try 1024")
        hf = hf_tokenizers()
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(vocab_size=size, show_progress=False,
                                         initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        return cls(tok.to_str(), specials)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.tok.encode(text).ids, dtype=np.int64) + len(self.specials)

    def encode_many(self, texts: list[str], eos: int | None = None) -> np.ndarray:
        if eos is None:
            return super().encode_many(texts)
        rows = self.tok.encode_batch(texts)  # many lines at once, in Rust
        shift = len(self.specials)
        parts = [np.append(np.array(row.ids, dtype=np.int64) + shift, eos) for row in rows]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def to_json(self) -> dict:
        return {"type": "bpe", "specials": self.specials,
                "tokenizer": json.loads(self.serialized)}

    @classmethod
    def from_json(cls, d: dict) -> BPEVocab:
        return cls(json.dumps(d["tokenizer"]), d["specials"])


class GPT2Vocab(BPEVocab):
    """A Hugging Face byte-level BPE tokenizer as it is: GPT-2's, or any other saved as
    tokenizer.json. Its ids are the tokenizer's own (no specials before them), and its added
    tokens (<|endoftext|>) stand for their text, as the tokenizer's ``decode`` shows them.

    Args:
        serialized: the tokenizer as JSON text (what tokenizer.json holds).
    """

    kind = "gpt2"

    def __init__(self, serialized: str):
        self.serialized = serialized
        self.tok = hf_tokenizers("a GPT-2 tokenizer").Tokenizer.from_str(serialized)
        added = {t.content for t in self.tok.get_added_tokens_decoder().values()}
        alphabet = byte_alphabet()
        pieces = [b""] * self.tok.get_vocab_size(with_added_tokens=True)
        for token, i in self.tok.get_vocab(with_added_tokens=True).items():
            if token in added or any(c not in alphabet for c in token):
                pieces[i] = token.encode("utf-8")  # an added token is its text, not bytes
            else:
                pieces[i] = bytes(alphabet[c] for c in token)
        PieceVocab.__init__(self, pieces)

    @classmethod
    def from_files(cls, folder) -> GPT2Vocab:
        """From ``folder``'s tokenizer.json, else its vocab.json + merges.txt (GPT-2's own
        files: a byte-level BPE whose <|endoftext|>, when present, is a special token)."""
        hf = hf_tokenizers("a GPT-2 folder")
        if (folder / "tokenizer.json").is_file():
            return cls(hf.Tokenizer.from_file(str(folder / "tokenizer.json")).to_str())
        tok = hf.Tokenizer(hf.models.BPE.from_file(str(folder / "vocab.json"),
                                                   str(folder / "merges.txt")))
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        if tok.token_to_id(ENDOFTEXT) is not None:
            tok.add_special_tokens([ENDOFTEXT])
        return cls(tok.to_str())

    @property
    def start_id(self) -> int | None:
        """<|endoftext|>, where GPT-2 starts a text from nothing (it separates documents)."""
        return self.tok.token_to_id(ENDOFTEXT)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_many(self, texts: list[str], eos: int | None = None) -> np.ndarray:
        rows = self.tok.encode_batch(texts, add_special_tokens=False)
        end = [] if eos is None else [eos]
        parts = [np.array([*row.ids, *end], dtype=np.int64) for row in rows]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def to_json(self) -> dict:
        return {"type": "gpt2", "tokenizer": json.loads(self.serialized)}

    @classmethod
    def from_json(cls, d: dict) -> GPT2Vocab:
        return cls(json.dumps(d["tokenizer"]))


ENDOFTEXT = "<|endoftext|>"
CLASSES = {"char": CharVocab, "byte": ByteVocab, "word": WordVocab, "bpe": BPEVocab,
           "gpt2": GPT2Vocab}


def from_json(d: dict):
    """Any tokenizer from its ``to_json``; files written before there was a choice hold
    characters."""
    return CLASSES[d.get("type", "char")].from_json(d)


def build_tokenizer(kind: str, size: int, texts: Iterable[str], specials=()):
    """A byte, word or BPE tokenizer for ``texts`` (an iterable, read once);
    ``size`` 0 takes DEFAULT_SIZE."""
    if kind == "byte":
        return ByteVocab(specials)
    return CLASSES[kind].build(texts, size or DEFAULT_SIZE[kind], specials)


class TextStream:
    """Token ids in, text out as soon as it is whole: a character split over several byte or
    BPE tokens is printed once its last byte arrives."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, token: int) -> str:
        return self.decoder.decode(self.vocab.piece_bytes(token))


class TextSplitter:
    """Pair tasks (seq2seq, classify): a text field as a list of token strings, and back.

    char and word tokens are pieces of the text itself; byte and bpe tokens are written in
    byte-level BPE's printable alphabet (byte_alphabet), so any text round-trips through
    ``join``. The TokenVocab built over these strings gives them ids (data/pairs.py).
    """

    def __init__(self, kind: str = "char", bpe: BPEVocab | None = None):
        self.kind, self.bpe = kind, bpe
        self._bytes = byte_alphabet()
        self._chars = {b: c for c, b in self._bytes.items()}

    @classmethod
    def build(cls, kind: str, size: int, texts: Iterable[str]) -> TextSplitter:
        if kind != "bpe":
            return cls(kind)
        return cls(kind, BPEVocab.build(texts, size or DEFAULT_SIZE["bpe"]))

    def split(self, text: str) -> list[str]:
        if self.kind == "char":
            return list(text)
        if self.kind == "word":
            return WORD.findall(text)
        if self.kind == "byte":
            return [self._chars[b] for b in text.encode("utf-8", "surrogatepass")]
        return self.bpe.tok.encode(text).tokens

    def join(self, tokens: list[str]) -> str:
        if self.kind in ("char", "word"):
            return "".join(tokens)
        raw = bytes(self._bytes[c] for c in "".join(tokens) if c in self._bytes)
        return raw.decode("utf-8", "replace")

    def to_json(self) -> dict:
        return {"kind": self.kind, **({"bpe": self.bpe.to_json()} if self.bpe else {})}

    @classmethod
    def from_json(cls, d: dict | None) -> TextSplitter:
        d = d or {"kind": "char"}
        return cls(d["kind"], BPEVocab.from_json(d["bpe"]) if "bpe" in d else None)
