"""The pair tasks, trained on a TSV file of input<TAB>output lines (data/pairs.py reads it):

    seq2seq   logits (B, T, V) of the target given <bos> + the target so far; decoded greedily,
              by sampling or by beam search; metrics exact_match, cer, bleu
    classify  logits (B, C); metrics accuracy, macro_f1 (and the confusion matrix)
    tag       logits (B, S, K); metrics accuracy (per step), span_f1

One class per task; ``PairTask`` holds what they share (the file, the vocabularies, the split,
shuffled batches by step, the val predictions written as samples).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .. import metrics
from ..data.batching import IGNORE, to_device
from ..data.pairs import (
    BOS,
    EOS,
    Example,
    PairBatches,
    TokenVocab,
    checked_label,
    detect_tag_format,
    pad,
    read_inputs,
    read_lines,
    split_indices,
    tag_example,
)
from ..data.tokenizers import TextSplitter
from ..decoding import beam_search, greedy_decode, sample_decode
from ..errors import RnnkitError, UnseenTokens
from ..fair_share import keep_fair_share
from ..fileio import atomic_write_bytes
from ..losses import sequence_nll
from ..models import (
    ClassifierConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)
from ..scheduled_sampling import IMPLEMENTATIONS
from .base import DecodeSettings, EvalRequest, PredictRequest, sample_path, slices

SAMPLE_ROWS = 8  # val predictions written at each evaluation


def decode_limit(examples) -> int:
    """Longest output a seq2seq model may write: twice the longest training target, plus 10."""
    return 2 * max((len(e.target) for e in examples), default=0) + 10


def vocabs_from_meta(meta: dict) -> dict[str, TokenVocab]:
    return {k: TokenVocab.from_json(v) for k, v in meta["vocabs"].items()}


def fitting_vocabs(new: dict[str, TokenVocab], old: dict[str, TokenVocab],
                   data) -> dict[str, TokenVocab]:
    """The trained model's vocabularies, when the new file uses only tokens and labels they
    hold (fine-tuning); else one error listing the others."""
    unseen = [t for part in ("source", "target") for t in new[part].itos
              if t not in old[part].stoi]
    if unseen:
        shown = " ".join(unseen[:20])
        raise UnseenTokens(str(data), unseen, f"{data} has {len(unseen)} token(s) or label(s) "
                           f"outside the model's vocabulary: {shown}; use only ones seen in "
                           "training")
    return old


class PairTask:
    """What the three pair tasks share. A subclass says how its target is read, batched,
    trained, predicted and scored."""

    name = ""
    help = ""
    size_field = ""  # the model config's field for the target vocabulary's size
    target_key = ""  # the batch's tensor of training targets
    tokenized = True  # --tokenizer cuts the input texts
    compilable = True
    meta_keys = ("vocabs",)
    units = "chars"
    data_parallel = False
    predicts_files = False
    no_target: object = ()  # the target of an input to predict

    def empty_prediction(self):
        """What an empty input line predicts (and the target of an input without one)."""
        return []

    @property
    def kind(self) -> str:
        return f"rnnkit.{self.name}"

    @property
    def models(self) -> dict:
        return {"rnn": self.model_classes}

    def check(self, cfg) -> None:
        pass

    # -- reading the file ----------------------------------------------------------------------

    def parse(self, rows, tag_format: str = "auto",
              splitter: TextSplitter | None = None) -> tuple[list[Example], str]:
        """Examples of (line, input, output) rows; the tag format used ("" but for tag)."""
        raise NotImplementedError

    def build_vocabs(self, examples: list[Example],
                     splitter: TextSplitter | None = None) -> dict[str, TokenVocab]:
        """{"source": ..., "target": ...}: target is labels (no specials) unless overridden."""
        source = TokenVocab((t for e in examples for t in e.source), splitter=splitter)
        return {"source": source, "target": TokenVocab(self.labels(examples), specials=())}

    def labels(self, examples: list[Example]):
        raise NotImplementedError

    def splitter_texts(self, rows) -> list[str]:
        """The texts a BPE tokenizer is trained on."""
        return [a for _, a, _ in rows]

    def collate(self, examples: list[Example], vocabs: dict[str, TokenVocab]) -> dict:
        """Padded tensors: src, src_len, and the task's targets."""
        src, src_len = pad([vocabs["source"].encode(e.source) for e in examples], 0)
        return {"src": src, "src_len": src_len, **self.targets(examples, vocabs["target"])}

    def targets(self, examples: list[Example], vocab: TokenVocab) -> dict:
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------

    def prepare(self, model_cfg, cfg, out: Path, meta: dict | None, ranks) -> PairRun:
        if cfg.data is None:
            raise RnnkitError(f"--task {self.name} needs --data FILE.tsv (lines of "
                              "input<TAB>output)")
        rows = read_lines(cfg.data, cfg.encoding)
        splitter = (vocabs_from_meta(meta)["source"].splitter if meta
                    else text_splitter(self, cfg, rows))
        examples, tag_format = self.parse(rows, cfg.tag_format, splitter)
        vocabs = self.build_vocabs(examples, splitter)
        if meta and cfg.init_from:  # fine-tuning: the new file may use a part of the old
            vocabs = fitting_vocabs(vocabs, vocabs_from_meta(meta), cfg.data)
        elif meta and vocabs != vocabs_from_meta(meta):
            raise RnnkitError(f"{cfg.data} now has other characters or labels than the "
                              "checkpoint's; resume with the original file or start a new run")
        model_cfg.vocab_size = len(vocabs["source"])
        setattr(model_cfg, self.size_field, len(vocabs["target"]))
        return PairRun(self, cfg, examples, vocabs, tag_format)

    def forward(self, model, batch: dict, eps: float = 1.0, cfg=None) -> Tensor:
        """Training and evaluation logits."""
        return model(batch["src"], batch["src_len"])

    def loss(self, logits: Tensor, batch: dict, reduction: str = "mean") -> Tensor:
        """Cross entropy against the targets; IGNORE (padding, unseen labels) adds nothing."""
        return sequence_nll(logits.float(), batch[self.target_key], reduction=reduction)

    # -- a trained model -----------------------------------------------------------------------

    def vocab(self, meta: dict, model) -> dict[str, TokenVocab]:
        vocabs = vocabs_from_meta(meta)
        if len(vocabs["source"]) != model.config.vocab_size:
            raise RnnkitError("the checkpoint's vocabulary does not match its model; retrain")
        return vocabs

    @torch.no_grad()
    def predict_examples(self, model, vocabs: dict[str, TokenVocab], examples: list[Example],
                         settings: DecodeSettings | None = None, batch_size: int = 64) -> list:
        """One prediction per example: seq2seq a list of n-best strings, classify a label,
        tag a list of labels (one per input step)."""
        model.eval()
        settings = settings or DecodeSettings()
        device = next(model.parameters()).device
        out: list = []
        for part in slices(len(examples), batch_size):
            keep_fair_share()
            batch = to_device(self.collate(examples[part], vocabs), device)
            out += self.predict_batch(model, batch, vocabs["target"], settings)
        return out

    def predict_batch(self, model, batch: dict, labels: TokenVocab,
                      settings: DecodeSettings) -> list:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate_examples(self, model, vocabs: dict[str, TokenVocab], examples: list[Example],
                          batch_size: int = 64, max_length: int = 200,
                          decode_examples: int = 0, beam: int = 1) -> dict:
        """{"loss", "examples", and the task's metrics} over ``examples`` (with targets).

        seq2seq decodes the first ``decode_examples`` of them (0 = all), greedily or with a
        beam, for exact_match, cer and bleu (0-100, corpus level); the loss covers them all.
        """
        was_training = model.training
        model.eval()
        try:
            report = {"loss": self.mean_loss(model, vocabs, examples, batch_size),
                      "examples": len(examples)}
            report.update(self.metrics(model, vocabs, examples, batch_size, max_length,
                                       decode_examples, beam))
        finally:
            model.train(was_training)
        return report

    def mean_loss(self, model, vocabs, examples: list[Example], batch_size: int) -> float:
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for part in slices(len(examples), batch_size):
            keep_fair_share()
            batch = to_device(self.collate(examples[part], vocabs), device)
            total += self.loss(self.forward(model, batch), batch, reduction="sum").item()
            count += int((batch[self.target_key] != IGNORE).sum())
        return total / max(count, 1)

    def metrics(self, model, vocabs, examples: list[Example], batch_size: int,
                max_length: int, decode_examples: int, beam: int = 1) -> dict:
        raise NotImplementedError

    def format_prediction(self, prediction) -> str:
        """One output line: n-best strings tab-separated, a label, or space-separated tags."""
        return prediction

    def truth_of(self, e: Example):
        """An example's target in the form ``predict_examples`` returns."""
        return e.target

    def split_input(self, text: str, tag_format: str, splitter: TextSplitter | None) -> list:
        return splitter.split(text) if splitter else list(text)

    def evaluate(self, model, vocabs: dict, meta: dict, cfg, request: EvalRequest) -> dict:
        """The metrics on a TSV file: the run's own file (its val split by default) or another
        file (all of it by default)."""
        own = request.data is None or Path(request.data).resolve() == Path(
            cfg.data or "").resolve()
        split = request.split or ("val" if own else "all")
        path = cfg.data if request.data is None else request.data
        encoding = request.encoding or cfg.encoding
        examples, _ = self.parse(read_lines(path, encoding), meta["tag_format"] or "auto",
                                 vocabs["source"].splitter)
        part = split_indices(len(examples), cfg.val_frac, cfg.test_frac, cfg.seed)[split]
        if not len(part):
            raise RnnkitError(f"the {split} split of {path} is empty (val_frac {cfg.val_frac}, "
                              f"test_frac {cfg.test_frac}); use --split all")
        report = self.evaluate_examples(model, vocabs, [examples[i] for i in part],
                                        request.batch_size or cfg.batch_size,
                                        meta["max_length"], beam=request.beam)
        return {"task": self.name, "split": split, **report}

    def predict(self, model, vocabs: dict, meta: dict, cfg, request: PredictRequest) -> list:
        if request.input is None:
            raise RnnkitError(f"a {self.name} model needs --input FILE (one input per line)")
        preds = self.predict_texts(model, vocabs, meta, read_inputs(request.input),
                                   request.settings, request.batch_size)
        return [self.format_prediction(p) for p in preds]

    def predict_texts(self, model, vocabs: dict, meta: dict, texts: list[str],
                      settings: DecodeSettings | None = None, batch_size: int = 64) -> list:
        """One prediction per input text; an empty text gets an empty prediction."""
        if batch_size < 1:
            raise RnnkitError(f"--batch-size must be >= 1, got {batch_size}")
        settings = settings or DecodeSettings()
        if settings.max_length is None:  # the model's own limit, from its training data
            settings = DecodeSettings(settings.beam, settings.n_best, settings.length_penalty,
                                      meta["max_length"], settings.sampling, settings.seed)
        splitter = vocabs["source"].splitter
        examples = [Example(n, self.split_input(t, meta["tag_format"], splitter),
                            self.no_target, t) for n, t in enumerate(texts, start=1)]
        filled = [e for e in examples if e.source]
        preds = iter(self.predict_examples(model, vocabs, filled, settings, batch_size))
        return [next(preds) if e.source else self.empty_prediction() for e in examples]


