"""Parallel-scan cells beside the LSTM: training chars/s at several sequence lengths and
sampling chars/s at batch 1 and 64, each cell sized to the LSTM's parameter count, same run.

    python benchmarks/bench_cells.py [--cells lstm gru mingru minlstm lru] \
        [--lengths 128 512 2048] [--hidden 512 --layers 2] [--save FILE]

The reference is a character LSTM (embedding 64, --layers x --hidden, vocabulary 65); every
other cell gets the hidden size (a multiple of 8) whose model has the nearest parameter count,
its block included (norms, MLP). A training step is forward, cross-entropy, backward, clip and
AdamW on random tokens, --chars characters per step: B = chars / T streams at length T, so
every length trains the same number of characters per step. Cells are measured round-robin
(slow drifts of a shared machine hit all alike), in fp32 and, where the CPU has native bf16,
under bf16 autocast. Sampling goes through ``rnnkit.sample_model`` (the path of ``rnnkit
sample``) in fp32. Prints JSON.
"""

from __future__ import annotations

import argparse
import statistics
from types import SimpleNamespace

import torch
from bench_sampling import VOCAB
from bench_sampling import rates as sampling_rates
from bench_throughput import Candidate, sync
from report import emit

from rnnkit.models import CharLM, CharLMConfig


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["lstm", "gru", "mingru", "minlstm", "lru"])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    p.add_argument("--hidden", type=int, default=512, help="the LSTM's hidden size")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--chars", type=int, default=16384, help="characters per training step")
    p.add_argument("--steps", type=int, default=2, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--length", type=int, default=1000, help="sampled characters, batch 1")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-sampling", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def build(cell: str, hidden: int, args) -> CharLM:
    return CharLM(CharLMConfig(vocab_size=len(VOCAB), cell=cell, embed_size=args.embed,
                               hidden_size=hidden, num_layers=args.layers))


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_hidden(cell: str, target: int, args) -> int:
    """The hidden size (a multiple of 8) whose model has the parameter count nearest
    ``target``."""
    sizes = range(8, 8 * 512, 8)
    low, high = 0, len(sizes) - 1
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        while low < high:
            mid = (low + high) // 2
            if parameters(build(cell, sizes[mid], args)) < target:
                low = mid + 1
            else:
                high = mid
        return min((sizes[max(low - 1, 0)], sizes[low]),
                   key=lambda h: abs(parameters(build(cell, h, args)) - target))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = (torch.cuda.is_bf16_supported() if args.device == "cuda"
            else bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    with torch.device("meta"):
        target = parameters(build("lstm", args.hidden, args))
    hidden = {c: args.hidden if c == "lstm" else matched_hidden(c, target, args)
              for c in args.cells}
    with torch.device("meta"):
        sizes = {c: parameters(build(c, hidden[c], args)) for c in args.cells}
    training = {}
    for T in args.lengths:
        shape = SimpleNamespace(batch=max(args.chars // T, 1), seq=T, steps=args.steps,
                                device=args.device)
        candidates = {}
        for cell in args.cells:
            torch.manual_seed(0)
            for precision in ["fp32"] + (["bf16"] if bf16 else []):
                model = build(cell, hidden[cell], args)
                candidates[(cell, precision)] = Candidate(model, precision == "bf16", shape)
        for _ in range(args.rounds):
            for c in candidates.values():
                c.measure()
        sync(args.device)
        chars = shape.batch * T
        rows = {f"{cell} {precision}": round(chars / statistics.median(c.times))
                for (cell, precision), c in candidates.items()}
        lstm = {p: rows.get(f"lstm {p}") for p in ("fp32", "bf16")}
        training[str(T)] = {
            "batch": shape.batch,
            "chars_per_sec": rows,
            "vs_lstm": {k: round(v / lstm[k.split()[1]], 2) for k, v in rows.items()
                        if lstm.get(k.split()[1])}}
        del candidates
    sampling = {}
    if not args.no_sampling:
        for cell in args.cells:
            torch.manual_seed(0)
            model = build(cell, hidden[cell], args).to(args.device).eval()
            sampling[cell] = sampling_rates(model, VOCAB, "fp32", args)
    return emit({
        "what": "training and sampling chars/s per cell at equal parameters",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "layers": args.layers, "embed": args.embed, "vocab": len(VOCAB),
        "chars_per_step": args.chars, "bf16_native": bf16,
        "models": {c: {"hidden": hidden[c], "parameters": sizes[c]} for c in args.cells},
        "training": training, "sampling_fp32": sampling}, args.save)


if __name__ == "__main__":
    main()
