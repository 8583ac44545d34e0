"""--task transcribe: speech to text (many-to-many, unaligned), trained with CTC.

    data      a corpus folder (train.tsv, val.tsv, test.tsv), a TSV of audio_path<TAB>
              transcript or a .npz of features (data/speech.py)
    model     conv front end -> bidirectional LSTM/GRU -> characters and the CTC blank
              (models/transcriber.py)
    decoding  greedy (best path) or CTC prefix beam search (--beam K), optionally fused with
              a character language model trained by ``rnnkit train`` (--lm RUN_DIR
              --lm-weight A --word-bonus B; ctc.py)
    metrics   loss (CTC, nats per label), cer, wer

The labels are the characters of the run's transcripts (all splits); other data given to
``rnnkit eval`` must use no others (the model could never write them). Silent utterances and
ones too short for their transcript are skipped and counted (data/speech.py), in training and
in ``rnnkit eval``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import ctc, metrics
from ..data.audio import load_wave
from ..data.batching import to_device
from ..data.pairs import PairBatches, read_inputs, split_indices
from ..data.speech import (
    Labels,
    Utterances,
    batch_of,
    features_of,
    fits_ctc,
    folder_transcripts,
    read_data,
)
from ..data.speech import read_file as read_speech_file
from ..errors import RnnkitError
from ..fileio import atomic_write_bytes
from ..models.transcriber import Transcriber, TranscriberConfig, conv_lengths
from .base import DecodeSettings, EvalRequest, PredictRequest, sample_path, slices

SAMPLE_ROWS = 8  # val utterances transcribed into RUN_DIR/samples at each evaluation


def splits_of(cfg, data: str | None = None,
              wanted: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Utterances]:
    """The ``wanted`` splits of ``data`` (default the run's): a folder's files (only those
    read), or one file cut with the run's fractions and seed."""
    read = read_data(data or cfg.data, cfg.encoding, wanted)
    if isinstance(read, dict):
        return read
    index = split_indices(len(read), cfg.val_frac, cfg.test_frac, cfg.seed)
    return {s: read.subset(index[s]) for s in wanted}


def all_transcripts(cfg, sets: dict[str, Utterances]) -> list[str]:
    """The run's transcripts, test split included (read from its TSV, not its audio)."""
    if Path(cfg.data).is_dir():
        return folder_transcripts(Path(cfg.data), cfg.encoding)
    return [t for utts in sets.values() for t in utts.transcripts]


def check_chars(labels: Labels, utts: Utterances, what: str) -> None:
    unseen = labels.unseen(utts.transcripts)
    if unseen:
        shown = " ".join(repr(c) for c in unseen[:10])
        raise RnnkitError(f"transcripts of {what} hold characters the model has no label for: "
                          f"{shown}; normalise the transcripts (or train on data that has "
                          "them)")


def fitting(utts: Utterances, labels: Labels) -> Utterances:
    """The utterances CTC can align; the others skipped and counted."""
    keep = [fits_ctc(len(f), labels.encode(t), conv_lengths)
            for f, t in zip(utts.features, utts.transcripts)]
    return utts.skip(keep, "too short for their transcript")


def ctc_loss(log_probs: Tensor, out_lengths: Tensor, batch: dict) -> Tensor:
    """Mean over the batch of each utterance's CTC loss divided by its transcript's length
    (torch's "mean": nats per label)."""
    return torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), batch["targets"],
                                        out_lengths, batch["target_lengths"], blank=0,
                                        reduction="mean", zero_infinity=True)


class Decoder:
    """Turns a batch of log-probs into text: greedy, or prefix beam search with an optional
    language model (``lm``: (model, vocab) of a character LM)."""

    def __init__(self, labels: Labels, beam: int = 1, lm=None, lm_weight: float = 0.5,
                 word_bonus: float = 0.0):
        self.labels, self.beam = labels, beam
        self.lm_weight, self.word_bonus = lm_weight, word_bonus
        self.scorer = ctc.CharLMScorer(lm[0], lm[1], labels.labels) if lm else None

    def __call__(self, log_probs: Tensor, lengths: Tensor) -> list[str]:
        if self.beam == 1 and self.scorer is None:
            return [self.labels.decode(ids) for ids in ctc.greedy_decode(log_probs, lengths)]
        out = []
        for row, n in zip(log_probs, lengths.tolist()):
            found = ctc.prefix_beam_search(row[:n].cpu(), self.beam, lm=self.scorer,
                                           lm_weight=self.lm_weight,
                                           word_bonus=self.word_bonus, space=self.labels.space)
            out.append(self.labels.decode(found[0][0]) if found else "")
        return out


