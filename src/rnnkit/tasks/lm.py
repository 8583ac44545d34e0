"""The language model task (--task lm): a text, its tokens, stateful truncated BPTT.

    stream   the text is B parallel streams cut into windows of T tokens; the recurrent state
             flows from one window into the next (detached at the edge)
    lines    every line is a sequence: <bos> line <eos>, padded batches of shuffled lines

--model rnn is the recurrent CharLM (--cell lstm, gru, rnn or any registered cell); --model
gpt the causal transformer baseline, with the same data, trainer, checkpoints and sampler.
Losses are nats per token; bits per character compare tokenizers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import tokenizers
from ..data.batching import (
    IGNORE,
    LineBatches,
    StreamBatches,
    line_eval_batches,
    stream_eval_batches,
)
from ..data.corpus import Corpus, encode_file, line_end_from, read_source, shared_corpus
from ..data.shakespeare import corpus_bytes
from ..data.vocab import BOS, EOS, CharVocab
from ..decoding import SamplingConfig, generate, logits_over
from ..errors import RnnkitError
from ..fair_share import keep_fair_share
from ..fileio import atomic_write_bytes
from ..losses import loss_report, sequence_nll
from ..models import GPT, CharLM, CharLMConfig, GPTConfig
from ..scheduled_sampling import IMPLEMENTATIONS
from .base import EvalRequest, PredictRequest, sample_path
from .free_running import free_running_report


class SingleRank:
    """The ranks of a one-process run: every share is the whole."""
    rank, world_size = 0, 1

    @staticmethod
    def sum(*values):
        return values


def load_text(cfg) -> tuple[bytes | Path, str, str]:
    """(the text, its name, its encoding): --data, or the built-in corpus (UTF-8)."""
    if cfg.data is not None:
        return read_source(cfg.data), str(cfg.data), cfg.encoding
    return corpus_bytes(cfg.corpus), f"corpus:{cfg.corpus}", "utf-8"


def load_corpus(cfg, vocab: CharVocab | None = None) -> Corpus:
    """The run's text, prepared once in the shared cache (data/corpus.py)."""
    raw, name, encoding = load_text(cfg)
    corpus = shared_corpus(raw, name, cfg.mode, vocab, (cfg.tokenizer, cfg.tokenizer_size),
                           encoding)
    if vocab is not None and corpus.vocab != vocab:
        raise RnnkitError(f"{name} now encodes to a different vocabulary than the checkpoint's; "
                          "resume with the original text or start a new run")
    return corpus


def cap_split(tokens, cap: int, mode: str, vocab: CharVocab):
    """The first ``cap`` tokens (0: all); in lines mode up to the end of the line reached."""
    if cap <= 0 or cap >= len(tokens):
        return tokens
    end = line_end_from(tokens, cap - 1, vocab.id_of(EOS)) if mode == "lines" else cap
    return tokens[:end]


def make_batches(cfg, corpus: Corpus, tokens, ranks=SingleRank):
    """This rank's share (all, for one process) of every training batch."""
    shard = (ranks.rank, ranks.world_size)
    if cfg.mode == "stream":
        return StreamBatches(tokens, cfg.batch_size, cfg.seq_length, *shard)
    v = corpus.vocab
    return LineBatches(tokens, v.id_of(BOS), v.id_of(EOS), cfg.batch_size, cfg.seq_length,
                       cfg.seed, *shard)


def check_context(model_cfg, cfg) -> None:
    """A transformer reads at most block_size positions: training windows must fit."""
    block = getattr(model_cfg, "block_size", None)
    if block is not None and cfg.seq_length > block:
        raise RnnkitError(f"--seq-length {cfg.seq_length} exceeds the transformer's "
                          f"--block-size {block}; lower the first or raise the second")


def eval_batch_size(mode: str, batch_size: int) -> int:
    """Rows per evaluation batch. In stream mode each stream starts from a zero state, so
    fewer streams give the model more context: 16 is within 0.001 nats of one stream on
    tiny-shakespeare's val split, and as fast as 64."""
    return min(batch_size, 16) if mode == "stream" else batch_size


@torch.no_grad()
def evaluate(model, tokens, vocab: CharVocab, mode: str, batch_size: int,
             seq_length: int, ranks=SingleRank) -> dict:
    """Loss over every target of ``tokens``: {"loss" (nats/token), "bpc" (bits per character
    of the text the targets stand for, so tokenizers compare), "perplexity", "tokens", "chars"}.

    With several ranks each scores its share of the streams (or line batches) and the sums are
    added up, so every rank returns the same report."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count, chars, state = 0.0, 0, 0, None
    char_counts = torch.as_tensor(vocab.char_counts(), device=device)
    shard = (ranks.rank, ranks.world_size)
    if mode == "stream":
        batches = stream_eval_batches(tokens, batch_size, seq_length, *shard)
    else:
        batches = line_eval_batches(tokens, vocab.id_of(BOS), vocab.id_of(EOS), batch_size,
                                    *shard)
    for x, y in batches:
        keep_fair_share()
        if mode == "stream":
            logits, state = model(x.to(device), state)
        else:  # whole lines: a transformer's context slides past its block_size
            logits = logits_over(model, x.to(device))
        y = y.to(device)
        total += sequence_nll(logits, y, reduction="sum").item()
        count += int((y != IGNORE).sum())
        chars += int(char_counts[y[y != IGNORE]].sum())
    model.train(was_training)
    total, count, chars = ranks.sum(total, count, chars)
    return loss_report(total, round(count), round(chars))


class TokenObjective:
    """The language model's training forward and loss. Teacher forcing (eps = 1): the inputs
    are the true text, the targets the same text shifted by one; eps < 1: scheduled sampling
    mixes in the model's own tokens (``cfg.ss_impl``, ``ss_argmax``, ``ss_skip``)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def forward(self, model, batch: dict, state, eps: float):
        cfg = self.cfg
        return IMPLEMENTATIONS[cfg.ss_impl](model, batch["x"], state, eps, cfg.ss_argmax,
                                            cfg.ss_skip)

    def loss(self, logits, batch: dict):
        return sequence_nll(logits.float(), batch["y"])

    def loss_sum(self, logits, batch: dict):
        """(summed NLL, real targets): a multi-process step weighs each rank's share."""
        y = batch["y"]
        return sequence_nll(logits.float(), y, reduction="sum"), (y != IGNORE).sum()


