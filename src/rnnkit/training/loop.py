"""The training loop every task shares: steps, schedules, precision, clipping, rollback,
evaluations, checkpoints with exact resume, and data-parallel training. The task (tasks/) is
handed in and supplies the data, the forward pass and loss, the metrics and the samples.

What a run folder holds: run_folder.py. --time-budget fits the step count to the clock of the
machine: budget.py.

Resume is exact: the batch is a function of the step, and the checkpoint carries everything
else that changes (weights, AdamW moments, RNG, the hidden state carried between windows, the
partial loss average), so a resumed run repeats the uninterrupted run's losses bit for bit on CPU.
A new run --init-from another run's checkpoint starts from its weights: init_from.py.

Under torchrun a data-parallel task trains with DDP (distributed.py): rank 0 alone writes
the run folder, and the checkpoint holds the global carried state and every rank's RNG.
Precision (bf16, fp16 with its gradient scaler), device copies and --compile: precision.py.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
import weakref
from pathlib import Path

import torch
from tqdm import tqdm

from .. import allocator
from ..data.batching import to_device
from ..errors import RnnkitError
from ..fair_share import keep_fair_share
from ..fileio import atomic_write_json
from ..limits import set_threads
from ..tasks import Task, data_parallel_tasks, get_task
from .averaging import WeightAverage
from .budget import BudgetFit, how_to_extend, resumed_max_steps
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, data_path, to_dict
from .distributed import Ranks, check_world, session
from .init_from import init_data_errors, load_weights, start_from
from .precision import (
    Update,
    check_precision,
    compile_errors,
    compile_model,
    make_scaler,
    resolve_device,
    use_bf16,
)
from .progress import StepBar
from .records import MetricsLog, NoMetrics, describe
from .run_folder import check_same_run, open_run_folder, world_change
from .run_state import RunState, restore_training, trainer_state
from .schedules import lr_at, progress, teacher_forcing_prob
from .signals import Interrupted, StopSignals
from .stages import keep_stage
from .tensorboard import check_tensorboard, with_tensorboard
from .update import train_step

MAX_ROLLBACKS = 8


class Trainer:
    """Builds the task's data and model, the optimizer and the run folder ``out``; ``fit()``
    then trains to --max-steps (or --max-time). ``task``: the Task to train (default: the
    one --task names)."""

    def __init__(self, model_cfg, cfg: TrainConfig, out: str | Path,
                 resume: bool = False, log=None, task: Task | None = None):
        if cfg.data is not None:  # absolute, so `rnnkit eval RUN` works from anywhere
            cfg = dataclasses.replace(cfg, data=data_path(cfg))
        check_tensorboard(cfg.tensorboard)
        # --init-from: weights and model settings (a resumed run's come from its last.pt)
        self.init, model_cfg, cfg = start_from(model_cfg, cfg, task, Path(out), resume)
        self.cfg, self.out = cfg, Path(out)
        self.task = task or get_task(cfg.task)
        self.dist = Ranks.current()
        check_world(self.dist, self.task, cfg, data_parallel_tasks())
        self.log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
        if not self.dist.is_main:  # rank 0 speaks for the run
            self.log = lambda msg: None
        self.device = self.dist.device(resolve_device(cfg.device))
        check_precision(cfg.precision, self.device)
        self.bf16 = use_bf16(cfg.precision, self.device)
        self.scaler = make_scaler(cfg.precision, self.device)
        set_threads(cfg.threads)
        allocator.keep_freed_memory()  # the fused kernels' workspaces, page-faulted every step
        self.created, self.lock, self.budget = False, None, BudgetFit()
        try:
            self._setup(model_cfg, resume)
        except BaseException:
            if self.lock is not None:
                if self.created:  # a failed start leaves nothing behind
                    shutil.rmtree(self.out, ignore_errors=True)
                self.lock.release()
            raise
        # fit() lets other processes use the folder when it ends; so does dropping the Trainer
        self.unlock = weakref.finalize(self, self.lock.release) if self.lock else lambda: None

    def _setup(self, model_cfg, resume: bool) -> None:
        payload = self.dist.run_on_main(lambda: self._open_folder(resume))
        if payload:
            check_same_run(payload["meta"]["config"], model_cfg, self.cfg)
        with init_data_errors(self.init):  # a fine-tuned model keeps its vocabulary: the meta
            self._build(model_cfg, (payload or self.init or {}).get("meta"))
        self.model_cfg = model_cfg
        # the training forward only: checkpoints, evaluation and samples use the plain module
        self.train_model = compile_model(self.model) if self.cfg.compile else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.learning_rate,
                                           betas=(0.9, 0.99), weight_decay=self.cfg.weight_decay)
        self.average = WeightAverage(self.model, self.cfg.ema)
        self.run = RunState()
        if payload:
            self.run = restore_training(payload, self.model, self.optimizer, self.scaler,
                                        self.dist, self.cfg.seed, self.device,
                                        self.out / "last.pt", self.average)
            self.cfg = dataclasses.replace(self.cfg, max_steps=resumed_max_steps(
                self.cfg.time_budget, self.cfg.max_steps, self.run.budget_fit))
            change = world_change(payload, self.dist.world_size)
            self.log(f"resuming {self.out} at step {self.run.step}{change}")
        elif not self._save("last", with_trainer=True):  # a step-0 checkpoint: a run killed
            # before its first evaluation can --resume
            raise RnnkitError("the model's initial weights are not finite; check the model "
                              "settings (such as --forget-bias)")
        self._write_config()
        self.metrics = self._open_metrics(self.run.step if payload else None)

    def _open_folder(self, resume: bool) -> dict | None:  # rank 0
        self.lock, self.created, payload = open_run_folder(self.out, resume, self.log)
        return payload

    def _build(self, model_cfg, meta: dict | None) -> None:
        """The task's data (the model's sizes come from it), then the model: seeded, so every
        rank starts from the same weights."""
        self.data = self.task.prepare(model_cfg, self.cfg, self.out, meta, self.dist)
        torch.manual_seed(self.cfg.seed)
        self.model = self.task.models[self.cfg.model][0](model_cfg).to(self.device)
        if self.init:
            load_weights(self.model, self.init, self.log)
        self.dist.seed(self.cfg.seed)
        self.ddp = self.dist.wrap(self.model, self.data.forward)

    def _open_metrics(self, keep_until: int | None):
        if not self.dist.is_main:
            return NoMetrics()
        metrics = MetricsLog(self.out / "metrics.jsonl", keep_until, self.log)
        return with_tensorboard(metrics, self.cfg.tensorboard, self.out, keep_until)

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to --max-steps (or --max-time); returns the last metrics record."""
        cfg, run = self.cfg, self.run
        if self._done():
            self.log(f"the run in {self.out} is finished (step {run.step}); pass "
                     f"{how_to_extend(cfg.time_budget, run.budget_fit)} to extend it")
            return self._close()
        self.model.train()
        bar = StepBar(cfg, run.step, run.elapsed, show=self.dist.is_main)
        t_start, elapsed0, first = time.perf_counter(), run.elapsed, run.step
        self._rate_mark, self._chars = t_start, 0
        try:
            with StopSignals() as stop:
                while True:
                    rates = self._one_step()
                    keep_fair_share()  # fewer threads while other processes compute
                    # every rank must stop, and see the clock, at the same step
                    stopping, run.elapsed = self.dist.agree(
                        stop.signal is not None, elapsed0 + time.perf_counter() - t_start)
                    bar.advance(run.step, run.elapsed)
                    if rates is None:  # rolled back to an earlier step
                        continue
                    fit_now = self.budget.due(self.cfg, run, first)  # --time-budget
                    if run.step % cfg.eval_every == 0 or self._done() or fit_now:
                        self._record(rates, evaluate_now=True, fit=fit_now)
                        bar.limits = (self.cfg.max_steps, cfg.max_time)  # a fit sets the first
                    elif run.step % cfg.log_every == 0:
                        self._record(rates)
                        bar.show_record(run.last_metrics, rates, self.rate_key)
                    if self._done():
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
            self._close()
        return run.last_metrics

    def _close(self) -> dict:
        """Close metrics.jsonl (and TensorBoard), unlock the folder; returns the last record."""
        self.metrics.close()
        self.unlock()
        return self.run.last_metrics

    def _done(self) -> bool:
        """At --max-steps (fitted, with --time-budget) or past --max-time."""
        cfg, run = self.cfg, self.run
        return run.step >= cfg.max_steps or 0 < cfg.max_time <= run.elapsed

    def _write_config(self) -> None:
        if self.dist.is_main:
            atomic_write_json(self.out / "config.json", to_dict(self.model_cfg, self.cfg))

    def _one_step(self) -> dict | None:
        """One optimizer step; returns the rates it used (for the metrics record), or None
        when the step ended in a rollback to the last checkpoint."""
        run, cfg = self.run, self.cfg
        lr = lr_at(run.step, progress(run.step, run.elapsed, cfg), cfg) * run.lr_scale
        eps = teacher_forcing_prob(run.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with compile_errors(self.cfg.compile):  # a failure shows at the first call
            run.count_step(*self._train_on_batch(eps))
        if run.bad_streak >= cfg.max_bad_steps:
            self._rollback()
            return None
        rates = {"lr": lr, "teacher_forcing_prob": eps, "skipped_steps": run.skipped}
        if self.scaler.is_enabled():
            rates["overflow_steps"] = run.overflows
        return rates

    def _train_on_batch(self, eps: float) -> tuple[float, Update]:
        run = self.run
        batch, fresh = self.data.batch(run.step)
        self._chars += self.data.count(batch)
        state = None if fresh or not self.data.carries_state else run.carried
        loss, state, outcome = train_step(self.data, self.train_model, self.optimizer,
                                          to_device(batch, self.device), state,
                                          self.cfg.grad_clip, self.bf16, eps, self.ddp,
                                          self.scaler, run.loss_ceiling)
        # a bad step's state may be non-finite: it must not flow into the next window (an fp16
        # overflow's forward was sound: only its gradients overflowed)
        carry = outcome is not Update.BAD and self.data.carries_state
        run.carried = state if carry else None
        if outcome is Update.APPLIED:  # the weights moved
            self.average.update()
        return loss, outcome

    def _rollback(self) -> None:
        """Back to the last checkpoint with half the learning rate, after too many bad steps."""
        old = self.run
        if old.rollbacks >= MAX_ROLLBACKS:
            raise RnnkitError(f"training keeps diverging (non-finite values or a loss above "
                              f"{old.loss_ceiling:.4g}; rolled back {old.rollbacks} times); "
                              "lower --learning-rate or --grad-clip, or check the data")
        restored = restore_training(
            self.dist.run_on_main(lambda: load_checkpoint(self.out / "last.pt", "cpu")),
            self.model, self.optimizer, self.scaler, self.dist, self.cfg.seed, self.device,
            self.out / "last.pt", self.average)
        old.roll_back_to(restored)  # in place: fit() holds this object
        run = self.run
        self.metrics.close()
        self.metrics = self._open_metrics(run.step)
        self._save("last", with_trainer=True)  # a kill now resumes with the lowered rate
        self.log(f"warning: {self.cfg.max_bad_steps} steps in a row had a non-finite or "
                 "diverging loss, or a non-finite gradient; rolled back to step "
                 f"{run.step} with the learning rate x{run.lr_scale}")

    def _record(self, rates: dict, evaluate_now: bool = False, fit: bool = False) -> None:
        """Write a metrics record; at evaluations also a sample and the checkpoints (and,
        with ``fit``, first fit the steps to --time-budget).

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
            t_eval = time.perf_counter()
            with self.average.applied():  # --ema: the averaged weights are measured
                record.update(self.data.evaluate(self.model, self.dist))
                if self.dist.is_main:
                    self.data.write_sample(self.model, self.out / "samples", run.step)
            if fit:  # fixes --max-steps before this evaluation's checkpoints are written
                _, seconds = self.dist.agree(False, time.perf_counter() - t_eval
                                             + 2 * self.budget.save_seconds)
                self.cfg = self.budget.fit(self.cfg, run, seconds, self.log)
            self.log(describe(record))
        run.last_metrics = record
        self.metrics.write(record, evaluate_now)
        if evaluate_now:
            val = record.get("val_loss", math.inf)
            improved = val < run.best_val or not math.isfinite(run.best_val)
            run.best_val = min(run.best_val, val)
            # best and step files first: a kill before last.pt then redoes them on resume
            best = improved and self._save("best", with_trainer=False)
            if self.cfg.keep_checkpoints and self.dist.is_main:  # no collective in it
                keep_stage(self.out, run.step, self.cfg.keep_checkpoints, best,
                           lambda name: self._save(name, with_trainer=False))
            self._save("last", with_trainer=True)
            if fit and run.budget_fit["final"]:  # after last.pt: config.json keeps the
                self._write_config()  # cap until last.pt holds the final fit
        self._rate_mark, self._chars = time.perf_counter(), 0

    @property
    def rate_key(self) -> str:
        return f"{self.task.units}_per_sec"

    def _chars_per_sec(self) -> float:
        """The task's units (characters) trained on per second since the last record, no pads."""
        seconds = time.perf_counter() - self._rate_mark
        chars, = self.dist.sum(self._chars)  # every rank's
        return round(chars / seconds, 1) if seconds > 0 else 0.0

    def _save(self, name: str, with_trainer: bool) -> bool:
        """Write NAME.pt/.json; False when the weights are not finite (the previous checkpoint
        stays: the bad steps that follow roll back to it). With --ema the checkpoint's weights
        are the average, and last.pt keeps the optimizer's weights in its training state."""
        with self.average.applied() as live:
            if not all(bool(torch.isfinite(p).all())
                       for p in [*self.model.parameters(), *(live or ())]):
                self.log(f"warning: non-finite weights at step {self.run.step}; "
                         f"{name}.pt not written")
                return False
            meta = {"kind": self.task.kind, "config": to_dict(self.model_cfg, self.cfg),
                    **self.data.meta(), "step": self.run.step, "metrics": self.run.last_metrics,
                    "world_size": self.dist.world_size}
            trainer = None
            if with_trainer:  # collectives: every rank
                trainer = {**trainer_state(self.run, self.optimizer, self.scaler, self.dist,
                                           self.device), **self.average.state(live)}
            t_save = time.perf_counter()
            if self.dist.is_main:
                save_checkpoint(self.out / f"{name}.pt", self.model.state_dict(), meta, trainer)
        if with_trainer:  # the cost of an evaluation's checkpoints, for --time-budget
            self.budget.save_seconds = time.perf_counter() - t_save
        return True

def train(model_cfg, cfg: TrainConfig, out: str | Path, resume: bool = False,
          log=None) -> dict:
    """Python API for ``rnnkit train``: train into run folder ``out``; returns final metrics.

    Started by torchrun with several processes, each calls this and they train together."""
    with session(resolve_device(cfg.device).type, cfg.dist_backend, cfg.dist_timeout):
        return Trainer(model_cfg, cfg, out, resume, log).fit()
