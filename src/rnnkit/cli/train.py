"""Train a model into a run folder.

A language model of a text (--task lm, the default; characters, bytes, words or BPE tokens;
recurrent or --model gpt), a seq2seq, classifier or tagger on a TSV file of input<TAB>output
lines, or an image or video model (activity, caption, frames).

examples:
  rnnkit train --preset shakespeare-5min --out runs/shakespeare
  rnnkit train --data input.txt --out runs/mine --rnn-size 512 --max-steps 5000
  rnnkit train --data input.txt --out runs/ten --time-budget 600 --max-steps 100000  # 10 min
  rnnkit train --preset gpt-5min --out runs/gpt          # the transformer baseline
  rnnkit train --data input.txt --out runs/bpe --tokenizer bpe --tokenizer-size 1024
  rnnkit train --task seq2seq --data pairs.tsv --out runs/translate --attention additive
  rnnkit train --task classify --data labelled.tsv --out runs/cls --pool mean
  rnnkit train --task tag --data tagged.tsv --out runs/tagger --no-bidirectional
  rnnkit train --task activity --out runs/activity      # generated clips of moving digits
  rnnkit train --task frames --out runs/frames --arch convlstm --max-time 600
  rnnkit train --out runs/mine --resume                 # continue an interrupted run
  rnnkit train --out runs/mine --resume --max-steps 8000  # extend a finished one
  rnnkit train --data input.txt --out runs/ddp --nproc 2  # 2 processes, DDP (docs/distributed.md)
  rnnkit train --data mine.txt --out runs/tuned --init-from runs/shakespeare  # fine-tune
  rnnkit train --data input.txt --out runs/mine --keep-checkpoints 5 --tensorboard

Settings come from the dataclass defaults, then --preset or --config, then (with --resume)
the run's config.json, then the flags given here. With --init-from, the model's settings (and
its task, --model, --tokenizer and --mode) come from that checkpoint instead of the preset.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..errors import RnnkitError
from ..tasks import data_parallel_tasks, get_task
from ..training.config import (
    FLAG_NAMES,
    TrainConfig,
    build_configs,
    check_keys,
    model_config_classes,
    preset_names,
    read_toml,
)
from ..training.distributed import (
    COMPILE_WITH_DDP,
    backend_for,
    check_batch,
    launched_rank,
    launched_world_size,
)
from ..training.init_from import init_layers
from ..training.loop import train
from .args import add_dataclass_arguments, as_flags, overrides

# exit codes of a training process that printed its own "rnnkit: error:" line
OWN_MESSAGE_CODES = (1, 2, 130)


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder for checkpoints, metrics.jsonl and samples")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME",
                        help=f"a built-in configuration: {', '.join(preset_names())}")
    source.add_argument("--config", metavar="FILE.toml", help="a TOML file with [model] "
                        "and [train] tables, keys as the flags below with underscores "
                        "(hidden_size for --rnn-size)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt, exactly where it stopped")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train with N processes on this machine, started by torchrun "
                   "(torch.distributed.run): DistributedDataParallel, gloo on CPU (one thread "
                   "each), nccl on CUDA (one GPU each); --batch-size stays the global batch")
    add_dataclass_arguments(p, model_config_classes(), "model")
    add_dataclass_arguments(p, TrainConfig, "train")


def flag_name(setting: str) -> str:
    return "--" + FLAG_NAMES.get(setting, setting.replace("_", "-"))


def saved_config(out: Path) -> dict:
    path = out / "config.json"
    if not path.is_file():
        return {}
    fix = "fix it (or delete it and pass the run's settings as flags), or start a new --out"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        check_keys(doc, str(path))
    except (ValueError, AttributeError, RnnkitError):
        raise RnnkitError(f"{path} is corrupt; {fix}") from None
    try:  # alone, as the run wrote it: a bad value is then the file's, not a flag's
        build_configs(doc)
    except RnnkitError as e:
        reason = str(e).removeprefix("bad configuration: ")
        raise RnnkitError(f"{path} holds a setting no run writes ({reason}); {fix}") from None
    return doc


def run(args) -> int:
    out = Path(args.out)
    try:
        layers = [read_toml(args.preset, args.config)] if args.preset or args.config else []
        if args.resume:
            layers.append(saved_config(out))
        model_cfg, cfg = build_configs(*layers, overrides(args))
        if cfg.init_from is not None and not args.resume:  # the model comes from there
            layers = init_layers(cfg.init_from, layers, overrides(args), flag_name)
            model_cfg, cfg = build_configs(*layers)
    except RnnkitError:
        if launched_rank() > 0:  # every rank finds the same problem: rank 0 reports it
            raise SystemExit(0) from None
        raise
    if args.nproc is not None and args.nproc != 1:
        return launch(args, cfg)
    try:
        metrics = train(model_cfg, cfg, out, resume=args.resume)
    except RnnkitError as e:
        raise for_this_rank(e) from None
    if launched_rank() == 0:
        print(summary(metrics, out, cfg.tokenizer), flush=True)
    return 0


def for_this_rank(e: RnnkitError) -> RnnkitError:
    """Under torchrun, an error every rank shares (a stop on a signal included) is rank 0's
    to report: the other ranks exit 0, quietly, since torchrun stops every process as soon as
    one fails, and rank 0 may still be saving. Another rank's own error names the rank."""
    rank = launched_rank()
    if rank == 0:
        return e
    if getattr(e, "same_on_every_rank", False):
        raise SystemExit(0)
    mine = RnnkitError(f"rank {rank}: {e}")
    mine.exit_code = getattr(e, "exit_code", 2)
    return mine


