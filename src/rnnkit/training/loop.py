"""The training loop: teacher forcing, stateful TBPTT, evaluation, checkpoints and exact resume.

A run folder holds:
    config.json     the resolved {"model": ..., "train": ...} configuration
    metrics.jsonl   one JSON record per line: step, train_loss, lr, ... (+ val_* at evaluations)
    samples/        step_XXXXXX.txt, a sample at every evaluation
    last.pt/.json   the latest checkpoint, with optimizer, RNG, carried state: resume from it
    best.pt/.json   the weights with the lowest val loss so far
    data/           the encoded corpus (memmap cache)

Resume is exact: the batch is a function of the step, and the checkpoint carries everything
else that changes (weights, AdamW moments, RNG, the hidden state carried between windows, the
partial loss average), so a resumed run repeats the uninterrupted run's losses bit for bit on CPU.

Under torchrun the language model trains data-parallel (distributed.py): rank 0 alone writes
the run folder, and the checkpoint holds the global carried state and every rank's RNG.
Precision (bf16, fp16 with its gradient scaler), device copies and --compile: precision.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import tokenizers
from ..data.batching import (
    IGNORE,
    LineBatches,
    StreamBatches,
    line_eval_batches,
    stream_eval_batches,
)
from ..data.corpus import Corpus, line_end_from, prepare_corpus, read_source
from ..data.shakespeare import corpus_bytes
from ..data.vocab import BOS, EOS, CharVocab
from ..decoding import SamplingConfig, generate, logits_over
from ..errors import RnnkitError
from ..fileio import atomic_write_bytes, atomic_write_json
from ..layers.recurrent import detach_state
from ..models import LM_MODELS
from ..models.char_lm import CharLM, CharLMConfig
from .checkpoint import KIND, load_checkpoint, save_checkpoint
from .config import TrainConfig, to_dict
from .distributed import (
    Ranks,
    SameOnEveryRank,
    check_batch,
    session,
    share_of_mean_nll,
)
from .losses import loss_report, sequence_nll
from .precision import (
    Update,
    autocast,
    check_precision,
    compile_failure,
    compile_model,
    make_scaler,
    scaled_update,
    to_device,
    use_bf16,
)
from .scheduled_sampling import IMPLEMENTATIONS
from .schedules import lr_at, progress, teacher_forcing_prob


class Interrupted(RnnkitError):
    exit_code = 130
    same_on_every_rank = True  # every rank stops at the same step: rank 0 alone says so


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag the loop checks between steps, so the state
    saved on the way out is never half-updated. A second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


@dataclass
class RunState:
    """What changes during training besides weights and optimizer, saved in last.pt."""
    step: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    loss_sum: float = 0.0  # train loss summed since the last metrics record
    loss_count: int = 0
    carried: tuple | None = None  # hidden state carried into the next TBPTT window
    last_metrics: dict = field(default_factory=dict)
    skipped: int = 0  # steps skipped for a non-finite loss or gradient, in all
    bad_streak: int = 0  # of them, in a row just now
    rollbacks: int = 0
    lr_scale: float = 1.0  # halved at every rollback
    overflows: int = 0  # fp16 steps the gradient scaler skipped (not bad steps)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RnnkitError("--device cuda was asked for, but no CUDA GPU is available; "
                          "use --device cpu")
    return torch.device(name)


def load_text(cfg: TrainConfig) -> tuple[bytes, str]:
    if cfg.data is not None:
        return read_source(cfg.data), str(cfg.data)
    return corpus_bytes(cfg.corpus), f"corpus:{cfg.corpus}"


def load_corpus(cfg: TrainConfig, cache_dir: Path, vocab: CharVocab | None = None) -> Corpus:
    raw, name = load_text(cfg)
    corpus = prepare_corpus(raw, name, cfg.mode, cache_dir, vocab,
                            (cfg.tokenizer, cfg.tokenizer_size))
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


def make_batches(cfg: TrainConfig, corpus: Corpus, tokens, ranks: Ranks = Ranks()):
    """This rank's share (all, for one process) of every training batch."""
    shard = (ranks.rank, ranks.world_size)
    if cfg.mode == "stream":
        return StreamBatches(tokens, cfg.batch_size, cfg.seq_length, *shard)
    v = corpus.vocab
    return LineBatches(tokens, v.id_of(BOS), v.id_of(EOS), cfg.batch_size, cfg.seq_length,
                       cfg.seed, *shard)


