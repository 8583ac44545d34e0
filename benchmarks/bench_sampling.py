"""Sampling speed: characters/s of rnnkit's generation against a plain nn.LSTM loop, same run.

    python benchmarks/bench_sampling.py [--hidden 512 --layers 2] [--checkpoint RUN --text FILE]

The baseline is what a user writes first: nn.Embedding -> nn.LSTM -> nn.Linear, called once per
character on a (1, 1) input, softmax and torch.multinomial. rnnkit is measured through
``rnnkit.sample_model`` (the path of ``rnnkit sample``) at each precision, for one stream and for
64 streams at once, plus the time from the call to the first generated character (the model
already loaded). With ``--checkpoint`` the trained model is used, and with ``--text`` each
precision's likelihood cost is measured too: nats/char of the single-step path over the text,
teacher-forced, against fp32. With ``--cli`` it also times ``rnnkit sample RUN --length N``
as a user runs it, from outside the process, with default flags and with the former defaults
(``--precision fp32``, one thread per core): each command is run at two lengths and the
difference taken, so that the start-up (Python, torch, loading the model) drops out; the
plain loop is timed in the same run at the thread count the default flags use (one, for a
single stream of a recurrent model) and at one per core. Prints JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from report import emit, median_seconds

from rnnkit.api import load, sample_model
from rnnkit.data.vocab import CharVocab
from rnnkit.layers.recurrent_step import int8_available
from rnnkit.models import CharLM, CharLMConfig
from rnnkit.tasks.lm import LanguageModelTask
from rnnkit.training.checkpoint import save_checkpoint

VOCAB = CharVocab([chr(c) for c in range(32, 97)])  # 65 characters, tiny-shakespeare's size


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--checkpoint", default=None, help="a trained LM run instead of random weights")
    p.add_argument("--text", default=None, help="text for the likelihood cost (needs --checkpoint)")
    p.add_argument("--text-chars", type=int, default=20_000)
    p.add_argument("--length", type=int, default=2000, help="characters per stream, batch 1")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--threads", default="1,2", help="thread counts to measure")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--cli", action="store_true",
                   help="also time the rnnkit sample command from outside the process")
    p.add_argument("--cli-lengths", type=int, nargs=2, default=[2000, 12000], metavar="N",
                   help="the two --length values of --cli")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def command_rate(checkpoint: str, flags: list[str], lengths: list[int], repeats: int) -> int:
    """chars/s of ``rnnkit sample CHECKPOINT FLAGS``: the median wall time at two lengths,
    the start-up cancelled by the difference."""
    def seconds(length: int) -> float:
        def once():
            subprocess.run([sys.executable, "-m", "rnnkit", "sample", checkpoint, "--length",
                            str(length), *flags], check=True, stdout=subprocess.DEVNULL)
        return median_seconds(once, repeats)
    short, long = lengths
    return round((long - short) / (seconds(long) - seconds(short)))


def write_checkpoint(model: CharLM, path: str) -> None:
    """``model`` (over VOCAB) as a checkpoint that ``rnnkit sample`` reads."""
    meta = {"kind": LanguageModelTask.kind, "vocab": VOCAB.to_json(), "step": 0, "metrics": {},
            "config": {"model": asdict(model.config), "train": {"model": "rnn"}}}
    save_checkpoint(path, model.state_dict(), meta)


def command_rates(model: CharLM, checkpoint: str | None, args) -> dict:
    """``--cli``: the command at its defaults and at the former ones, beside the plain loop
    at the thread counts each uses (the model saved to a temporary file if not given)."""
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            checkpoint = str(Path(tmp) / "model.pt")
            write_checkpoint(model, checkpoint)
        cores = len(os.sched_getaffinity(0))
        out = {"lengths": args.cli_lengths, "cores": cores,
               "default_flags_chars_per_sec": command_rate(checkpoint, [], args.cli_lengths,
                                                           args.repeats),
               "fp32_all_cores_chars_per_sec": command_rate(
                   checkpoint, ["--precision", "fp32", "--threads", str(cores)],
                   args.cli_lengths, args.repeats)}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        out[f"naive_{threads}_threads_chars_per_sec"] = round(args.length / 4 / median_seconds(
            lambda: naive_loop(model, args.length // 4), args.repeats))
    # the default flags run one thread for one stream (cli/sample.py)
    out["default_vs_naive_same_threads"] = round(
        out["default_flags_chars_per_sec"] / out["naive_1_threads_chars_per_sec"], 1)
    out["fp32_all_cores_vs_naive_same_threads"] = round(
        out["fp32_all_cores_chars_per_sec"] / out[f"naive_{cores}_threads_chars_per_sec"], 1)
    return out


@torch.no_grad()
def naive_loop(model: CharLM, length: int) -> None:
    """The baseline, on nn modules holding the same weights."""
    c = model.config
    device = model.head.weight.device
    lstm = torch.nn.LSTM(c.embed_size, c.hidden_size, c.num_layers, batch_first=True)
    lstm.load_state_dict(model.rnn.torch_state_dict())
    lstm.to(device)
    x, state = torch.zeros(1, 1, dtype=torch.long, device=device), None
    for _ in range(length):
        out, state = lstm(model.embed(x), state)
        probs = model.head(out[:, -1]).softmax(-1)
        x = torch.multinomial(probs, 1)


def first_char_ms(model, vocab, precision: str, repeats: int) -> float:
    """Milliseconds from the call to the first generated character reaching the callback."""
    prompt = "ROMEO:" if "R" in vocab.chars else ""
    times = []
    for seed in range(repeats + 1):
        calls = []
        t0 = time.perf_counter()
        sample_model(model, vocab, prompt, 2, 1, seed, lambda _: calls.append(time.perf_counter()),
                     precision)
        times.append((calls[1] - t0) * 1000)  # calls[0] echoes the prompt
    return statistics.median(times[1:])  # the first call warms up


def rates(model, vocab, precision: str, args) -> dict:
    def one():
        sample_model(model, vocab, "", args.length, 1, 0, precision=precision)

    def many():
        sample_model(model, vocab, "", args.length // 4, args.streams, 0, precision=precision)
    return {
        "batch1_chars_per_sec": round(args.length / median_seconds(one, args.repeats)),
        "streams_chars_per_sec": round(
            args.length // 4 * args.streams / median_seconds(many, args.repeats)),
        "first_char_ms": round(first_char_ms(model, vocab, precision, args.repeats * 3), 2),
    }


@torch.no_grad()
def nats_per_char(model, vocab, text: str, precision: str, streams: int = 16) -> float:
    """Teacher-forced loss of the single-step path over ``text``, cut into parallel streams."""
    ids = torch.as_tensor(vocab.encode(text), dtype=torch.long, device=model.head.weight.device)
    per = (len(ids) - 1) // streams
    x = ids[:per * streams].view(streams, per)
    y = ids[1:per * streams + 1].view(streams, per)
    step, state, total = model.stepper(precision), None, 0.0
    for t in range(per):
        logits, state = step(x[:, t], state)
        total += torch.nn.functional.cross_entropy(logits, y[:, t], reduction="sum").item()
    return total / (per * streams)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.checkpoint:
        model, vocab, _ = load(args.checkpoint, args.device)
    else:
        torch.manual_seed(0)
        vocab = VOCAB
        model = CharLM(CharLMConfig(vocab_size=len(vocab), hidden_size=args.hidden,
                                    num_layers=args.layers)).to(args.device).eval()
    # bf16 on a CPU without native bf16 is emulated, many times slower than fp32: not measured
    native_bf16 = args.device == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    precisions = (["fp32"] + (["bf16"] if native_bf16 else [])
                  + (["int8"] if int8_available(args.device) else []))
    result = {"model": f"{model.config.num_layers}x{model.config.hidden_size} "
                       f"{model.config.cell}, vocab {len(vocab)}",
              "torch": torch.__version__, "streams": args.streams, "by_threads": {},
              "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        naive = args.length / 4 / median_seconds(lambda: naive_loop(model, args.length // 4),
                                              args.repeats)
        row = {"naive_nn_lstm_chars_per_sec": round(naive)}
        for precision in precisions:
            row[precision] = rates(model, vocab, precision, args)
            row[precision]["batch1_vs_naive"] = round(
                row[precision]["batch1_chars_per_sec"] / naive, 1)
        result["by_threads"][str(threads)] = row
    if args.text:
        text = open(args.text, encoding="utf-8").read()[-args.text_chars:]
        base = nats_per_char(model, vocab, text, "fp32")
        result["likelihood"] = {"text_chars": len(text), "fp32_nats_per_char": round(base, 4),
                                **{f"{p}_minus_fp32": round(nats_per_char(model, vocab, text, p)
                                                            - base, 4) for p in precisions[1:]}}
        assert math.isfinite(base)
    if args.cli:
        result["command"] = command_rates(model, args.checkpoint, args)
    return emit(result, args.save)


if __name__ == "__main__":
    main()
