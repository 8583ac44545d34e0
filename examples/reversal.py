"""Reversing strings: seq2seq vs a synchronized tagger, on a task that needs reordering.

    python examples/reversal.py --out runs/reversal          # about 4 minutes on 2 cores

The data are generated (never downloaded): random strings over the first --alphabet letters,
lengths uniform in [--min-len, --max-len], distinct, with a seed; the first --train go to the
training files and the next --test to the test files, so no test string was trained on. The
target is the string reversed, "abcde" -> "edcba".

The output is as long as the input, so a synchronized many-to-many tagger can attempt it:
tag input position t with the character at position n-1-t. It emits output t right after
reading input t. Three models, trained for the same number of steps on the same strings, with
parameter counts matched to within a few percent (the taggers' hidden size is chosen to match
the seq2seq's count):
    seq2seq    bidirectional LSTM encoder, LSTM decoder, dot attention: reads all, then writes
    tag-uni    unidirectional LSTM tagger: at step t it has not read the input it must copy for
               the first half of the output, nor does it know the length n
    tag-bi     bidirectional LSTM tagger: sees everything at every step, but must copy a
               character from n-1-2t steps away, so it has to store and index a string
Scored on the test strings: exact match, per-character accuracy (position t of the output
against position t of the truth), and that accuracy split by whether the character to copy
lies after input t ("unread": invisible to a unidirectional tagger at step t) or not.
Chance is 1/--alphabet. Writes results.json into --out, and with --save also
examples/results/reversal.json.

Measured with the defaults and --save (1000 steps each, about 400k parameters each, 2 CPU cores
shared with other jobs, torch 2.13; 3 min 39 s in all; examples/results/reversal.json, with its
date, commit, CPU and command), on the 1000 test strings (chance 0.083):
                exact   char    unread  read    train
    seq2seq     0.999   1.000   1.000   0.999    85 s
    tag-uni     0.000   0.197   0.085   0.301    57 s
    tag-bi      0.000   0.261   0.256   0.266    73 s
The unidirectional tagger is at chance exactly where the character to copy is still unread;
where it has been read it does better than chance but, not knowing the length, cannot tell
which one. The bidirectional tagger could reverse in principle but, at this budget, it has not
learned to store and index the string (its loss was still falling slowly); the seq2seq's
attention only has to learn where to look (train loss 0.04 nats/char after 250 steps).
"""

from __future__ import annotations

import argparse
import random
import string
from pathlib import Path

import torch

import rnnkit
import rnnkit.api
from rnnkit.examples_support import provenance, train_timed
from rnnkit.fileio import save_results
from rnnkit.models import Seq2Seq, Seq2SeqConfig, SequenceTagger, TaggerConfig
from rnnkit.tasks import DecodeSettings

RESULTS = Path(__file__).resolve().parent / "results" / "reversal.json"
SPECIALS = 4  # <pad> <unk> <bos> <eos>: in every input vocabulary of the pair tasks


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/reversal")
    # data
    p.add_argument("--alphabet", type=int, default=12, help="letters used (a, b, ...), <= 26")
    p.add_argument("--min-len", type=int, default=5)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--train", type=int, default=20_000, help="training strings (val included)")
    p.add_argument("--test", type=int, default=1000, help="held-out test strings")
    # models and training: the same for all three, but the taggers' hidden size
    p.add_argument("--hidden", type=int, default=128, help="seq2seq units per layer/direction")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps for each model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    # small recurrent steps gain little from a second thread, and on a busy machine threads
    # waiting on each other slow everything down; 0 = torch's default
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--save", action="store_true", help=f"also write {RESULTS.name} to "
                   "examples/results/")
    p.add_argument("--quiet", action="store_true", help="no training log")
    return p.parse_args(argv)


# -- data ------------------------------------------------------------------------------------

def random_strings(count: int, letters: str, min_len: int, max_len: int,
                   seed: int) -> list[str]:
    """``count`` distinct random strings, in the order drawn (a pure function of the seed)."""
    possible = sum(len(letters) ** n for n in range(min_len, max_len + 1))
    if count > possible // 2:  # past that, drawing distinct strings by rejection crawls
        raise ValueError(f"{count} distinct strings asked for, only {possible} exist")
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < count:
        s = "".join(rng.choices(letters, k=rng.randint(min_len, max_len)))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def seq2seq_line(s: str) -> str:
    return f"{s}\t{s[::-1]}"


def tag_line(s: str) -> str:
    """The tagger's labels: position t is tagged with the character at n-1-t."""
    return f"{s}\t{' '.join(s[::-1])}"


def write_data(args, folder: Path) -> dict[str, Path]:
    """Train and test files for both model kinds, from one draw cut in two."""
    letters = string.ascii_lowercase[:args.alphabet]
    strings = random_strings(args.train + args.test, letters, args.min_len, args.max_len,
                             args.seed)
    parts = {"train": strings[:args.train], "test": strings[args.train:]}
    paths = {}
    for kind, line in (("seq2seq", seq2seq_line), ("tag", tag_line)):
        for split, part in parts.items():
            paths[f"{kind}_{split}"] = folder / f"{kind}_{split}.tsv"
            paths[f"{kind}_{split}"].write_text("\n".join(map(line, part)) + "\n")
    return paths