class Seq2SeqTask(PairTask):
    name = "seq2seq"
    help = "read a whole input, then write an output sequence (TSV input<TAB>output)"
    size_field = "tgt_vocab_size"
    target_key = "tgt_out"
    model_classes = (Seq2Seq, Seq2SeqConfig)
    # its training forward is the encoder and the decoder, not one module call
    compilable = False

    def empty_prediction(self):
        return [""]

    def parse(self, rows, tag_format="auto", splitter=None):
        split = (splitter or TextSplitter()).split
        return [Example(n, split(a), split(b), a, b) for n, a, b in rows], ""

    def build_vocabs(self, examples, splitter=None):
        source = TokenVocab((t for e in examples for t in e.source), splitter=splitter)
        return {"source": source,
                "target": TokenVocab((t for e in examples for t in e.target), splitter=splitter)}

    def splitter_texts(self, rows) -> list[str]:
        return [a for _, a, _ in rows] + [b for _, _, b in rows]

    def targets(self, examples, vocab):
        bos, eos = vocab.id_of(BOS), vocab.id_of(EOS)
        targets = [vocab.encode(e.target) for e in examples]
        return {"tgt_in": pad([[bos] + t for t in targets], 0)[0],
                "tgt_out": pad([t + [eos] for t in targets], IGNORE)[0]}

    def forward(self, model, batch, eps=1.0, cfg=None):
        """The decoder's logits; eps < 1 feeds it some of its own tokens (scheduled sampling,
        ``cfg``: the TrainConfig)."""
        state = model.encode(batch["src"], batch["src_len"])
        if eps >= 1.0:
            return model.decode(batch["tgt_in"], state)[0]
        scheduled = IMPLEMENTATIONS[cfg.ss_impl]
        return scheduled(model.decode, batch["tgt_in"], state, eps, cfg.ss_argmax,
                         cfg.ss_skip)[0]

    def predict_batch(self, model, batch, labels, settings):
        return decode_batch(model, batch, labels, settings)

    def metrics(self, model, vocabs, examples, batch_size, max_length, decode_examples,
                beam=1):
        scored = examples[:decode_examples] if decode_examples else examples
        settings = DecodeSettings(beam=beam, max_length=max_length)
        preds = [h[0] for h in self.predict_examples(model, vocabs, scored, settings,
                                                     batch_size)]
        refs = [self.truth_of(e)[0] for e in scored]
        return {"exact_match": metrics.exact_match(preds, refs), "cer": metrics.cer(preds, refs),
                "bleu": metrics.bleu(preds, refs), "decoded": len(scored)}

    def format_prediction(self, prediction) -> str:
        return "\t".join(prediction)

    def truth_of(self, e):
        return [e.target_text or "".join(e.target)]


