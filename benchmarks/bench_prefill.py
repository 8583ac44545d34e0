"""Reading a prompt into a transformer's KV cache: one pass against token by token, same run.

    python benchmarks/bench_prefill.py [--lengths 50,500] [--save results/prefill_gpt.json]

The model has the shape of the gpt-5min preset (4 layers x 128, block 128; random weights:
speed does not depend on them). "one_pass" is ``decoding.read_prompt`` (the stepper's
``prefill``), "token_by_token" feeds the same prompt through the same stepper one token per
call, as sampling did before; past the block size both rebuild the cache the same way.
Prints JSON: milliseconds per prompt (median of --repeats) and their ratio.
"""

from __future__ import annotations

import argparse

import torch
from report import emit, median_seconds

from rnnkit.decoding import read_prompt
from rnnkit.models.gpt import GPT, GPTConfig


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="50,500", help="prompt lengths in tokens")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def token_by_token(step, tokens: torch.Tensor):
    state = None
    for token in tokens.unbind(dim=1):
        logits, state = step(token, state)
    return logits, state


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128)).eval()
    step = model.stepper()
    rows = {}
    for length in [int(n) for n in args.lengths.split(",")]:
        prompt = torch.randint(0, 65, (1, length))
        one = median_seconds(lambda: read_prompt(model, step, prompt), args.repeats)
        each = median_seconds(lambda: token_by_token(step, prompt), args.repeats)
        rows[str(length)] = {"one_pass_ms": round(one * 1000, 2),
                             "token_by_token_ms": round(each * 1000, 1),
                             "speedup": round(each / one, 1)}
    return emit({"model": "GPT 4x128, block 128 (gpt-5min shape)", "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "prompt_tokens": rows}, args.save)


if __name__ == "__main__":
    main()
