"""TSV files of pairs for the sequence tasks, their vocabularies, split and padded batches.

One example per line, two tab-separated fields:
    seq2seq    source<TAB>target           characters in, characters out
    classify   text<TAB>label              characters in, one label out
    tag        tokens<TAB>labels           labels separated by spaces, one per input step:
               "chars" format: one label per character of the text (spaces included);
               "tokens" format: the text is space-separated tokens, one label per token.
Blank lines are skipped; anything else that is not two fields is an error naming the line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RnnkitError
from ..fileio import input_file
from .batching import IGNORE
from .corpus import ascii_based, decode_error
from .tokenizers import TextSplitter

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0..3 in every input vocabulary: <pad> is 0


class TokenVocab:
    """Tokens (characters, words or labels) to ids: specials first, then sorted tokens.
    ``splitter`` (data/tokenizers.TextSplitter) cuts a text into the tokens and joins them back;
    None: characters."""

    def __init__(self, tokens, specials=SPECIALS, splitter: TextSplitter | None = None):
        self.specials = list(specials)
        self.splitter = splitter or TextSplitter()
        self.itos = self.specials + sorted(set(tokens) - set(specials))
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return (isinstance(other, TokenVocab) and self.itos == other.itos
                and self.splitter.to_json() == other.splitter.to_json())

    def id_of(self, token: str) -> int:
        return self.stoi[token]

    def encode(self, tokens) -> list[int]:
        """Ids; an unseen token becomes <unk> (or IGNORE for a label vocabulary)."""
        unknown = self.stoi.get(UNK, IGNORE)
        return [self.stoi.get(t, unknown) for t in tokens]

    def decode(self, ids) -> list[str]:
        """Tokens of ``ids``, special tokens dropped."""
        n = len(self.specials)
        return [self.itos[i] for i in ids if i >= n]

    def text_of(self, ids) -> str:
        """The text that ``ids`` spell (special tokens dropped)."""
        return self.splitter.join(self.decode(ids))

    def to_json(self) -> dict:
        split = {} if self.splitter.kind == "char" else {"splitter": self.splitter.to_json()}
        return {"specials": self.specials, "tokens": self.itos[len(self.specials):], **split}

    @classmethod
    def from_json(cls, d: dict) -> TokenVocab:
        return cls(d["tokens"], d["specials"], TextSplitter.from_json(d.get("splitter")))


@dataclass
class Example:
    line: int  # 1-based line in the file, for error messages
    source: list[str]  # input tokens
    target: list[str] | str  # seq2seq: tokens (default characters); classify: a label; tag: labels
    source_text: str = ""  # seq2seq and classify: the fields as written in the file
    target_text: str = ""


def read_lines(path: str | Path, encoding: str = "utf-8") -> list[tuple[int, str, str]]:
    """(line number, left, right) for every non-blank line of a two-field TSV file."""
    p = input_file(path)
    raw = p.read_bytes()
    if ascii_based(encoding) and b"\x00" in raw:
        raise RnnkitError(f"{p} looks binary (it holds NUL bytes); give a text TSV file, or "
                          "its --encoding if it is UTF-16 or UTF-32")
    rows = []
    for n, text in enumerate(decode_text(raw, p, encoding).split("\n"), start=1):
        text = text.rstrip("\r")
        if text.strip():
            rows.append(split_fields(text, p, n))
    if not rows:
        raise RnnkitError(f"{p} holds no examples; give lines of source<TAB>target")
    return rows


def decode_text(raw: bytes, path: Path, encoding: str = "utf-8") -> str:
    """The file's text without a byte-order mark; a bad byte is one error line that names
    its line."""
    try:
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        n = raw[:e.start].count(b"\n") + 1
        raise decode_error(f"{path} line {n}", encoding) from None


def decode_line(line: bytes, path: Path, n: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise RnnkitError(f"{path} line {n} is not valid UTF-8; convert the file first, "
                          "e.g. iconv -f latin1 -t utf-8") from None


def split_fields(text: str, path: Path, n: int) -> tuple[int, str, str]:
    fields = text.split("\t")
    if len(fields) != 2:
        raise RnnkitError(f"{path} line {n}: expected 2 tab-separated fields (input<TAB>output), "
                          f"found {len(fields)}; fix that line")
    if not fields[0]:
        raise RnnkitError(f"{path} line {n}: the input field is empty; fix or remove that line")
    return n, fields[0], fields[1]


def checked_label(label: str, n: int) -> str:
    if not label.strip():
        raise RnnkitError(f"line {n}: the label is empty; fix or remove that line")
    return label.strip()


def detect_tag_format(rows) -> str:
    """"chars" when every line has one label per character, else "tokens" when every line has
    one per space-separated token."""
    for fmt, unit in (("chars", list), ("tokens", str.split)):
        if all(len(unit(a)) == len(b.split()) for _, a, b in rows):
            return fmt
    n, a, b = next(r for r in rows if len(r[2].split()) not in (len(r[1]), len(r[1].split())))
    raise RnnkitError(f"line {n}: {len(b.split())} labels for {len(a)} characters and "
                      f"{len(a.split())} tokens; give one label per character or per token")


def tag_example(n: int, text: str, labels: str, fmt: str) -> Example:
    source = list(text) if fmt == "chars" else text.split()
    tags = labels.split()
    if len(tags) != len(source) or not source:
        unit = "character" if fmt == "chars" else "token"
        raise RnnkitError(f"line {n}: {len(tags)} labels for {len(source)} {unit}s; give one "
                          f"label per {unit} (--tag-format {fmt})")
    return Example(n, source, tags)


def split_indices(n: int, val_frac: float, test_frac: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded shuffle cut into train/val/test (pair files are often sorted: a contiguous cut
    would hold out only the longest or the last-generated examples)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(n * test_frac), int(n * val_frac)
    return {"train": np.sort(order[:n - n_val - n_test]),
            "val": np.sort(order[n - n_val - n_test:n - n_test]),
            "test": np.sort(order[n - n_test:]), "all": np.arange(n)}


class PairBatches:
    """Batch ``step`` is a pure function of the step: example i = step * B + j of a stream of
    seeded per-epoch shuffles, so a resumed run reads exactly the batches it would have."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int):
        if len(indices) == 0:
            raise RnnkitError("the train split is empty; lower --val-frac/--test-frac or add data")
        self.indices, self.batch_size, self.seed = indices, batch_size, seed
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(
                self.indices)}
        return self._orders[epoch]

    def batch(self, step: int) -> list[int]:
        n, out = len(self.indices), []
        for i in range(step * self.batch_size, (step + 1) * self.batch_size):
            out.append(int(self._order(i // n)[i % n]))
        return out


def pad(seqs: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 padded with ``value``, and the (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max())), value, dtype=torch.long)
    for row, s in enumerate(seqs):
        out[row, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def read_inputs(path: str | Path) -> list[str]:
    """``rnnkit predict`` input: one example per line ("-": stdin); a TSV's first field is
    the input."""
    p = Path(path)
    if str(path) == "-":
        raw = sys.stdin.buffer.read()
    else:
        raw = input_file(p, "--input", "input file").read_bytes()
    lines = [decode_line(b, p, n) for n, b in enumerate(raw.split(b"\n"), 1)]
    lines = [line.rstrip("\r").split("\t")[0] for line in lines]
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start another
    return lines