def summary(metrics: dict, out: Path, tokenizer: str = "char") -> str:
    val = metrics.get("val_loss")
    if val is not None and "val_bpc" in metrics:
        unit = "char" if tokenizer == "char" else "token"
        summary = f"val loss {val:.4f} nats/{unit} ({metrics['val_bpc']:.3f} bpc)"
    elif val is not None:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("val_"))
    else:
        summary = "done"
    return f"step {metrics.get('step', 0)}: {summary}; run folder {out}"


def launch(args, cfg: TrainConfig) -> int:
    """The same command without --nproc, in args.nproc processes started by torchrun on this
    machine. Returns 0, or the exit code of the process that failed first."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    check_launch(args.nproc, cfg)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, without its banner
    quiet_torchrun_logs()
    argv = ["--standalone", f"--nproc-per-node={args.nproc}", "-m", "rnnkit", "train",
            *child_args(args)]
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as e:
        return failure(e)
    except SignalException:  # the processes got the signal too, saved and said so
        return 130
    return 0


def quiet_torchrun_logs() -> None:
    """The processes report their own errors, and failure() sums up the rest in one line:
    torchrun's warnings (each of its loggers has its own level) would only repeat them."""
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("torch.distributed") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.CRITICAL)


def check_launch(nproc: int, cfg: TrainConfig) -> None:
    if nproc < 1:
        raise RnnkitError(f"--nproc must be >= 1, got {nproc}")
    if launched_world_size() > 1:
        raise RnnkitError("--nproc starts the processes itself; drop it when launching with "
                          "torchrun")
    if not get_task(cfg.task).data_parallel:
        raise RnnkitError(f"--nproc supports --task {data_parallel_tasks()} only; train --task "
                          f"{cfg.task} without it")
    check_batch(cfg.batch_size, nproc)
    if cfg.compile:
        raise RnnkitError(COMPILE_WITH_DDP)
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    backend = backend_for("cuda" if cuda else "cpu", cfg.dist_backend)
    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise RnnkitError(f"--nproc {nproc} with nccl needs {nproc} GPUs (one per process), "
                          f"this machine has {torch.cuda.device_count()}; use fewer processes, "
                          "--device cpu, or --dist-backend gloo to share a GPU")


def child_args(args) -> list[str]:
    words = ["--out", str(args.out)]
    if args.preset or args.config:
        words += ["--preset", args.preset] if args.preset else ["--config", args.config]
    return words + (["--resume"] if args.resume else []) + as_flags(args)


def failure(e) -> int:
    """The exit code for a failed launch; one error line for a process that could not print
    its own (killed by a signal, or an unexpected exit)."""
    failures = sorted(e.failures.items(), key=lambda item: item[1].timestamp)
    silent = [(rank, f) for rank, f in failures if f.exitcode not in OWN_MESSAGE_CODES]
    if not silent:
        return failures[0][1].exitcode
    rank, f = silent[0]
    how = (f"was killed by {f.signal_name()}" if f.exitcode < 0 else
           f"exited with code {f.exitcode}")
    error = RnnkitError(f"training process rank {rank} {how}; the other processes were "
                        "stopped; the run folder keeps the last checkpoint, continue with "
                        "--resume")
    error.exit_code = 128 - f.exitcode if f.exitcode < 0 else f.exitcode
    raise error
