"""Training throughput: chars/s and effective GFLOP/s of a char LSTM against the machine's GEMM
rate and a plain nn.LSTM model of the same shape, all in the same run.

    python benchmarks/bench_throughput.py [--hidden 512 --layers 2 --batch 64 --seq 128]

One training step = forward, cross-entropy, backward, global-norm clip, AdamW, on random tokens
(the arithmetic does not depend on the text). FLOPs counted per character: each layer's four
gate products 2 * 4H * (D + H) and the head's 2 * H * V forward, times 3 for forward plus
backward (the usual 1 + 2 rule). The GEMM rate is the median of 2048^3 matrix products in fp32
(and bf16 where the CPU has native bf16), the practical compute limit of the machine.
Candidates are measured round-robin, so slow drifts of a shared machine hit all of them alike.
Prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from report import emit

from rnnkit.models import CharLM, CharLMConfig

VOCAB = 65


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--gemm-size", type=int, default=2048)
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def gemm_gflops(dtype: torch.dtype, n: int, device: str, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


class PlainLSTM(torch.nn.Module):
    """What a user writes with torch alone: Embedding -> nn.LSTM -> Linear."""

    def __init__(self, args):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, args.embed)
        self.rnn = torch.nn.LSTM(args.embed, args.hidden, args.layers, batch_first=True)
        self.head = torch.nn.Linear(args.hidden, VOCAB)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x))
        return self.head(out), None


def rnnkit_model(args):
    return CharLM(CharLMConfig(vocab_size=VOCAB, embed_size=args.embed, hidden_size=args.hidden,
                               num_layers=args.layers))


class Candidate:
    """A model, its optimizer and a precision: ``seconds()`` times ``steps`` training steps."""

    def __init__(self, model, bf16: bool, args):
        self.model, self.bf16, self.args = model.to(args.device), bf16, args
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, VOCAB, (args.batch, args.seq), generator=g).to(args.device)
        self.y = torch.randint(0, VOCAB, (args.batch, args.seq), generator=g).to(args.device)
        self.times: list[float] = []
        self.step()  # warm-up: kernels are chosen and weights laid out on the first call

    def step(self) -> None:
        autocast = (torch.autocast(self.args.device, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            logits, _ = self.model(self.x)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), self.y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

    def measure(self) -> None:
        sync(self.args.device)
        t0 = time.perf_counter()
        for _ in range(self.args.steps):
            self.step()
        sync(self.args.device)
        self.times.append((time.perf_counter() - t0) / self.args.steps)


def flops_per_char(args) -> float:
    H = args.hidden
    forward = 2 * H * VOCAB
    for k in range(args.layers):
        forward += 2 * 4 * H * ((args.embed if k == 0 else H) + H)
    return 3 * forward


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 rate means fp32 arithmetic
    else:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    gemm = {"fp32": gemm_gflops(torch.float32, args.gemm_size, args.device)}
    if bf16:
        gemm["bf16"] = gemm_gflops(torch.bfloat16, args.gemm_size, args.device)
    torch.manual_seed(0)
    candidates = {"plain_nn_lstm_fp32": Candidate(PlainLSTM(args), False, args),
                  "rnnkit_fp32": Candidate(rnnkit_model(args), False, args)}
    if bf16:
        candidates["plain_nn_lstm_bf16"] = Candidate(PlainLSTM(args), True, args)
        candidates["rnnkit_bf16"] = Candidate(rnnkit_model(args), True, args)
    for _ in range(args.rounds):
        for c in candidates.values():
            c.measure()
    chars, fpc = args.batch * args.seq, flops_per_char(args)
    rows = {}
    for name, c in candidates.items():
        rate = chars / statistics.median(c.times)
        gflops = rate * fpc / 1e9
        rows[name] = {"chars_per_sec": round(rate), "effective_gflops": round(gflops, 1),
                      "of_fp32_gemm": round(gflops / gemm["fp32"], 3)}
    plain = rows["plain_nn_lstm_fp32"]["chars_per_sec"]
    for row in rows.values():
        row["vs_plain_fp32"] = round(row["chars_per_sec"] / plain, 2)
    return emit({
        "model": f"{args.layers}x{args.hidden} LSTM, embed {args.embed}, vocab {VOCAB}",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "batch": args.batch, "seq_length": args.seq, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "flops_per_char": fpc,
        "gemm_gflops": {k: round(v, 1) for k, v in gemm.items()}, "training": rows,
    }, args.save)


if __name__ == "__main__":
    main()