# -- models of equal size --------------------------------------------------------------------

def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_settings(args) -> dict[str, dict]:
    """Model settings of the three runs: the taggers' hidden size matches the seq2seq's
    parameter count."""
    shared = {"cell": "lstm", "embed_size": args.embed, "num_layers": args.layers}
    seq2seq = {**shared, "hidden_size": args.hidden, "bidirectional": True, "attention": "dot"}
    vocab, letters = args.alphabet + SPECIALS, args.alphabet
    target = parameters(Seq2Seq(Seq2SeqConfig(vocab_size=vocab, tgt_vocab_size=vocab,
                                              **seq2seq)))
    runs = {"seq2seq": seq2seq}
    for name, bidirectional in (("tag-uni", False), ("tag-bi", True)):
        def size(h, bi=bidirectional):
            return parameters(SequenceTagger(TaggerConfig(
                vocab_size=vocab, num_tags=letters, hidden_size=h, bidirectional=bi, **shared)))
        runs[name] = {**shared, "hidden_size": matching_hidden(size, target),
                      "bidirectional": bidirectional}
    return runs


def matching_hidden(size, target: int, lo: int = 1, hi: int = 4096) -> int:
    """The hidden size h whose ``size(h)`` (increasing in h) is closest to ``target``."""
    while hi - lo > 1:  # bisect: size(lo) < target <= size(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(size(h) - target))


def train_model(args, model: dict, data: Path, run: Path) -> float:
    """Train one run; returns the seconds it took."""
    task = "seq2seq" if "attention" in model else "tag"
    extra = {"eval_examples": 200} if task == "seq2seq" else {"tag_format": "chars"}
    model_cfg, cfg = rnnkit.configs(model=model, train={
        "task": task, "data": str(data), "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "warmup_steps": 100, "max_steps": args.steps,
        # one evaluation, at the end; the test files are the real held-out measure
        "eval_every": args.steps, "val_frac": 0.02, "test_frac": 0.0, "seed": args.seed,
        "threads": args.threads, **extra})
    return train_timed(model_cfg, cfg, run, args.quiet)[1]


# -- scoring ---------------------------------------------------------------------------------

def predict_strings(run: Path, kind: str, sources: list[str]) -> list[str]:
    """Greedy outputs as strings: a seq2seq's best hypothesis, or a tagger's labels joined."""
    preds = rnnkit.api.predict(run, sources, settings=DecodeSettings(beam=1))
    return [p[0] if kind == "seq2seq" else "".join(p) for p in preds]


def reversal_scores(sources: list[str], preds: list[str]) -> dict:
    """Exact match and per-position accuracy against the reversed sources; "unread" positions
    t are those whose character comes from input n-1-t > t (not yet read at step t)."""
    hits = {"unread": [0, 0], "read": [0, 0]}  # [correct, total]
    for src, pred in zip(sources, preds):
        n, truth = len(src), src[::-1]
        for t, ch in enumerate(truth):
            h = hits["unread" if n - 1 - t > t else "read"]
            h[0] += t < len(pred) and pred[t] == ch
            h[1] += 1
    correct = sum(h[0] for h in hits.values())
    total = sum(h[1] for h in hits.values())
    return {"exact_match": round(sum(p == s[::-1] for s, p in zip(sources, preds))
                                 / len(sources), 4),
            "char_accuracy": round(correct / total, 4),
            "char_accuracy_unread": round(hits["unread"][0] / hits["unread"][1], 4),
            "char_accuracy_read": round(hits["read"][0] / hits["read"][1], 4)}


def run_all(args, out: Path) -> dict:
    paths = write_data(args, out)
    sources = [line.split("\t")[0] for line in paths["seq2seq_test"].read_text().splitlines()]
    results = {}
    for name, model in model_settings(args).items():
        kind = "seq2seq" if name == "seq2seq" else "tag"
        seconds = train_model(args, model, paths[f"{kind}_train"], out / name)
        preds = predict_strings(out / name, kind, sources)
        results[name] = {"hidden_size": model["hidden_size"],
                         "bidirectional": model["bidirectional"],
                         "parameters": parameters(rnnkit.load(out / name)[0]),
                         "steps": args.steps, "train_seconds": round(seconds, 1),
                         **reversal_scores(sources, preds),
                         "examples": [{"source": s, "output": p}
                                      for s, p in zip(sources[:3], preds[:3])]}
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads > 0:  # for prediction too, not only for training
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(args, out)
    print(f"\nreversal, {args.test} test strings, chance {1 / args.alphabet:.3f} per character")
    for name, r in results.items():
        print(f"{name:>8}: exact {r['exact_match']:.3f}  char {r['char_accuracy']:.3f} "
              f"(unread {r['char_accuracy_unread']:.3f}, read {r['char_accuracy_read']:.3f})  "
              f"{r['parameters']:,} params, {r['train_seconds']:.0f} s")
    summary = {"args": vars(args), "chance_char_accuracy": round(1 / args.alphabet, 4),
               "results": results, "provenance": provenance("examples/reversal.py")}
    return save_results(summary, out / "results.json", RESULTS if args.save else None,
                        echo=False)


if __name__ == "__main__":
    main()
