"""Evaluate a model on held-out data.

A language model's loss (nats per token, bits per character, perplexity) on a split of a
text, or a pair or vision task's metrics on its data.

examples:
  rnnkit eval runs/shakespeare                       # the run's own val split
  rnnkit eval runs/mine --data other.txt --split all --json
  rnnkit eval runs/translate --data test.tsv --json  # seq2seq: exact_match, cer, bleu
  rnnkit eval runs/speech --beam 8 --lm runs/shakespeare --lm-weight 0.5 --word-bonus 1
"""

from __future__ import annotations

import json
import math

from ..api import evaluate
from ..decoding import check_beam_width
from ..errors import RnnkitError
from ..limits import set_threads
from ..training.config import check_encoding
from ..training.precision import DEVICE_HELP, DEVICES


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="text (or TSV file) to evaluate on (default: the run's training data)")
    p.add_argument("--encoding", default=None, metavar="CODEC",
                   help="the --data file's character encoding, such as latin-1 or cp1252 "
                        "(default: the run's --encoding, utf-8 unless it was trained with one)")
    p.add_argument("--split", default=None, choices=("val", "test", "all"),
                   help="part of the data, cut with the run's --val-frac/--test-frac (default: "
                        "val for text tasks, test for vision and speech; all of another "
                        "--data file than the run's, for a pair, vision or speech task)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="parallel streams or lines per batch (default: the run's, at most 16 "
                        "streams)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help=f"{DEVICE_HELP} (default: cpu)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads (default 0: one per core that other processes leave free)")
    p.add_argument("--json", action="store_true",
                   help="print one strict JSON object; a metric that is not a finite number "
                        "(NaN, inf) is written as null")
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="seq2seq, captions and speech: decode with this beam width (default 1: "
                        "greedy)")
    add_lm_arguments(p)
    free = p.add_argument_group("exposure bias")
    free.add_argument("--free-running", action="store_true",
                      help="also score greedy continuations that read the model's own outputs, "
                           "beside the teacher-forced predictions of the same positions")
    free.add_argument("--prefix", type=int, default=10, metavar="N",
                      help="true tokens given before each continuation (default 10)")
    free.add_argument("--continuation", type=int, default=50, metavar="N",
                      help="stream mode: tokens to continue (default 50)")
    free.add_argument("--max-cases", type=int, default=1000, metavar="N",
                      help="held-out lines or windows to score (default 1000)")


def run(args) -> int:
    if args.batch_size is not None and args.batch_size < 1 or args.beam < 1:
        raise RnnkitError(f"--batch-size and --beam must be >= 1, got {args.batch_size} and "
                          f"{args.beam}")
    check_beam_width(args.beam)
    check_fusion(args.lm_weight, args.word_bonus)
    set_threads(args.threads)
    if args.encoding is not None:
        try:
            check_encoding(args.encoding)
        except ValueError as e:
            raise RnnkitError(f"--{e}") from None
    r = evaluate(args.checkpoint, args.data, args.split, args.batch_size, args.device,
                 args.free_running, args.prefix, args.continuation, args.max_cases, args.beam,
                 args.encoding, args.lm, args.lm_weight, args.word_bonus)
    if args.json:
        print(json.dumps(finite_or_null(r), allow_nan=False))
        return 0
    if "task" in r:
        print_pair_report(r)
        return 0
    if r["tokens"] == r["chars"]:
        print(f"{r['split']}: loss {r['loss']:.4f} nats/char, {r['bpc']:.4f} bits/char, "
              f"perplexity {r['perplexity']:.3f} over {r['chars']:,} chars")
    else:
        print(f"{r['split']}: loss {r['loss']:.4f} nats/token, {r['bpc']:.4f} bits/char, "
              f"perplexity {r['perplexity']:.3f} per token over {r['tokens']:,} tokens "
              f"({r['chars']:,} chars)")
    if "exposure_bias" in r:
        e = r["exposure_bias"]
        print(f"continuations of {e['cases']} cases after {e['prefix']} true tokens:")
        for name in ("teacher_forced", "free_running"):
            s = e[name]
            print(f"  {name.replace('_', '-'):15s} exact match {s['exact_match']:.3f}, "
                  f"error per position {s['mean_position_error']:.3f}")
    return 0


def add_lm_arguments(p) -> None:
    s = p.add_argument_group("speech decoding (transcribe)")
    s.add_argument("--lm", default=None, metavar="RUN_DIR|CHECKPOINT",
                   help="fuse this character language model (trained by rnnkit train) into "
                        "the beam search (shallow fusion)")
    s.add_argument("--lm-weight", type=float, default=0.5, metavar="A",
                   help="the language model's weight in the score (default 0.5)")
    s.add_argument("--word-bonus", type=float, default=0.0, metavar="B",
                   help="score added per word, against the language model's taste for short "
                        "texts (default 0)")


def check_fusion(lm_weight: float, word_bonus: float) -> None:
    if not (math.isfinite(lm_weight) and math.isfinite(word_bonus)) or lm_weight < 0:
        raise RnnkitError(f"--lm-weight must be a number >= 0 and --word-bonus a finite number, "
                          f"got {lm_weight} and {word_bonus}")


def finite_or_null(x):
    """``x`` with every NaN and inf as None: JSON has no such numbers (json.dumps would write
    a bare NaN, which strict parsers refuse)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_null(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_null(v) for v in x]
    return x


def print_pair_report(r: dict) -> None:
    scores = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if isinstance(v, float))
    print(f"{r['task']}, {r['split']} ({r['examples']:,} examples): {scores}")
    if "confusion" in r:
        width = max(len(x) for x in r["labels"]) + 1
        print("confusion (rows: truth, columns: predicted):")
        width = max(width, *(len(str(n)) + 1 for row in r["confusion"] for n in row))
        print(" " * width + "".join(f"{x:>{width}}" for x in r["labels"]))
        for label, row in zip(r["labels"], r["confusion"]):
            print(f"{label:>{width}}" + "".join(f"{n:>{width}}" for n in row))