@torch.no_grad()
def transcribe(model, utts: Utterances, labels: Labels, decoder: Decoder,
               batch_size: int = 32) -> tuple[list[str], float]:
    """Transcripts of ``utts`` and their mean CTC loss (nan when there are none)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds, loss = [], 0.0
    try:
        for part in slices(len(utts), batch_size):
            index = list(range(len(utts)))[part]
            batch = to_device(batch_of(utts, index, labels), device)
            log_probs, out_lengths = model(batch["features"], batch["lengths"])
            loss += ctc_loss(log_probs, out_lengths, batch).item() * len(index)
            preds += decoder(log_probs, out_lengths)
    finally:
        model.train(was_training)
    return preds, loss / len(utts) if len(utts) else float("nan")


def report(model, utts: Utterances, labels: Labels, decoder: Decoder,
           batch_size: int) -> dict:
    preds, loss = transcribe(model, utts, labels, decoder, batch_size)
    return {"loss": loss, "cer": metrics.cer(preds, utts.transcripts),
            "wer": metrics.wer(preds, utts.transcripts), "examples": len(utts),
            "skipped": utts.skipped_count()}


def default_split(data: str, cfg) -> str:
    """test when the data has one, else val."""
    if Path(data).is_dir():
        return "test" if (Path(data) / "test.tsv").is_file() else "val"
    return "test" if cfg.test_frac > 0 else "val"


class TranscribeTask:
    name = "transcribe"
    kind = "rnnkit.transcribe"
    help = "speech (a corpus folder, a TSV of audio files or a .npz of features) -> text, CTC"
    models = {"rnn": (Transcriber, TranscriberConfig)}
    meta_keys = ("labels",)
    units = "utterances"
    data_parallel = False
    compilable = False
    tokenized = False
    predicts_files = False
    fuses_lm = True  # eval and predict take --lm RUN_DIR
    reads_folders = True  # --data DIR: a corpus's train.tsv, val.tsv and test.tsv

    def check(self, cfg) -> None:
        if cfg.data is None:
            raise ValueError("--task transcribe needs --data: a corpus folder (rnnkit data "
                             "speech --out DIR writes one), a TSV of audio_path<TAB>transcript "
                             "lines or a .npz of features")

    def prepare(self, model_cfg, cfg, out: Path, meta: dict | None, ranks) -> TranscribeRun:
        sets = splits_of(cfg, wanted=("train", "val"))  # test is read by rnnkit eval
        if not len(sets["train"]):
            raise RnnkitError(f"{cfg.data} has no training utterances; add data or lower "
                              "--val-frac/--test-frac")
        # every split's characters: a test sentence may hold a letter no training one has
        labels = Labels(meta["labels"][1:]) if meta else Labels.of(all_transcripts(cfg, sets))
        for split, utts in sets.items():
            check_chars(labels, utts, f"the {split} split")
        sets = {s: fitting(u, labels) for s, u in sets.items()}
        for split, utts in sets.items():
            if utts.skipped:  # counted in the checkpoint's meta too
                print(f"{split}: {utts.skipped_line()}", file=sys.stderr)
        if not len(sets["train"]):
            raise RnnkitError(f"every training utterance of {cfg.data} is too short for its "
                              "transcript (or silent); check the audio")
        model_cfg.vocab_size = len(labels)
        model_cfg.feature_size = sets["train"].features[0].shape[1]
        return TranscribeRun(cfg, sets, labels)

    def vocab(self, meta: dict, model) -> Labels:
        labels = Labels(meta["labels"][1:])
        if len(labels) != model.config.vocab_size:
            raise RnnkitError(f"the checkpoint's {len(labels)} labels do not fit its model's "
                              f"{model.config.vocab_size} outputs; the file is damaged")
        return labels

    def evaluate(self, model, labels: Labels, meta: dict, cfg, request: EvalRequest) -> dict:
        """CER, WER and CTC loss on a split of the run's data or of ``request.data``."""
        if request.data is not None and not Path(request.data).is_dir():
            split = request.split or "all"
            utts = read_speech_file(request.data, request.encoding or cfg.encoding)
            if split != "all":
                utts = utts.subset(split_indices(len(utts), cfg.val_frac, cfg.test_frac,
                                                 cfg.seed)[split])
        else:
            split = request.split or default_split(request.data or cfg.data, cfg)
            wanted = ("train", "val", "test") if split == "all" else (split,)
            sets = splits_of(cfg, request.data, wanted)
            utts = Utterances.join(sets.values())
        check_chars(labels, utts, f"{request.data or cfg.data} ({split})")
        utts = fitting(utts, labels)
        if not len(utts):
            raise RnnkitError(f"the {split} split has no utterances to score; use --split "
                              "all or another --data")
        decoder = Decoder(labels, request.beam, request.lm, request.lm_weight,
                          request.word_bonus)
        r = report(model, utts, labels, decoder, request.batch_size or cfg.batch_size)
        return {"task": self.name, "split": split, **r}

    def predict(self, model, labels: Labels, meta: dict, cfg, request: PredictRequest):
        """One transcript per input: audio files listed one per line (paths relative to the
        list's folder; a TSV's first column), or the rows of a .npz of features."""
        if request.input is None:
            raise RnnkitError("transcribe needs --input: a file listing audio files, one per "
                              "line, or a .npz of features")
        if request.input.endswith(".npz"):
            utts = read_speech_file(request.input)
        else:
            utts = audio_list(request.input)
        return self.transcribe(model, labels, utts, request.settings, request.batch_size)

    def transcribe(self, model, labels: Labels, utts: Utterances, settings: DecodeSettings,
                   batch_size: int = 32) -> list[str]:
        """The transcripts of ``utts``, decoded as ``settings`` say (beam, lm)."""
        s = settings
        decoder = Decoder(labels, s.beam, s.lm, s.lm_weight, s.word_bonus)
        return transcribe(model, utts, labels, decoder, batch_size)[0]


