"""Cost of scheduled sampling: one training step with teacher forcing, the parallel two-pass
implementation and the sequential one, measured in the same run.

    python benchmarks/bench_scheduled_sampling.py [--hidden 512 --layers 2 --batch 64 --seq 128]

Prints JSON: median seconds per step for each, and the ratios to teacher forcing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from report import emit

from rnnkit import configs
from rnnkit.models import CharLM, CharLMConfig
from rnnkit.tasks.lm import TokenObjective
from rnnkit.training.update import train_step


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eps", type=float, default=0.5, help="teacher-forcing probability")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def time_steps(model, cfg, x, y, eps: float, repeats: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective, batch = TokenObjective(cfg), {"x": x, "y": y}
    train_step(objective, model, opt, batch, None, cfg.grad_clip, eps=eps)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step(objective, model, opt, batch, None, cfg.grad_clip, eps=eps)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=args.vocab, hidden_size=args.hidden,
                                num_layers=args.layers))
    x = torch.randint(0, args.vocab, (args.batch, args.seq))
    y = torch.randint(0, args.vocab, (args.batch, args.seq))
    seconds = {}
    for name, impl, eps in (("teacher_forcing", "parallel", 1.0),
                            ("parallel", "parallel", args.eps),
                            ("sequential", "sequential", args.eps)):
        _, cfg = configs(train={"ss_impl": impl})
        seconds[name] = time_steps(model, cfg, x, y, eps, args.repeats)
    result = {"benchmark": "scheduled_sampling_step", "shape": vars(args),
              "seconds_per_step": {k: round(v, 4) for k, v in seconds.items()},
              "parallel_over_teacher_forcing": round(seconds["parallel"]
                                                     / seconds["teacher_forcing"], 3),
              "sequential_over_teacher_forcing": round(seconds["sequential"]
                                                       / seconds["teacher_forcing"], 3),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    return emit(result, args.save)


if __name__ == "__main__":
    main()
