"""Baseline: a plain ``nn.LSTM`` character model trained for a wall-clock budget, no rnnkit.

    python benchmarks/plain_lstm_budget.py --hidden 384 --layers 2 --bf16 --budget 270

(the built-in tinyshakespeare, read from rnnkit's package data, unless --data FILE)

The reference point for rnnkit's presets (same data split, same kind of schedule): stateful
TBPTT over B streams, AdamW (--weight-decay on every parameter), warmup then cosine over the
time budget, global-norm clipping, optional bf16 autocast. Prints one JSON object with the
val loss over the last 10% of the text.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from report import emit
from torch import nn

from rnnkit.data.shakespeare import tinyshakespeare_bytes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="text file (default: the built-in corpus)")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW's decoupled decay, on every parameter (as rnnkit's trainer)")
    p.add_argument("--budget", type=float, default=270.0, help="training seconds")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass")
    p.add_argument("--warmup", type=int, default=50, help="linear warmup steps (at least 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


class PlainLM(nn.Module):
    def __init__(self, vocab: int, args):
        super().__init__()
        self.embed = nn.Embedding(vocab, args.embed)
        self.rnn = nn.LSTM(args.embed, args.hidden, args.layers, batch_first=True)
        self.head = nn.Linear(args.hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def train(model, streams, args) -> int:
    opt = torch.optim.AdamW(model.parameters(), args.lr, betas=(0.9, 0.99),
                            weight_decay=args.weight_decay)
    B, L = streams.shape
    T, t0, step, pos, state = args.seq_length, time.time(), 0, 0, None
    while (elapsed := time.time() - t0) < args.budget:
        frac = elapsed / args.budget
        cosine = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))
        lr = args.lr * min(1, (step + 1) / args.warmup) * cosine
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + T + 1 > L:
            pos, state = 0, None
        x, y = streams[:, pos:pos + T], streams[:, pos + 1:pos + T + 1]
        pos += T
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach() for s in state)
        step += 1
    return step


@torch.no_grad()
def val_loss(model, val, streams=16, T=256) -> float:
    model.eval()
    m = (len(val) - 1) // streams
    xs, ys = val[:m * streams].view(streams, m), val[1:m * streams + 1].view(streams, m)
    total, state = 0.0, None
    for t in range(0, m, T):
        logits, state = model(xs[:, t:t + T], state)
        total += nn.functional.cross_entropy(logits.flatten(0, 1), ys[:, t:t + T].flatten(),
                                             reduction="sum").item()
    return total / (m * streams)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    text = (open(args.data, encoding="utf-8").read() if args.data
            else tinyshakespeare_bytes().decode("utf-8"))
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    data = torch.from_numpy(np.array([lut[c] for c in text], dtype=np.int64))
    n = int(0.9 * len(data))
    B = args.batch_size
    streams = data[:n][: n // B * B].view(B, -1)
    model = PlainLM(len(chars), args)
    t0 = time.time()
    steps = train(model, streams, args)
    train_s = time.time() - t0
    loss = val_loss(model, data[n:])
    result = {"benchmark": "plain_lstm_budget", "hidden": args.hidden, "layers": args.layers,
              "batch_size": B, "seq_length": args.seq_length, "lr": args.lr,
              "weight_decay": args.weight_decay, "warmup": args.warmup, "bf16": args.bf16,
              "budget_s": args.budget, "steps": steps,
              "params": sum(p.numel() for p in model.parameters()),
              "train_chars_per_sec": round(steps * B * args.seq_length / train_s, 1),
              "val_loss": round(loss, 4), "val_bpc": round(loss / math.log(2), 4),
              "wall_s": round(time.time() - t0, 1),
              "seed": args.seed, "threads": torch.get_num_threads(), "torch": torch.__version__}
    return emit(result, args.save)


if __name__ == "__main__":
    main()
