"""Exposure bias on number-to-words: teacher forcing vs scheduled sampling at equal budget.

    python examples/exposure_bias.py --out runs/exposure_bias      # about 7 minutes on 2 cores
    python examples/exposure_bias.py --out runs/exposure_bias --save   # also keep the JSON

The task is generated (never downloaded): "4217=four thousand two hundred seventeen", one
number per line, lines mode. Three models with the same shape, seed, data and number of steps
are trained: one with teacher forcing, and two with scheduled sampling (linear decay of the
teacher-forcing probability) in its two implementations, side by side:

    parallel     two passes over the fused kernels: the tokens fed back are the model's
                 predictions from the true history (Duckworth et al. 2019)
    sequential   step by step, each token fed back predicted from the mixed history, as Bengio
                 et al. (2015) and the lecture describe it

All three then write the words for held-out numbers given only the digits and "=" (free
running, greedy), and are scored by exact match and by the error rate at each character
position; the teacher-forced error of the same positions is the reference. The cost of each is
its training seconds per step. Writes results.json and, when matplotlib is installed,
exposure_bias.png into --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import rnnkit
from rnnkit.data.synthetic import number_words_lines
from rnnkit.examples_support import provenance, pyplot
from rnnkit.fileio import save_results

RESULTS = Path(__file__).resolve().parent / "results" / "exposure_bias.json"
COLORS = {"teacher_forcing": "tab:blue", "scheduled_sampling_parallel": "tab:orange",
          "scheduled_sampling_sequential": "tab:green"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/exposure_bias")
    p.add_argument("--digits", type=int, default=4, help="numbers below 10**digits")
    p.add_argument("--lines", type=int, default=10_000, help="numbers generated (distinct)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--ss-min", type=float, default=0.5,
                   help="teacher-forcing probability reached at the last step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", action="store_true", help=f"also write {RESULTS}")
    return p.parse_args(argv)


def train_all(args, data: Path, out: Path) -> dict:
    """name -> (run folder, training seconds per step)."""
    # the <bos>, the digits and "=" are the condition: never replaced by the model's guess
    ss = {"scheduled_sampling": "linear", "ss_k": 1.0, "ss_min": args.ss_min,
          "ss_c": (1.0 - args.ss_min) / args.steps, "ss_skip": args.digits + 2}
    schedules = {"teacher_forcing": {},
                 "scheduled_sampling_parallel": {**ss, "ss_impl": "parallel"},
                 "scheduled_sampling_sequential": {**ss, "ss_impl": "sequential"}}
    runs = {}
    for name, ss in schedules.items():
        model_cfg, cfg = rnnkit.configs(
            model={"hidden_size": args.hidden, "num_layers": 1, "embed_size": 32},
            train={"data": str(data), "mode": "lines", "batch_size": 64, "seq_length": 80,
                   "val_frac": 0.1, "test_frac": 0.0, "max_steps": args.steps,
                   "eval_every": args.steps, "learning_rate": args.learning_rate, "seed": args.seed,
                   "sample_length": 80, **ss})
        t0 = time.perf_counter()
        rnnkit.train(model_cfg, cfg, out=out / name)  # one evaluation, at the end
        runs[name] = out / name, (time.perf_counter() - t0) / args.steps
    return runs


def plot(results: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, color in COLORS.items():
        e = results[name]["exposure_bias"]
        ax.plot(e["free_running"]["position_error"], color=color,
                label=f"{name.replace('_', ' ')}: free-running")
        ax.plot(e["teacher_forced"]["position_error"], color=color, linestyle=":",
                label=f"{name.replace('_', ' ')}: teacher-forced (reference)")
    ax.set_xlabel("character position after the prompt")
    ax.set_ylabel("error rate")
    ax.set_title("Number to words, held-out numbers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "numbers.txt"
    lines = number_words_lines(min(args.lines, 10 ** args.digits), args.seed, args.digits)
    data.write_text("\n".join(lines) + "\n")
    results, step_seconds = {}, {}
    for name, (run, per_step) in train_all(args, data, out).items():
        # the prompt is the digits and "="; the model writes every word itself
        results[name] = rnnkit.evaluate(run / "last.pt", split="val", free_running=True,
                                        prefix=args.digits + 1, max_cases=2000)
        step_seconds[name] = per_step
    summary = {name: {"val_loss": round(r["loss"], 4),
                      "free_running_exact_match": r["exposure_bias"]["free_running"]["exact_match"],
                      "teacher_forced_exact_match":
                          r["exposure_bias"]["teacher_forced"]["exact_match"],
                      "free_running_position_error":
                          round(r["exposure_bias"]["free_running"]["mean_position_error"], 4),
                      "teacher_forced_position_error":
                          round(r["exposure_bias"]["teacher_forced"]["mean_position_error"], 4),
                      "train_seconds_per_step": round(step_seconds[name], 4),
                      "cost_vs_teacher_forcing":
                          round(step_seconds[name] / step_seconds["teacher_forcing"], 2)}
               for name, r in results.items()}
    save_results({"args": vars(args), "summary": summary, "details": results,
                  "provenance": provenance("examples/exposure_bias.py")},
                 out / "results.json", RESULTS if args.save else None, echo=False)
    summary["plot"] = str(out / "exposure_bias.png") if plot(results, out / "exposure_bias.png") \
        else "pip install matplotlib for the plot"
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