def audio_list(path: str) -> Utterances:
    """The audio files named one per line in ``path`` ("-": stdin, paths relative to the
    current folder; otherwise relative to the list's folder), read and turned into features."""
    base = Path.cwd() if path == "-" else Path(path).parent
    names = read_inputs(path)
    if not names:
        raise RnnkitError(f"{path} names no audio files; give one path per line")
    return audio_utterances([base / name for name in names],
                            [f"{path} line {n}" for n in range(1, len(names) + 1)])


def audio_utterances(paths: list[Path], where: list[str]) -> Utterances:
    """Features of the audio files ``paths``; a file that cannot be read is one error line
    that names ``where`` it was listed."""
    waves = []
    for path, place in zip(paths, where):
        try:
            waves.append(load_wave(path))
        except RnnkitError as e:
            raise RnnkitError(f"{place}: {e}") from None
    return Utterances(features_of(waves), [""] * len(waves), where)


class TranscribeRun:
    """The utterances of one run: train batches by step, val for the metrics."""

    carries_state = False

    def __init__(self, cfg, sets: dict[str, Utterances], labels: Labels):
        self.cfg, self.sets, self.labels = cfg, sets, labels
        self.batches = PairBatches(np.arange(len(sets["train"])), cfg.batch_size, cfg.seed)
        n = cfg.eval_examples or len(sets["val"])
        self.val = sets["val"].subset(range(min(n, len(sets["val"]))))
        self.greedy = Decoder(labels)

    def meta(self) -> dict:
        return {"labels": self.labels.labels,
                "skipped": {s: u.skipped_count() for s, u in self.sets.items()}}

    def batch(self, step: int):
        return batch_of(self.sets["train"], self.batches.batch(step), self.labels), True

    def count(self, batch: dict) -> int:
        return len(batch["lengths"])

    def forward(self, model, batch: dict, state, eps: float):
        return model(batch["features"], batch["lengths"]), None

    def loss(self, outputs, batch: dict) -> Tensor:
        return ctc_loss(*outputs, batch)

    def evaluate(self, model, ranks) -> dict:
        if not len(self.val):
            return {}
        r = report(model, self.val, self.labels, self.greedy, self.cfg.batch_size)
        return {f"val_{k}": v for k, v in r.items() if k in ("loss", "cer", "wer")}

    def write_sample(self, model, folder: Path, step: int) -> None:
        rows = self.val.subset(range(min(SAMPLE_ROWS, len(self.val))))
        preds, _ = transcribe(model, rows, self.labels, self.greedy)
        lines = [f"{p}\t(truth: {t})" for p, t in zip(preds, rows.transcripts)]
        atomic_write_bytes(sample_path(folder, step), "\n".join(lines).encode() + b"\n")


TRANSCRIBE = TranscribeTask()