class LanguageModelRun(TokenObjective):
    """The corpus of one run: this rank's batches, the val split, samples."""

    def __init__(self, cfg, corpus: Corpus, ranks):
        super().__init__(cfg)
        self.vocab = corpus.vocab
        splits = corpus.split(cfg.val_frac, cfg.test_frac)
        self.val_tokens = cap_split(splits["val"], cfg.eval_max_chars, cfg.mode, self.vocab)
        self.batches = make_batches(cfg, corpus, splits["train"], ranks)
        self.carries_state = cfg.mode == "stream"

    def meta(self) -> dict:
        return {"vocab": self.vocab.to_json()}

    def batch(self, step: int):
        x, y, reset = self.batches.batch(step)
        return {"x": x, "y": y}, reset

    def count(self, batch: dict) -> int:
        return int((batch["y"] != IGNORE).sum())

    def evaluate(self, model, ranks) -> dict:
        if len(self.val_tokens) < 2:
            return {}
        cfg = self.cfg
        rep = evaluate(model, self.val_tokens, self.vocab, cfg.mode,
                       eval_batch_size(cfg.mode, cfg.batch_size), cfg.seq_length, ranks)
        return {"val_loss": rep["loss"], "val_bpc": rep["bpc"], "val_ppl": rep["perplexity"]}

    def write_sample(self, model, folder: Path, step: int) -> None:
        device = next(model.parameters()).device
        gen = torch.Generator(device).manual_seed(self.cfg.seed + step)
        rows = generate(model, self.vocab, "", self.cfg.sample_length, SamplingConfig(), gen)
        atomic_write_bytes(sample_path(folder, step), self.vocab.decode(rows[0]).encode())


class LanguageModelTask:
    name = "lm"
    kind = "rnnkit.char_lm"
    help = "a language model of a text (--model rnn or gpt)"
    models = {"rnn": (CharLM, CharLMConfig), "gpt": (GPT, GPTConfig)}
    meta_keys = ("vocab",)
    units = "chars"
    data_parallel = True
    compilable = True
    tokenized = True
    predicts_files = False

    def check(self, cfg) -> None:
        if cfg.model == "gpt" and cfg.scheduled_sampling != "none" and (
                cfg.ss_impl == "sequential"):
            raise ValueError("ss_impl sequential steps a recurrent state; the transformer "
                             "takes --ss-impl parallel")

    def prepare(self, model_cfg, cfg, out: Path, meta: dict | None, ranks) -> LanguageModelRun:
        vocab = tokenizers.from_json(meta["vocab"]) if meta else None
        # rank 0 prepares the corpus in the shared cache; the others then read it
        corpus = ranks.main_first(lambda: load_corpus(cfg, vocab))
        model_cfg.vocab_size = len(corpus.vocab)
        check_context(model_cfg, cfg)
        return LanguageModelRun(cfg, corpus, ranks)

    def vocab(self, meta: dict, model):
        vocab = tokenizers.from_json(meta["vocab"])
        if len(vocab) != model.config.vocab_size:
            raise RnnkitError("the checkpoint's vocabulary does not match its model; retrain")
        return vocab

    def evaluate(self, model, vocab, meta: dict, cfg, request: EvalRequest) -> dict:
        """The loss on a split of the run's text (or of ``request.data``), and with
        ``free_running`` the exposure bias (tasks/free_running.py)."""
        split = request.split or "val"
        if request.data is not None:
            raw, name = read_source(request.data), str(request.data)
            encoding = request.encoding or cfg.encoding
        else:
            raw, name, encoding = load_text(cfg)
        tokens = encode_file(raw, name, cfg.mode, vocab, encoding).split(cfg.val_frac,
                                                                         cfg.test_frac)[split]
        if len(tokens) < 2:
            raise RnnkitError(f"the {split} split of {name} is empty (val_frac {cfg.val_frac}, "
                              f"test_frac {cfg.test_frac}); use --split all")
        rows = request.batch_size or eval_batch_size(cfg.mode, cfg.batch_size)
        report = {"split": split, **evaluate(model, tokens, vocab, cfg.mode, rows,
                                             cfg.seq_length)}
        if request.free_running:
            report["exposure_bias"] = exposure_bias(model, vocab, tokens, cfg.mode, request)
        return report

    def predict(self, model, vocab, meta: dict, cfg, request: PredictRequest):
        raise RnnkitError("this is a language model; use rnnkit sample")


def exposure_bias(model, vocab, tokens, mode: str, r: EvalRequest) -> dict:
    if r.prefix < (0 if mode == "lines" else 1) or r.continuation < 1 or r.max_cases < 1:
        raise RnnkitError("--prefix must be >= 1 (>= 0 in lines mode, where <bos> starts each "
                          "line), --continuation and --max-cases >= 1")
    report = free_running_report(model, vocab, tokens, mode, r.prefix, r.continuation,
                                 r.max_cases)
    if not report["cases"]:
        raise RnnkitError(f"no held-out {'line' if mode == 'lines' else 'text'} is longer than "
                          f"--prefix {r.prefix}; lower --prefix")
    return report

