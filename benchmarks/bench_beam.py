"""Beam search throughput: sequences/s at beam 1, 4 and 8 against greedy decoding, same run.

    python benchmarks/bench_beam.py [--train-steps 300 --batch 64 --sequences 512]

A seq2seq model (bidirectional LSTM encoder, attention) is first trained briefly on digits ->
English number words (generated), so that outputs have realistic lengths and stop at <eos>;
then the same held-out sources are decoded greedily and with beam search, batched over
sequences. Prints JSON: sequences/s for each, and each beam's cost per sequence relative to
greedy (the target: beam 4 <= 3x greedy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from report import emit, median_seconds

import rnnkit
from rnnkit.api import load
from rnnkit.data.pairs import BOS, EOS, read_lines
from rnnkit.data.synthetic import number_words_lines
from rnnkit.decoding import beam_search, greedy_decode
from rnnkit.tasks import TASKS
from rnnkit.tasks.base import slices
from rnnkit.tasks.pairs import decoder_step


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=64, help="sequences decoded together")
    p.add_argument("--sequences", type=int, default=512, help="held-out sources decoded")
    p.add_argument("--beams", default="1,4,8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def write_pairs(path: Path, count: int, seed: int) -> Path:
    lines = number_words_lines(count, seed)
    path.write_text("".join(line.replace("=", "\t", 1) + "\n" for line in lines))
    return path


def train_model(args, root: Path) -> Path:
    data = write_pairs(root / "train.tsv", 20_000, seed=0)
    model_cfg, cfg = rnnkit.configs(
        model={"hidden_size": args.hidden, "num_layers": 1, "embed_size": 32,
               "attention": "dot"},
        train={"task": "seq2seq", "data": str(data), "max_steps": args.train_steps,
               "eval_every": args.train_steps, "batch_size": 64, "eval_examples": 200})
    final = rnnkit.train(model_cfg, cfg, out=root / "run", log=lambda m: None)
    print(f"trained: val exact match {final['val_exact_match']:.3f}", file=sys.stderr)
    return root / "run"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = train_model(args, Path(tmp))
        model, vocabs, meta = load(run)
        test = write_pairs(Path(tmp) / "test.tsv", args.sequences, seed=1)
        examples, _ = TASKS["seq2seq"].parse(read_lines(test))
        timings, lengths = {}, {}
        # 0: the greedy loop as rnnkit predict runs it; -1: always through the model's
        # sequence kernel, one call per token
        beams = [-1, 0] + [int(b) for b in args.beams.split(",")]
        for beam in beams:
            name = {-1: "greedy_kernel_step", 0: "greedy"}.get(beam, f"beam_{beam}")

            def decode(beam=beam):
                return decode_all(model, vocabs, examples, args.batch, beam, meta["max_length"])
            timings[name] = median_seconds(decode, args.repeats)
            lengths[name] = statistics.mean(len(row) for row in decode())
    greedy = timings["greedy"]
    return emit({
        "model": f"seq2seq 1x{args.hidden} biLSTM encoder, dot attention",
        "batch": args.batch, "sequences": args.sequences, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "sequences_per_sec": {k: round(args.sequences / v, 1) for k, v in timings.items()},
        "cost_per_sequence_vs_greedy": {k: round(v / greedy, 2) for k, v in timings.items()},
        "mean_output_chars": {k: round(v, 1) for k, v in lengths.items()},
    }, args.save)


@torch.no_grad()
def decode_all(model, vocabs, examples, batch: int, beam: int, max_length: int) -> list:
    """Token ids of every example's best output: greedy (beam 0; -1 through model.step, the
    sequence kernel) or beam search (beam >= 1; beam 1 gives greedy's outputs through the
    beam-search code)."""
    target = vocabs["target"]
    bos, eos, out = target.id_of(BOS), target.id_of(EOS), []
    for part in (examples[s] for s in slices(len(examples), batch)):
        b = TASKS["seq2seq"].collate(part, vocabs)
        state = model.encode(b["src"], b["src_len"])
        step = model.step if beam < 0 else decoder_step(model, len(part))
        if beam <= 0:
            out += greedy_decode(step, state, len(part), bos, eos, max_length)
        else:
            found = beam_search(step, model.reorder_state, state, len(part), bos, eos, beam,
                                max_length)
            out += [hyps[0][0] for hyps in found]
    return out


if __name__ == "__main__":
    main()
