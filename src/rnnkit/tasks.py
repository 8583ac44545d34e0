"""What each pair task computes: the training forward pass, its loss, predictions and metrics.

Shared by the trainer (training/pair_trainer.py), ``rnnkit eval`` and ``rnnkit predict``:
    seq2seq   logits (B, T, V) of the target given <bos> + the target so far; decoded greedily,
              by sampling or by beam search; metrics exact_match, cer, bleu
    classify  logits (B, C); metrics accuracy, macro_f1 (and the confusion matrix)
    tag       logits (B, S, K); metrics accuracy (per step), span_f1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import metrics
from .data.batching import IGNORE
from .data.pairs import BOS, EOS, Example, TokenVocab, collate
from .data.tokenizers import TextSplitter
from .decoding import SamplingConfig, beam_search, greedy_decode, sample_decode
from .errors import RnnkitError
from .training.losses import sequence_nll
from .training.scheduled_sampling import IMPLEMENTATIONS

TARGET_KEY = {"seq2seq": "tgt_out", "classify": "label", "tag": "tags"}


@dataclass
class DecodeSettings:
    """How a seq2seq model writes its output (other tasks take the most likely label)."""
    beam: int = 1
    """Beam width; 1 is greedy decoding."""
    n_best: int = 1
    """Hypotheses returned per input (<= beam)."""
    length_penalty: float = 0.0
    """GNMT's alpha: scores are divided by ((5 + length) / 6) ** alpha; 0 = raw log-prob."""
    max_length: int | None = None
    """Longest output, in tokens (None: the model's own limit, twice its longest training
    target plus 10)."""
    sampling: SamplingConfig | None = None
    """Sample (temperature, top-k, top-p) instead of searching."""
    seed: int = 1337

    def __post_init__(self):
        if self.beam < 1 or not 1 <= self.n_best <= self.beam or (self.max_length or 1) < 1:
            raise RnnkitError(f"need --beam >= 1, 1 <= --n-best <= --beam and --max-length >= 1, "
                              f"got {self.beam}, {self.n_best} and {self.max_length}")
        if self.sampling is not None and self.beam > 1:
            raise RnnkitError("sampling and --beam > 1 exclude each other; drop one of them")


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def forward(model, task: str, batch: dict, eps: float = 1.0, ss=None) -> Tensor:
    """Training/evaluation logits. seq2seq with eps < 1 feeds the decoder some of its own
    tokens (scheduled sampling, ``ss``: the TrainConfig)."""
    if task != "seq2seq":
        return model(batch["src"], batch["src_len"])
    state = model.encode(batch["src"], batch["src_len"])
    if eps >= 1.0:
        return model.decode(batch["tgt_in"], state)[0]
    scheduled = IMPLEMENTATIONS[ss.ss_impl]
    return scheduled(model.decode, batch["tgt_in"], state, eps, ss.ss_argmax, ss.ss_skip)[0]


def loss_of(logits: Tensor, batch: dict, task: str, reduction: str = "mean") -> Tensor:
    """Cross entropy against the task's targets; IGNORE (padding, unseen labels) adds nothing."""
    targets = batch[TARGET_KEY[task]]
    if task == "classify":
        return torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE,
                                                 reduction=reduction)
    return sequence_nll(logits.float(), targets, reduction=reduction)


def chunks(examples: list, size: int):
    for i in range(0, len(examples), size):
        yield examples[i:i + size]


@torch.no_grad()
def predict(model, task: str, vocabs: dict[str, TokenVocab], examples: list[Example],
            settings: DecodeSettings | None = None, batch_size: int = 64) -> list:
    """One prediction per example: seq2seq a list of n-best strings, classify a label, tag a
    list of labels (one per input step)."""
    model.eval()
    settings = settings or DecodeSettings()
    device = next(model.parameters()).device
    out: list = []
    for part in chunks(examples, batch_size):
        batch = to_device(collate(part, vocabs, task), device)
        if task == "seq2seq":
            out += decode_batch(model, batch, vocabs["target"], settings)
        else:
            out += label_batch(model, batch, vocabs["target"], task)
    return out


def label_batch(model, batch: dict, labels: TokenVocab, task: str) -> list:
    best = model(batch["src"], batch["src_len"]).argmax(-1).tolist()
    if task == "classify":
        return [labels.itos[i] for i in best]
    return [[labels.itos[i] for i in row[:n]] for row, n in zip(best, batch["src_len"].tolist())]


def decoder_step(model, rows: int):
    """The step function for decoding ``rows`` sequences at once. The single-step path wins
    where the sequence kernel's set-up cost per call dominates (a few sequences at once);
    from about 16 on the kernel is as fast or faster. ``benchmarks/bench_beam.py --batch N``
    compares the two ("greedy" against "greedy_kernel_step")."""
    return model.stepper() if rows <= 16 else model.step


