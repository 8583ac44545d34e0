"""Quality per wall-clock budget: train a preset for a fixed time, evaluate on the full val split.

    python benchmarks/bench_quality.py --budget 300 --save benchmarks/results/quality.json

(the built-in tinyshakespeare, first 90% train, last 10% val; --data FILE for another text)

Prints one JSON object: val loss (nats/token: per character for the char tokenizer) and bits
per character over every val character, training tokens/s (``train_chars_per_sec``), peak
RSS, steps (and, for a --time-budget preset, the count the budget fitted), parameters, and
the wall time of the whole job (training, its periodic evaluations and the final
evaluation). A step-limited preset runs as shipped and its wall time is reported against the
budget; a clock-limited or budgeted one (``max_time``, ``time_budget``) is capped at
``budget - reserve`` seconds so that the final evaluation fits.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import emit

import rnnkit
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.training.loop import Trainer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="shakespeare-5min")
    p.add_argument("--data", default=None, help="text file (default: the built-in corpus)")
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--test-frac", type=float, default=0.0)
    p.add_argument("--budget", type=float, default=300.0, help="seconds for the whole job")
    p.add_argument("--reserve", type=float, default=10.0,
                   help="seconds kept for start-up and the final evaluation: a preset's "
                   "--time-budget and --max-time are capped at the budget less this")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra train/model settings, e.g. train.learning_rate=0.004")
    p.add_argument("--out", default=None,
                   help="run folder to keep (default: a temporary one, removed after)")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def settings(args) -> tuple[dict, dict]:
    train = {"data": args.data, "val_frac": args.val_frac, "test_frac": args.test_frac}
    model: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        (train if section == "train" else model)[name] = json.loads(value)
    return model, train


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.out:
        return measure(args, Path(args.out) / "run")
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        return measure(args, Path(tmp) / "run")


def measure(args, out: Path) -> dict:
    """Train into the run folder ``out``, score it, print (and --save) the JSON."""
    t0 = time.perf_counter()
    model, train = settings(args)
    model_cfg, cfg = rnnkit.configs(preset=args.preset, model=model, train=train)
    # a clock-limited or budgeted preset is capped to fit the budget; a step-limited one runs
    # as shipped (its wall time is reported: over the budget is a miss)
    for name in ("max_time", "time_budget"):
        if getattr(cfg, name) > 0:
            setattr(cfg, name, min(getattr(cfg, name), args.budget - args.reserve))
    trainer = Trainer(model_cfg, cfg, out)
    final = trainer.fit()
    train_wall = time.perf_counter() - t0
    report = rnnkit.evaluate(out / "last.pt", data=args.data, split="val")
    result = {
        "benchmark": "quality_per_budget", "preset": args.preset,
        "data": args.data or f"corpus:{cfg.corpus}", "budget_s": args.budget,
        "val_loss": round(report["loss"], 4), "val_bpc": round(report["bpc"], 4),
        "val_chars": report["chars"], "val_tokens": report["tokens"], "steps": final["step"],
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "train_chars_per_sec": round(final["step"] * cfg.batch_size * cfg.seq_length
                                     / final["elapsed"], 1),
        "wall_s": round(time.perf_counter() - t0, 1), "train_wall_s": round(train_wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bf16": trainer.bf16, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "config": {"model": vars(model_cfg), "train": vars(cfg)},
    }
    if trainer.run.budget_fit:  # the steps the budget fitted (the clock may stop it sooner)
        result["budget_fit"] = trainer.run.budget_fit
    if cfg.ema:  # the checkpoint holds the average: the weights it averaged, scored beside
        result["val_loss_trained_weights"] = trained_weights_loss(out, args.data)
    return emit(result, args.save)


def trained_weights_loss(run: Path, data: str | None) -> float:
    """Val loss of the weights the optimizer left in ``run`` (last.pt keeps them beside their
    --ema average, which is what the checkpoint's model holds)."""
    payload = load_checkpoint(run / "last.pt")
    model, _, _ = rnnkit.load(run / "last.pt")
    state = dict(payload["model"])
    state.update(zip([name for name, _ in model.named_parameters()],
                     payload["trainer"]["train_weights"]))
    save_checkpoint(run / "trained_weights.pt", state, payload["meta"], None)
    report = rnnkit.evaluate(run / "trained_weights.pt", data=data, split="val")
    return round(report["loss"], 4)


if __name__ == "__main__":
    main(sys.argv[1:])
