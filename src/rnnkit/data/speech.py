"""Speech data for --task transcribe: utterances as (log-mel features, transcript).

Three ways in:

    FILE.tsv   audio_path<TAB>transcript per line, paths relative to the TSV's folder (WAV,
               FLAC or OGG at any sample rate; LibriSpeech and Common Voice exports convert
               to this with one line of awk)
    DIR        train.tsv, val.tsv and optionally test.tsv, as ``rnnkit data speech`` writes
               them: the splits are the files (the generated corpus keeps its val and test
               voices out of training this way)
    FILE.npz   precomputed features: features (N, T, D) float, lengths (N,), transcripts (N,)

A single file is split into train/val/test with the run's --val-frac/--test-frac. Audio is
resampled to 16 kHz and turned into 80 log-mel bins (data/audio.py), normalised per
utterance. Two kinds of utterance are skipped and counted rather than refused, since a large
corpus has a few of them: silent ones, and ones too short for their transcript under CTC
(fewer output steps than labels plus repeats: the loss would be infinite).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import RnnkitError
from ..fileio import input_file, npz_arrays
from . import audio
from .pairs import read_lines

BLANK = "<blank>"
SPLITS = ("train", "val", "test")
SILENCE = 1e-4  # peak amplitude below which a clip holds no speech to transcribe


@dataclass
class Utterances:
    """Features (T_i, D) and transcripts of a set of utterances, with where each came from
    (for messages) and the ones skipped: {reason: [where, ...]}."""
    features: list[Tensor]
    transcripts: list[str]
    where: list[str]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.transcripts)

    def subset(self, index) -> Utterances:
        index = [int(i) for i in index]
        return Utterances([self.features[i] for i in index],
                          [self.transcripts[i] for i in index], [self.where[i] for i in index])

    @classmethod
    def join(cls, parts) -> Utterances:
        parts = list(parts)
        return cls(*(sum((getattr(u, k) for u in parts), []) for k in
                     ("features", "transcripts", "where")))

    def skip(self, keep: list[bool], reason: str) -> Utterances:
        """The utterances where ``keep``; the others counted under ``reason``."""
        kept = self.subset([i for i, k in enumerate(keep) if k])
        kept.skipped = {**self.skipped}
        dropped = [w for w, k in zip(self.where, keep) if not k]
        if dropped:
            kept.skipped[reason] = kept.skipped.get(reason, []) + dropped
        return kept

    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def skipped_line(self) -> str:
        """'3 utterances skipped: 2 silent (a.tsv line 4, ...), 1 ...' or ''."""
        if not self.skipped:
            return ""
        parts = [f"{len(w)} {reason} ({', '.join(w[:3])}{', ...' if len(w) > 3 else ''})"
                 for reason, w in self.skipped.items()]
        return f"{self.skipped_count()} utterances skipped: " + "; ".join(parts)


class Labels:
    """The output alphabet: the CTC blank (id 0), then the transcripts' characters."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.labels = [BLANK, *self.chars]
        self._ids = {c: i for i, c in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def __eq__(self, other) -> bool:
        return isinstance(other, Labels) and self.labels == other.labels

    @classmethod
    def of(cls, transcripts: list[str]) -> Labels:
        return cls("".join(transcripts))

    def unseen(self, transcripts: list[str]) -> list[str]:
        return sorted(set("".join(transcripts)) - set(self.chars))

    def encode(self, text: str) -> list[int]:
        return [self._ids[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.labels[i] for i in ids if i != 0)

    @property
    def space(self) -> int | None:
        return self._ids.get(" ")


def read_data(data: str, encoding: str = "utf-8",
              splits: tuple[str, ...] = SPLITS) -> dict[str, Utterances] | Utterances:
    """A corpus folder's ``splits`` (a missing test.tsv reads as no utterances), or one file's
    utterances."""
    p = Path(data)
    if not p.is_dir():
        return read_file(p, encoding)
    check_folder(p)
    return {s: read_file(p / f"{s}.tsv", encoding) if (p / f"{s}.tsv").is_file()
            else Utterances([], [], []) for s in splits}


def check_folder(p: Path) -> None:
    missing = [f"{s}.tsv" for s in SPLITS[:2] if not (p / f"{s}.tsv").is_file()]
    if missing:
        raise RnnkitError(f"{p} is a folder without {' and '.join(missing)}; give a corpus "
                          "folder (train.tsv, val.tsv, test.tsv, as rnnkit data speech writes) "
                          "or one .tsv or .npz file")


def folder_transcripts(p: Path, encoding: str = "utf-8") -> list[str]:
    """Every transcript of a corpus folder's splits, without reading any audio."""
    check_folder(p)
    return [t for s in SPLITS if (p / f"{s}.tsv").is_file()
            for _, _, t in read_lines(p / f"{s}.tsv", encoding)]


def read_file(path: str | Path, encoding: str = "utf-8") -> Utterances:
    p = input_file(path)
    if p.suffix.lower() == ".npz":
        return read_npz(p)
    return read_tsv(p, encoding)


def read_tsv(path: Path, encoding: str = "utf-8") -> Utterances:
    """The utterances of a TSV of audio_path<TAB>transcript lines, silent ones skipped."""
    rows = read_lines(path, encoding)
    waves = [load_line(path, n, name) for n, name, _ in rows]
    where = [f"{path} line {n}" for n, _, _ in rows]
    heard = [float(w.abs().max()) >= SILENCE if len(w) else False for w in waves]
    utts = Utterances(waves, [t for _, _, t in rows], where).skip(heard, "silent")
    utts.features = features_of(utts.features)  # the waves, until here
    return utts


def load_line(tsv: Path, n: int, name: str) -> Tensor:
    """The 16 kHz wave of line ``n``'s audio file, relative to the TSV's folder."""
    audio_path = tsv.parent / name
    try:
        return audio.load_wave(audio_path)
    except RnnkitError as e:
        raise RnnkitError(f"{tsv} line {n}: {e}") from None


def features_of(waves: list[Tensor], batch: int = 32) -> list[Tensor]:
    """Normalised log-mel features (T_i, N_MELS) of each wave, computed in padded batches."""
    mel, out = audio.LogMel(), []
    with torch.no_grad():
        for i in range(0, len(waves), batch):
            part = waves[i:i + batch]
            lengths = torch.tensor([len(w) for w in part])
            padded = torch.zeros(len(part), int(lengths.max()))
            for row, w in enumerate(part):
                padded[row, :len(w)] = w
            feats, frames = mel(padded, lengths)
            feats = audio.normalize(feats, frames)
            out += [f[:n].clone() for f, n in zip(feats, frames.tolist())]
    return out


def read_npz(path: Path) -> Utterances:
    """Precomputed features: ``features`` (N, T, D) float, ``lengths`` (N,) valid frames,
    ``transcripts`` (N,) strings."""
    arrays, path = npz_arrays(path, ("features", "lengths", "transcripts"), "transcribe")
    feats, lengths = arrays["features"], arrays["lengths"]
    texts = [str(t) for t in arrays["transcripts"].tolist()]
    if feats.ndim != 3 or not np.issubdtype(feats.dtype, np.floating) or not len(feats):
        raise RnnkitError(f"{path}: features must be floats of shape (N, T, D), got "
                          f"{feats.dtype} {feats.shape}")
    if lengths.shape != (len(feats),) or len(texts) != len(feats):
        raise RnnkitError(f"{path}: {len(feats)} feature rows, {lengths.shape} lengths and "
                          f"{len(texts)} transcripts; give one of each per utterance")
    if not np.issubdtype(lengths.dtype, np.integer) or (
            lengths.min() < 1 or lengths.max() > feats.shape[1]):
        raise RnnkitError(f"{path}: lengths must be integers between 1 and {feats.shape[1]} "
                          "(the frames of each utterance)")
    if not np.isfinite(feats).all():
        raise RnnkitError(f"{path}: features hold NaN or infinite values; recompute them")
    rows = [torch.from_numpy(f[:n].astype(np.float32)) for f, n in zip(feats, lengths)]
    return Utterances(rows, texts, [f"{path} row {i}" for i in range(len(rows))])


def fits_ctc(frames: int, ids: list[int], steps_of) -> bool:
    """Whether CTC can align ``ids`` to ``steps_of(frames)`` output steps: one per label, plus
    a blank between each pair of equal neighbours."""
    repeats = sum(a == b for a, b in zip(ids, ids[1:]))
    return int(steps_of(torch.tensor(frames))) >= len(ids) + repeats


def batch_of(utts: Utterances, index, labels: Labels) -> dict[str, Tensor]:
    """Padded tensors of utterances ``index``: features (B, T, D), lengths (B,), targets
    (B, S) label ids padded with 0, target_lengths (B,)."""
    feats = [utts.features[i] for i in index]
    ids = [labels.encode(utts.transcripts[i]) for i in index]
    lengths = torch.tensor([len(f) for f in feats])
    padded = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for row, f in enumerate(feats):
        padded[row, :len(f)] = f
    target_lengths = torch.tensor([len(i) for i in ids])
    targets = torch.zeros(len(ids), max(int(target_lengths.max()), 1), dtype=torch.long)
    for row, i in enumerate(ids):
        targets[row, :len(i)] = torch.tensor(i, dtype=torch.long)
    return {"features": padded, "lengths": lengths, "targets": targets,
            "target_lengths": target_lengths}