class ClassifyTask(PairTask):
    name = "classify"
    help = "read a sequence, predict one label (TSV text<TAB>label)"
    size_field = "num_classes"
    target_key = "label"
    no_target = ""
    model_classes = (SequenceClassifier, ClassifierConfig)

    def parse(self, rows, tag_format="auto", splitter=None):
        split = (splitter or TextSplitter()).split
        return [Example(n, split(a), checked_label(b, n), a) for n, a, b in rows], ""

    def labels(self, examples):
        return (e.target for e in examples)

    def empty_prediction(self):
        return ""

    def targets(self, examples, vocab):
        return {"label": torch.tensor(vocab.encode([e.target for e in examples]))}

    def loss(self, logits, batch, reduction="mean"):
        return torch.nn.functional.cross_entropy(logits.float(), batch["label"],
                                                 ignore_index=IGNORE, reduction=reduction)

    def predict_batch(self, model, batch, labels, settings):
        best = model(batch["src"], batch["src_len"]).argmax(-1).tolist()
        return [labels.itos[i] for i in best]

    def metrics(self, model, vocabs, examples, batch_size, max_length, decode_examples,
                beam=1):
        preds = self.predict_examples(model, vocabs, examples, batch_size=batch_size)
        r = metrics.classification_report(preds, [e.target for e in examples])
        return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "labels": r["labels"],
                "confusion": r["confusion"]}


