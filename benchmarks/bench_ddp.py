"""Data-parallel training throughput: training chars/s with 1 process and with N (DDP).

    python benchmarks/bench_ddp.py [--steps 40 --nproc 2 --data FILE] [--device cuda] [--save PATH]

The same char-level LSTM (2x256, embedding 64, fp32, B=64 streams in all, T=128) trains through
the CLI for a fixed number of steps, each configuration a fresh run:

    cpu:  one process with one thread; one process with a thread per core (what a single process
          gets from the whole machine); ``rnnkit train --nproc N``, one thread per rank
    cuda: one process on one GPU; ``--nproc N``, one GPU per rank (needs N GPUs)

Throughput is every rank's training characters per second, from metrics.jsonl: the median of the
records after the first (warm-up), evaluation excluded. Prints JSON, with the speedup of N ranks
over one process with the same threads (cpu) or GPUs per rank.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from report import emit


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="global batch (streams in all)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--data", default=None, help="training text (default: the built-in corpus)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def train_args(args, out: Path) -> list[str]:
    data = ["--data", args.data] if args.data else []
    return [*data, "--out", str(out), "--device", args.device, "--rnn-size", str(args.hidden),
            "--num-layers", str(args.layers), "--embed-size", "64",
            "--batch-size", str(args.batch), "--seq-length", str(args.seq),
            "--max-steps", str(args.steps), "--log-every", str(args.log_every),
            # one evaluation, at the end: its rate is measured before it starts
            "--eval-every", str(args.steps), "--eval-max-chars", "20000",
            "--sample-length", "10", "--precision", "fp32"]


def chars_per_sec(args, out: Path, nproc: int, threads: int) -> float:
    """Median training chars/s of one run (all its ranks), warm-up record excluded."""
    cmd = [sys.executable, "-m", "rnnkit", "train", *train_args(args, out)]
    cmd += ["--threads", str(threads)] if threads else []
    cmd += ["--nproc", str(nproc)] if nproc > 1 else []
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads or 1)})
    if done.returncode != 0:
        sys.exit(f"bench_ddp: training failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["chars_per_sec"] for r in records[1:])


def main(argv=None) -> dict:
    args = parse_args(argv)
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if args.device == "cpu":
        runs = {"1_rank_1_thread": (1, 1), f"1_rank_{cores}_threads": (1, cores),
                f"{args.nproc}_ranks_1_thread_each": (args.nproc, 1)}
    else:
        runs = {"1_rank_1_gpu": (1, 0), f"{args.nproc}_ranks_1_gpu_each": (args.nproc, 0)}
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (nproc, threads) in runs.items():
            rates[name] = round(chars_per_sec(args, Path(tmp) / name, nproc, threads), 1)
            print(f"{name}: {rates[name]:,.0f} chars/s", file=sys.stderr)
    one, many = list(rates.values())[0], list(rates.values())[-1]
    return emit({
        "benchmark": "ddp_training_throughput",
        "model": f"char LSTM {args.layers}x{args.hidden}, embedding 64, fp32",
        "global_batch": args.batch, "seq_length": args.seq, "steps": args.steps,
        "device": args.device, "cpu_cores": cores, "torch": torch.__version__,
        "backend": "gloo" if args.device == "cpu" else "nccl",
        "load_average_at_start": load,
        "chars_per_sec": rates,
        f"speedup_{args.nproc}_ranks_vs_1": round(many / one, 2),
    }, args.save)


if __name__ == "__main__":
    main()