def check_context(model_cfg, cfg: TrainConfig) -> None:
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
def evaluate(model: CharLM, tokens, vocab: CharVocab, mode: str, batch_size: int,
             seq_length: int, ranks: Ranks = Ranks()) -> dict:
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


def train_step(model, optimizer, x, y, state, cfg: TrainConfig, bf16: bool = False,
               eps: float = 1.0, ddp=None, scaler=None) -> tuple[float, tuple, Update]:
    """One step. Teacher forcing (eps = 1): the inputs are the true text, the targets the same
    text shifted by one. eps < 1: scheduled sampling mixes in the model's own tokens.

    Returns (loss, detached state, outcome). A non-finite loss or gradient norm skips the
    update (the outcome is false), so one bad batch never reaches the weights. ``ddp``: the
    model's DistributedDataParallel forward (``Ranks.wrap``) in a multi-process run; x and y
    are then this rank's rows, and the loss returned is the global batch's mean. ``scaler``:
    fp16's gradient scaler (the forward then runs under fp16 autocast).
    """
    with autocast(x.device, bf16, scaler):
        if ddp is None:
            forward = IMPLEMENTATIONS[cfg.ss_impl]
            logits, state = forward(model, x, state, eps, cfg.ss_argmax, cfg.ss_skip)
        else:
            logits, state = ddp(x, state, eps)
    if ddp is None:
        loss = mean = sequence_nll(logits.float(), y)
    else:
        loss, mean = share_of_mean_nll(logits.float(), y)
    outcome = apply_update(model, optimizer, loss, cfg.grad_clip, mean, scaler)
    # detach: backprop stops at the window edge, but the state itself flows on
    return mean.item(), detach_state(state), outcome


def apply_update(model, optimizer, loss, grad_clip: float, mean=None,
                 scaler=None) -> Update:
    """Backward, clip and step; a false outcome (weights untouched) for a non-finite loss or
    gradient. ``mean``: the value whose finiteness decides (the global loss of a multi-process
    step, the same on every rank); ``loss`` by default. ``scaler``: fp16's gradient scaler."""
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss if mean is None else mean):
        return Update.BAD
    max_norm = grad_clip if grad_clip > 0 else math.inf
    if scaler is not None and scaler.is_enabled():
        return scaled_update(model, optimizer, loss, max_norm, scaler)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return Update.BAD
    optimizer.step()
    return Update.APPLIED