class TagTask(PairTask):
    name = "tag"
    help = "one label per input step, characters or tokens (TSV text<TAB>labels)"
    size_field = "num_tags"
    target_key = "tags"
    model_classes = (SequenceTagger, TaggerConfig)
    tokenized = False  # --tag-format chars or tokens decides the steps

    def parse(self, rows, tag_format="auto", splitter=None):
        fmt = tag_format if tag_format != "auto" else detect_tag_format(rows)
        return [tag_example(n, a, b, fmt) for n, a, b in rows], fmt

    def labels(self, examples):
        return (t for e in examples for t in e.target)

    def targets(self, examples, vocab):
        return {"tags": pad([vocab.encode(e.target) for e in examples], IGNORE)[0]}

    def predict_batch(self, model, batch, labels, settings):
        best = model(batch["src"], batch["src_len"]).argmax(-1).tolist()
        return [[labels.itos[i] for i in row[:n]]
                for row, n in zip(best, batch["src_len"].tolist())]

    def metrics(self, model, vocabs, examples, batch_size, max_length, decode_examples,
                beam=1):
        preds = self.predict_examples(model, vocabs, examples, batch_size=batch_size)
        golds = [e.target for e in examples]
        spans = metrics.span_f1(preds, golds)
        return {"accuracy": metrics.tag_accuracy(preds, golds), "span_f1": spans["f1"],
                "span_precision": spans["precision"], "span_recall": spans["recall"]}

    def format_prediction(self, prediction) -> str:
        return " ".join(prediction)

    def split_input(self, text, tag_format, splitter):
        return text.split() if tag_format == "tokens" else list(text)