def decode_batch(model, batch: dict, vocab: TokenVocab, s: DecodeSettings) -> list[list[str]]:
    state = model.encode(batch["src"], batch["src_len"])
    bos, eos, rows = vocab.id_of(BOS), vocab.id_of(EOS), batch["src"].shape[0]
    device = batch["src"].device
    step = decoder_step(model, rows)
    if s.beam > 1:
        found = beam_search(step, model.reorder, state, rows, bos, eos, s.beam,
                            s.max_length, s.length_penalty, s.n_best, device=device)
        return [[vocab.text_of(ids) for ids, _ in hyps] for hyps in found]
    if s.sampling is not None:
        gen = torch.Generator(device).manual_seed(s.seed)
        ids = sample_decode(step, state, rows, bos, eos, s.max_length, s.sampling, gen,
                            device=device)
    else:
        ids = greedy_decode(step, state, rows, bos, eos, s.max_length, device=device)
    return [[vocab.text_of(row)] for row in ids]


@torch.no_grad()
def evaluate(model, task: str, vocabs: dict[str, TokenVocab], examples: list[Example],
             batch_size: int = 64, max_length: int = 200, decode_examples: int = 0,
             beam: int = 1) -> dict:
    """{"loss", "examples", and the task's metrics} over ``examples`` (which have targets).

    seq2seq decodes the first ``decode_examples`` of them (0 = all), greedily or with a beam,
    for exact_match, cer and bleu (0-100, corpus level); the loss covers them all.
    """
    was_training = model.training
    model.eval()
    try:
        report = {"loss": mean_loss(model, task, vocabs, examples, batch_size),
                  "examples": len(examples)}
        report.update(task_metrics(model, task, vocabs, examples, batch_size, max_length,
                                   decode_examples, beam))
    finally:
        model.train(was_training)
    return report


def mean_loss(model, task: str, vocabs, examples: list[Example], batch_size: int) -> float:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for part in chunks(examples, batch_size):
        batch = to_device(collate(part, vocabs, task), device)
        total += loss_of(forward(model, task, batch), batch, task, reduction="sum").item()
        count += int((batch[TARGET_KEY[task]] != IGNORE).sum())
    return total / max(count, 1)


def task_metrics(model, task: str, vocabs, examples: list[Example], batch_size: int,
                 max_length: int, decode_examples: int, beam: int = 1) -> dict:
    if task == "seq2seq":
        scored = examples[:decode_examples] if decode_examples else examples
        settings = DecodeSettings(beam=beam, max_length=max_length)
        preds = [hyps[0] for hyps in predict(model, task, vocabs, scored, settings, batch_size)]
        refs = [truth_of(e, task)[0] for e in scored]
        return {"exact_match": metrics.exact_match(preds, refs), "cer": metrics.cer(preds, refs),
                "bleu": metrics.bleu(preds, refs), "decoded": len(scored)}
    preds = predict(model, task, vocabs, examples, batch_size=batch_size)
    golds = [e.target for e in examples]
    if task == "classify":
        r = metrics.classification_report(preds, golds)
        return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "labels": r["labels"],
                "confusion": r["confusion"]}
    spans = metrics.span_f1(preds, golds)
    return {"accuracy": metrics.tag_accuracy(preds, golds), "span_f1": spans["f1"],
            "span_precision": spans["precision"], "span_recall": spans["recall"]}


def format_prediction(task: str, prediction) -> str:
    """One output line: the n-best strings tab-separated, a label, or space-separated tags."""
    if task == "seq2seq":
        return "\t".join(prediction)
    if task == "classify":
        return prediction
    return " ".join(prediction)


def source_text(e: Example, tag_format: str = "") -> str:
    """An example's input as it was written in the file."""
    if e.source_text:
        return e.source_text
    return " ".join(e.source) if tag_format == "tokens" else "".join(e.source)


def truth_of(e: Example, task: str):
    """An example's target in the form ``predict`` returns for the task."""
    if task == "seq2seq":
        return [e.target_text or "".join(e.target)]
    return e.target


def examples_from_texts(texts: list[str], task: str, tag_format: str,
                        splitter: TextSplitter | None = None) -> list[Example]:
    """Examples without targets, for ``predict``: the model's tokens (characters by default),
    or space-separated tokens in the tag task's tokens format."""
    split = str.split if task == "tag" and tag_format == "tokens" else (
        splitter.split if splitter else list)
    return [Example(n, split(t), [] if task != "classify" else "", t) for n, t in
            enumerate(texts, start=1)]
