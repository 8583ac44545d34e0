"""LSTM vs transformer at an equal budget: each preset trained, then scored on the same val text.

    python benchmarks/bench_lstm_vs_gpt.py \
        --save benchmarks/results/lstm_vs_gpt_tinyshakespeare.json
    python benchmarks/bench_lstm_vs_gpt.py --bpe   # also the transformer on BPE

(the built-in tinyshakespeare unless --data FILE names another text)

Runs bench_quality.py once per model, one after the other on the same machine: the recurrent
preset (shakespeare-5min, a 2x512 LSTM) and the transformer preset (gpt-5min), each about five
minutes here, evaluation included; --mingru adds the parallel-scan preset (mingru-5min), and
--plain a plain ``nn.LSTM`` script of the LSTM preset's shape and recipe, no rnnkit code
(plain_lstm_budget.py, its clock-driven cosine over the same training seconds). Prints one
JSON object with every val loss, in bits per character as well, so a run on other tokens
(--bpe) compares with the character models.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import bench_quality
import plain_lstm_budget
from report import emit

import rnnkit

KEPT = ("preset", "val_loss", "val_bpc", "val_chars", "val_tokens", "steps", "params",
        "train_chars_per_sec", "wall_s", "train_wall_s", "peak_rss_mb", "bf16", "threads")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="text file (default: the built-in corpus)")
    p.add_argument("--val-frac", default="0.1")
    p.add_argument("--budget", default="300", help="seconds for each model's whole job")
    p.add_argument("--bpe", action="store_true", help="also the transformer on BPE tokens")
    p.add_argument("--mingru", action="store_true", help="also the minGRU preset")
    p.add_argument("--plain", action="store_true",
                   help="also a plain nn.LSTM script (built-in corpus only)")
    p.add_argument("--mingru-preset", default="mingru-5min")
    p.add_argument("--lstm-preset", default="shakespeare-5min")
    p.add_argument("--gpt-preset", default="gpt-5min")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="settings for every run, e.g. train.max_steps=100 (a quick check)")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    common = ["--val-frac", args.val_frac, "--test-frac", "0", "--budget", args.budget]
    common += ["--data", args.data] if args.data else []
    runs, plan = {}, {"lstm": (args.lstm_preset, []), "gpt": (args.gpt_preset, [])}
    if args.bpe:
        plan["gpt_bpe"] = (args.gpt_preset, ['train.tokenizer="bpe"'])
    if args.mingru:
        plan["mingru"] = (args.mingru_preset, [])
    for name, (preset, extra) in plan.items():
        flags = ["--preset", preset, *common, "--set", *args.set, *extra]
        with contextlib.redirect_stdout(sys.stderr):  # stdout: this script's one JSON object
            r = bench_quality.main(flags)
        runs[name] = {k: r[k] for k in KEPT}
    if args.plain:
        runs["plain_lstm"] = plain_lstm(runs["lstm"], float(args.budget), args.data)
    best = min(runs, key=lambda k: runs[k]["val_bpc"])
    result = {"benchmark": "lstm_vs_gpt", "data": args.data or "corpus:tinyshakespeare",
              "budget_s": float(args.budget), "runs": runs, "best_bpc": best,
              "torch": r["torch"], "cpu": r["cpu"]}
    return emit(result, args.save)


def plain_lstm(lstm: dict, budget: float, data: str | None) -> dict:
    """The plain script with the LSTM preset's shape and recipe, trained for the seconds the
    preset's own training took (its whole job less the final scoring: the same clock)."""
    if data is not None:
        raise SystemExit("--plain trains on the built-in corpus only; drop --data")
    seconds = min(lstm["train_wall_s"], budget)
    model, train = rnnkit.configs(preset=lstm["preset"])
    flags = ["--hidden", str(model.hidden_size), "--layers", str(model.num_layers),
             "--embed", str(model.embed_size), "--batch-size", str(train.batch_size),
             "--seq-length", str(train.seq_length), "--lr", f"{train.learning_rate:g}",
             "--weight-decay", f"{train.weight_decay:g}", "--warmup", str(train.warmup_steps),
             "--budget", f"{seconds:.1f}"]
    with contextlib.redirect_stdout(sys.stderr):
        r = plain_lstm_budget.main(flags + (["--bf16"] if lstm["bf16"] else []))
    return {"preset": f"plain nn.LSTM {model.num_layers}x{model.hidden_size} "
                      f"(plain_lstm_budget.py, {train.batch_size} x {train.seq_length}, "
                      f"warmup {train.warmup_steps})",
            **{k: r[k] for k in ("val_loss", "val_bpc", "steps", "params", "weight_decay", "warmup",
                                 "train_chars_per_sec", "wall_s", "bf16", "threads")}}


if __name__ == "__main__":
    main(sys.argv[1:])