class PairRun:
    """A pair task's data for one run: the examples, shuffled batches by step, the val split."""

    carries_state = False

    def __init__(self, task: PairTask, cfg, examples: list[Example],
                 vocabs: dict[str, TokenVocab], tag_format: str):
        self.task, self.cfg, self.examples, self.vocabs = task, cfg, examples, vocabs
        self.tag_format = tag_format
        split = split_indices(len(examples), cfg.val_frac, cfg.test_frac, cfg.seed)
        self.val = [examples[i] for i in split["val"]]
        self.batches = PairBatches(split["train"], cfg.batch_size, cfg.seed)
        self.max_length = decode_limit(examples)

    def meta(self) -> dict:
        return {"vocabs": {k: v.to_json() for k, v in self.vocabs.items()},
                "tag_format": self.tag_format, "max_length": self.max_length}

    def batch(self, step: int):
        part = [self.examples[i] for i in self.batches.batch(step)]
        return self.task.collate(part, self.vocabs), True

    def count(self, batch: dict) -> int:
        return int(batch["src_len"].sum())

    def forward(self, model, batch: dict, state, eps: float):
        return self.task.forward(model, batch, eps, self.cfg), None

    def loss(self, logits, batch: dict):
        return self.task.loss(logits, batch)

    def evaluate(self, model, ranks) -> dict:
        if not self.val:
            return {}
        report = self.task.evaluate_examples(model, self.vocabs, self.val, self.cfg.batch_size,
                                             self.max_length, self.cfg.eval_examples)
        return {f"val_{k}": v for k, v in report.items()
                if isinstance(v, float) or k == "loss"}

    def write_sample(self, model, folder: Path, step: int) -> None:
        """A few val inputs with the model's output and the truth, for reading progress."""
        rows = self.val[:SAMPLE_ROWS]
        if not rows:
            return
        settings = DecodeSettings(max_length=self.max_length)
        preds = self.task.predict_examples(model, self.vocabs, rows, settings)
        model.train()
        show = self.task.format_prediction
        lines = [f"{source_text(e, self.tag_format)}\t{show(p)}"
                 f"\t(truth: {show(self.task.truth_of(e))})" for e, p in zip(rows, preds)]
        atomic_write_bytes(sample_path(folder, step), "\n".join(lines).encode() + b"\n")


def source_text(e: Example, tag_format: str = "") -> str:
    """An example's input as it was written in the file."""
    if e.source_text:
        return e.source_text
    return " ".join(e.source) if tag_format == "tokens" else "".join(e.source)


def text_splitter(task: PairTask, cfg, rows) -> TextSplitter | None:
    """--tokenizer for the texts of a pair file; a BPE is trained on every input text (and
    every seq2seq output), as the vocabularies are built from the whole file."""
    if cfg.tokenizer == "char":
        return None
    return TextSplitter.build(cfg.tokenizer, cfg.tokenizer_size, task.splitter_texts(rows))


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
        found = beam_search(step, model.reorder_state, state, rows, bos, eos, s.beam,
                            s.max_length, s.length_penalty, s.n_best, device=device)
        return [[vocab.text_of(ids) for ids, _ in hyps] for hyps in found]
    if s.sampling is not None:
        gen = torch.Generator(device).manual_seed(s.seed)
        ids = sample_decode(step, state, rows, bos, eos, s.max_length, s.sampling, gen,
                            device=device)
    else:
        ids = greedy_decode(step, state, rows, bos, eos, s.max_length, device=device)
    return [[vocab.text_of(row)] for row in ids]
