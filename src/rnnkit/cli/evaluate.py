"""Evaluate a model: loss in nats/char, bits per char and perplexity on a split of a text.

examples:
  rnnkit eval runs/shakespeare                       # the run's own val split
  rnnkit eval runs/mine --data other.txt --split all --json
"""

from __future__ import annotations

import json

from ..api import evaluate
from ..errors import RnnkitError


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="text to evaluate on (default: the run's training text)")
    p.add_argument("--split", default="val", choices=("val", "test", "all"),
                   help="part of the text, cut with the run's --val-frac/--test-frac")
    p.add_argument("--batch-size", type=int, default=None, help="parallel streams/lines")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise RnnkitError(f"--batch-size must be >= 1, got {args.batch_size}")
    r = evaluate(args.checkpoint, args.data, args.split, args.batch_size, args.device)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['split']}: loss {r['loss']:.4f} nats/char, {r['bpc']:.4f} bits/char, "
              f"perplexity {r['perplexity']:.3f} over {r['chars']:,} chars")
    return 0