class MetricsLog:
    """metrics.jsonl, one record per line, flushed as written; trimmed to a step on resume."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        if keep_until is not None and path.is_file():
            kept = [line for line in path.read_text(errors="replace").splitlines()
                    if parse_step(line) <= keep_until]
            atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())
        self.file = open(path, "a" if keep_until is not None else "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class NoMetrics:
    """What ranks other than 0 hold instead of metrics.jsonl: rank 0 alone writes files."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def parse_step(line: str) -> float:
    """A record's step; a torn or garbled line (a machine crash mid-write) counts as none."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


# Settings that decide which batch each step reads: a resumed run must keep them.
SAME_RUN_KEYS = ("task", "data", "corpus", "mode", "tag_format", "batch_size", "seq_length",
                 "val_frac", "test_frac", "seed")


# model sizes filled in from the data, not chosen by the user
DATA_SIZES = ("vocab_size", "tgt_vocab_size", "num_classes", "num_tags")


def check_same_run(saved: dict, model_cfg, cfg: TrainConfig) -> None:
    now = to_dict(model_cfg, cfg)
    changed = [k for k in saved["model"]
               if k not in DATA_SIZES and saved["model"][k] != now["model"].get(k)]
    changed += [k for k in SAME_RUN_KEYS if saved["train"].get(k) != now["train"][k]]
    if changed:
        raise RnnkitError(f"--resume cannot change {', '.join(changed)} (the run used "
                          f"{', '.join(f'{k}={saved_value(saved, k)!r}' for k in changed)}); "
                          "drop those flags, or start a new run with another --out")


def saved_value(saved: dict, key: str):
    return saved["model"][key] if key in saved["model"] else saved["train"].get(key)


MAX_ROLLBACKS = 8
COMPILE_WITH_DDP = ("--compile does not combine with multi-process training (--nproc, "
                    "torchrun); drop --compile, or train in one process")


class TrainerBase:
    """The loop every task shares: optimizer, schedules, signals, non-finite steps, metrics,
    evaluations and checkpoints with exact resume. A task subclass supplies the data and model
    (``_build``), one update (``_train_on_batch``), ``_evaluate``, ``_write_sample`` and the
    checkpoint's ``kind`` and ``_data_meta``."""

    kind = ""
    rate_unit = "chars"  # what ``_chars`` counts: throughput is logged as <unit>_per_sec
    data_parallel = False  # whether the task trains under torchrun (distributed.py)

    def __init__(self, model_cfg, cfg: TrainConfig, out: str | Path,
                 resume: bool = False, log=None):
        if cfg.data is not None:  # absolute, so `rnnkit eval RUN` works from anywhere
            cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).resolve()))
        self.cfg, self.out = cfg, Path(out)
        self.dist = Ranks.current()
        self._check_world()
        self.log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
        if not self.dist.is_main:  # rank 0 speaks for the run
            self.log = lambda msg: None
        self.device = self.dist.device(resolve_device(cfg.device))
        check_precision(cfg.precision, self.device)
        self.bf16 = use_bf16(cfg.precision, self.device)
        self.scaler = make_scaler(cfg.precision, self.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        created = not self.out.exists()
        try:
            self._setup(model_cfg, resume)
        except BaseException:
            if created and self.out.exists() and self.dist.is_main:  # a failed start leaves
                shutil.rmtree(self.out)  # nothing behind
            raise

    def _check_world(self) -> None:
        if not self.dist.distributed:
            return
        if not self.data_parallel:
            raise SameOnEveryRank(f"multi-process training (torchrun, --nproc) supports --task "
                                  f"lm only; train --task {self.cfg.task} in one process")
        if self.cfg.compile:
            raise SameOnEveryRank(COMPILE_WITH_DDP)
        check_batch(self.cfg.batch_size, self.dist.world_size)

    def _setup(self, model_cfg, resume: bool) -> None:
        payload = self.dist.run_on_main(lambda: self._check_run_folder(resume))
        if payload:
            check_same_run(payload["meta"]["config"], model_cfg, self.cfg)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self._build(model_cfg, payload)  # the task's data and model (sizes from the data)
        self.model_cfg = model_cfg
        # the training forward only: checkpoints, evaluation and samples use the plain module
        self.train_model = compile_model(self.model) if self.cfg.compile else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.learning_rate,
                                           betas=(0.9, 0.99), weight_decay=self.cfg.weight_decay)
        self.run = RunState()
        if payload:
            self._restore(payload)
            self.log(f"resuming {self.out} at step {self.run.step}{self._world_change(payload)}")
        else:  # a step-0 checkpoint: a run killed before its first evaluation can --resume
            self._save("last", with_trainer=True)
        if self.dist.is_main:
            atomic_write_json(self.out / "config.json", to_dict(model_cfg, self.cfg))
        self.metrics = self._open_metrics(self.run.step if payload else None)

    def _open_metrics(self, keep_until: int | None):
        if not self.dist.is_main:
            return NoMetrics()
        return MetricsLog(self.out / "metrics.jsonl", keep_until)

    def _world_change(self, payload: dict) -> str:
        """What a resume on another number of processes changes, for the log."""
        saved, now = payload["meta"].get("world_size", 1), self.dist.world_size
        if saved == now:
            return ""
        return (f", saved by {saved} process(es), now {now}: the same batches and carried "
                "state (the global batch is kept); dropout and sampling draws differ (each rank "
                "has its own random stream), and sums run in another order")

    def _check_run_folder(self, resume: bool) -> dict | None:
        last = self.out / "last.pt"
        if resume:
            if not last.is_file():
                raise RnnkitError(f"--resume: no run to resume in {str(self.out)!r} (no last.pt); "
                                  "drop --resume to start a new run there")
            # RNG states must stay on the CPU; weights and optimizer state move on loading
            return load_checkpoint(last, map_location="cpu")
        if last.is_file() or (self.out / "config.json").is_file():
            raise RnnkitError(f"{str(self.out)!r} already holds a run; add --resume to continue "
                              "it, or choose a new --out")
        return None

    def _restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"])
        if "trainer" not in payload:
            raise RnnkitError(f"{self.out / 'last.pt'} has no training state (a best.pt copied "
                              "over it?); resume needs the run's own last.pt")
        t = payload["trainer"]
        self.optimizer.load_state_dict(t["optimizer"])
        if self.scaler.is_enabled() and t.get("scaler"):  # absent: saved by an fp32/bf16 run
            self.scaler.load_state_dict(t["scaler"])
        torch.set_rng_state(t["rng_cpu"])
        if torch.cuda.is_available() and t.get("rng_cuda"):
            torch.cuda.set_rng_state_all(t["rng_cuda"])
        self.dist.restore_rng(t, self.cfg.seed, self.device)
        carried = self.dist.own_rows(t["carried"])  # the checkpoint holds every rank's rows
        carried = tuple(s.to(self.device) for s in carried) if carried is not None else None
        self.run = RunState(t["step"], t["elapsed"], t["best_val"], t["loss_sum"],
                            t["loss_count"], carried, payload["meta"]["metrics"],
                            t.get("skipped", 0), t.get("bad_streak", 0), t.get("rollbacks", 0),
                            t.get("lr_scale", 1.0), t.get("overflows", 0))

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to --max-steps (or --max-time); returns the last metrics record."""
        cfg, run = self.cfg, self.run
        if run.step >= cfg.max_steps or self._time_up(run.elapsed):
            self.log(f"the run in {self.out} is finished (step {run.step}); pass a larger "
                     "--max-steps or --max-time to extend it")
            self.metrics.close()
            return run.last_metrics
        self.model.train()
        # a clock-limited run has no step total to show
        total = cfg.max_steps if cfg.max_time == 0 else None
        bar = tqdm(total=total, initial=run.step, disable=None if self.dist.is_main else True,
                   file=sys.stderr, dynamic_ncols=True, unit="step")
        t_start, elapsed0 = time.perf_counter(), run.elapsed
        self._rate_mark, self._chars = t_start, 0
        try:
            with StopSignals() as stop:
                while True:
                    rates = self._one_step()
                    # every rank must stop, and see the clock, at the same step
                    stopping, run.elapsed = self.dist.agree(
                        stop.signal is not None, elapsed0 + time.perf_counter() - t_start)
                    if rates is None:  # rolled back to an earlier step
                        bar.n = run.step
                        bar.refresh()
                        continue
                    bar.update(1)
                    last = run.step >= cfg.max_steps or self._time_up(run.elapsed)
                    if run.step % cfg.eval_every == 0 or last:
                        self._record(rates, evaluate_now=True)
                    elif run.step % cfg.log_every == 0:
                        self._record(rates)
                        loss = run.last_metrics["train_loss"]  # None if every step was skipped
                        bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-",
                                        tf=f"{rates['teacher_forcing_prob']:.2f}",
                                        rate=f"{run.last_metrics[self.rate_key]:.0f}")
                    if last:
                        break
                    if stopping:
                        saved = self._save("last", with_trainer=True)
                        where = (f"saved {self.out / 'last.pt'}" if saved else
                                 "the weights were not finite, last.pt keeps the last good state")
                        nproc = f" --nproc {self.dist.world_size}" if self.dist.distributed else ""
                        raise Interrupted(
                            f"stopped by {stop.signal or 'a signal to another process'} at step "
                            f"{run.step}; {where}; continue with: rnnkit train --out {self.out} "
                            f"--resume{nproc}")
        finally:
            bar.close()
            self.metrics.close()
        return run.last_metrics

    def _time_up(self, elapsed: float) -> bool:
        return self.cfg.max_time > 0 and elapsed >= self.cfg.max_time

    def _one_step(self) -> dict | None:
        """One optimizer step; returns the rates it used (for the metrics record), or None
        when the step ended in a rollback to the last checkpoint."""
        run, cfg = self.run, self.cfg
        lr = lr_at(run.step, progress(run.step, run.elapsed, cfg), cfg) * run.lr_scale
        eps = teacher_forcing_prob(run.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, outcome = self._train_guarded(eps)
        run.step += 1
        if outcome is not Update.BAD:  # applied, or an fp16 overflow: the loss is real
            run.loss_sum += loss
            run.loss_count += 1
        if outcome is Update.OVERFLOW:  # the scaler's routine: the bad streak is untouched
            run.overflows += 1
        elif outcome:
            run.bad_streak = 0
        else:  # skipped
            run.skipped, run.bad_streak = run.skipped + 1, run.bad_streak + 1
            if run.bad_streak >= cfg.max_bad_steps:
                self._rollback()
                return None
        rates = {"lr": lr, "teacher_forcing_prob": eps, "skipped_steps": run.skipped}
        if self.scaler.is_enabled():
            rates["overflow_steps"] = run.overflows
        return rates

    def _train_guarded(self, eps: float) -> tuple[float, Update]:
        """``_train_on_batch``, with a torch.compile failure (it happens at the first call)
        turned into one error line."""
        try:
            return self._train_on_batch(eps)
        except RuntimeError as e:
            message = compile_failure(e) if self.cfg.compile else None
            if message is None:
                raise
            raise RnnkitError(message) from None

    def _rollback(self) -> None:
        """Back to the last checkpoint with half the learning rate, after too many bad steps."""
        old = self.run
        if old.rollbacks >= MAX_ROLLBACKS:
            raise RnnkitError(f"training keeps producing non-finite values (rolled back "
                              f"{old.rollbacks} times); lower --learning-rate or --grad-clip, "
                              "or check the data")
        self._restore(self.dist.run_on_main(
            lambda: load_checkpoint(self.out / "last.pt", map_location="cpu")))
        restored = self.run
        restored.skipped, restored.rollbacks = old.skipped, old.rollbacks + 1
        restored.overflows = old.overflows
        restored.lr_scale = old.lr_scale / 2
        old.__dict__.update(vars(restored))  # in place: fit() holds this object
        self.run = run = old
        self.metrics.close()
        self.metrics = self._open_metrics(run.step)
        self._save("last", with_trainer=True)  # a kill now resumes with the lowered rate
        self.log(f"warning: {self.cfg.max_bad_steps} steps in a row had a non-finite loss or "
                 f"gradient; rolled back to step {run.step} with the learning rate x{run.lr_scale}")

    def _record(self, rates: dict, evaluate_now: bool = False) -> None:
        """Write a metrics record; at evaluations also a sample and the checkpoints.

        The record is written before the checkpoint, so a run killed in between resumes from
        the older checkpoint and the newer records are trimmed: no step is lost or doubled.
        """
        run = self.run
        record = {"step": run.step,
                  "train_loss": run.loss_sum / run.loss_count if run.loss_count else None,
                  **rates, "elapsed": round(run.elapsed, 3),
                  self.rate_key: self._chars_per_sec()}
        run.loss_sum, run.loss_count = 0.0, 0
        if evaluate_now:
            record.update(self._evaluate())
            if self.dist.is_main:
                self._write_sample()
            self.log(describe(record))
        run.last_metrics = record
        self.metrics.write(record)
        if evaluate_now:
            val = record.get("val_loss", math.inf)
            improved = val < run.best_val or not math.isfinite(run.best_val)
            run.best_val = min(run.best_val, val)
            if improved:  # best first: a kill between the two then redoes both on resume
                self._save("best", with_trainer=False)
            self._save("last", with_trainer=True)
        self._rate_mark, self._chars = time.perf_counter(), 0

    @property
    def rate_key(self) -> str:
        return f"{self.rate_unit}_per_sec"

    def _chars_per_sec(self) -> float:
        """Characters (or the task's rate_unit) trained on, padding excluded, per second since
        the last record."""
        seconds = time.perf_counter() - self._rate_mark
        chars, = self.dist.sum(self._chars)  # every rank's
        return round(chars / seconds, 1) if seconds > 0 else 0.0

    def _save(self, name: str, with_trainer: bool) -> bool:
        """Write NAME.pt/.json; False (nothing written) when the weights are not finite."""
        run = self.run
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            # the previous checkpoint stays; the bad steps that follow trigger a rollback to it
            self.log(f"warning: non-finite weights at step {run.step}; {name}.pt not written")
            return False
        meta = {"kind": self.kind, "config": to_dict(self.model_cfg, self.cfg),
                **self._data_meta(), "step": run.step, "metrics": run.last_metrics,
                "world_size": self.dist.world_size}
        trainer = self._trainer_state() if with_trainer else None  # collectives: every rank
        if self.dist.is_main:
            save_checkpoint(self.out / f"{name}.pt", self.model.state_dict(), meta, trainer)
        return True

    def _trainer_state(self) -> dict:
        run = self.run
        carried = self.dist.gather_rows(run.carried)  # every rank's streams, in rank order
        trainer = {"optimizer": self.optimizer.state_dict(), "step": run.step,
                   "elapsed": run.elapsed, "best_val": run.best_val,
                   "loss_sum": run.loss_sum, "loss_count": run.loss_count,
                   "skipped": run.skipped, "rollbacks": run.rollbacks,
                   "bad_streak": run.bad_streak,
                   "lr_scale": run.lr_scale,
                   "carried": list(carried) if carried is not None else None,
                   "rng_cpu": torch.get_rng_state(),
                   "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                   else []}
        ranks_rng = self.dist.rng_states(self.device)
        if ranks_rng is not None:
            trainer["rng_ranks"] = ranks_rng
        if self.scaler.is_enabled():  # fp16: the scale and its growth tracker, for exact resume
            trainer["scaler"] = self.scaler.state_dict()
            trainer["overflows"] = run.overflows
        return trainer


class Trainer(TrainerBase):
    """The character-level language model: builds the model, optimizer and data for a run
    folder, then ``fit()`` trains it with stateful TBPTT."""

    kind = KIND
    data_parallel = True

    def _build(self, model_cfg: CharLMConfig, payload: dict | None) -> None:
        cfg = self.cfg
        vocab = tokenizers.from_json(payload["meta"]["vocab"]) if payload else None
        # rank 0 encodes the corpus into the run folder; the others then read that cache
        corpus = self.dist.main_first(lambda: load_corpus(cfg, self.out / "data", vocab))
        self.vocab = corpus.vocab
        splits = corpus.split(cfg.val_frac, cfg.test_frac)
        self.val_tokens = cap_split(splits["val"], cfg.eval_max_chars, cfg.mode, self.vocab)
        self.batches = make_batches(cfg, corpus, splits["train"], self.dist)
        model_cfg.vocab_size = len(self.vocab)
        check_context(model_cfg, cfg)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = LM_MODELS[cfg.model][0](model_cfg).to(self.device)
        self.dist.seed(cfg.seed)
        self.ddp = self.dist.wrap(self.model, cfg.ss_impl, cfg.ss_argmax, cfg.ss_skip)

    def _data_meta(self) -> dict:
        return {"vocab": self.vocab.to_json()}

    def _train_on_batch(self, eps: float) -> tuple[float, bool]:
        run = self.run
        x, y, reset = self.batches.batch(run.step)
        self._chars += int((y != IGNORE).sum())
        state = None if reset else run.carried
        loss, state, outcome = train_step(self.train_model, self.optimizer,
                                          to_device(x, self.device), to_device(y, self.device),
                                          state, self.cfg, self.bf16, eps, self.ddp, self.scaler)
        # a bad step's state may be non-finite: it must not flow into the next window (an fp16
        # overflow's forward was sound: only its gradients overflowed)
        carry = outcome is not Update.BAD and self.cfg.mode == "stream"
        run.carried = state if carry else None
        return loss, outcome

    def _evaluate(self) -> dict:
        if len(self.val_tokens) < 2:
            return {}
        cfg = self.cfg
        rep = evaluate(self.model, self.val_tokens, self.vocab, cfg.mode,
                       eval_batch_size(cfg.mode, cfg.batch_size), cfg.seq_length, self.dist)
        return {"val_loss": rep["loss"], "val_bpc": rep["bpc"], "val_ppl": rep["perplexity"]}

    def _write_sample(self) -> None:
        gen = torch.Generator(self.device).manual_seed(self.cfg.seed + self.run.step)
        rows = generate(self.model, self.vocab, "", self.cfg.sample_length, SamplingConfig(),
                        gen)
        (self.out / "samples").mkdir(exist_ok=True)
        text = self.vocab.decode(rows[0])
        atomic_write_bytes(self.out / "samples" / f"step_{self.run.step:06d}.txt", text.encode())


def describe(record: dict) -> str:
    """One console line for an evaluation record."""
    parts = [f"step {record['step']}"]
    if record.get("train_loss") is not None:
        parts.append(f"train loss {record['train_loss']:.4f}")
    if "val_bpc" in record:
        parts.append(f"val loss {record['val_loss']:.4f} ({record['val_bpc']:.3f} bpc, "
                     f"ppl {record['val_ppl']:.2f})")
    elif "val_loss" in record:  # a pair task: its loss, then its own metrics
        parts += [f"{k.replace('_', ' ')} {v:.4f}" for k, v in record.items()
                  if k.startswith("val_") and isinstance(v, float)]
    rate = next(k for k in record if k.endswith("_per_sec"))
    return ", ".join(parts) + f", {record[rate]:,.0f} {rate[:-8]}/s"


def train(model_cfg, cfg: TrainConfig, out: str | Path, resume: bool = False,
          log=None) -> dict:
    """Python API for ``rnnkit train``: train into run folder ``out``; returns final metrics.

    Started by torchrun with several processes, each calls this and they train together."""
    with session(resolve_device(cfg.device).type, cfg.dist_backend, cfg.dist_timeout):
        return trainer_class(cfg.task)(model_cfg, cfg, out, resume, log).fit()


def trainer_class(task: str) -> type[TrainerBase]:
    if task == "lm":
        return Trainer
    # the task trainers build on this module
    from .pair_trainer import PairTrainer
    from .vision_trainer import VisionTrainer

    return VisionTrainer if task in ("activity", "caption", "frames") else PairTrainer
