"""Sampling speed: characters/s of rnnkit's generation against a plain nn.LSTM loop, same run.

    python benchmarks/bench_sampling.py [--hidden 512 --layers 2] [--checkpoint RUN --text FILE]

The baseline is what a user writes first: nn.Embedding -> nn.LSTM -> nn.Linear, called once per
character on a (1, 1) input, softmax and torch.multinomial. rnnkit is measured through
``rnnkit.sample_model`` (the path of ``rnnkit sample``) at each precision, for one stream and for
64 streams at once, plus the time from the call to the first generated character (the model
already loaded). With ``--checkpoint`` the trained model is used, and with ``--text`` each
precision's likelihood cost is measured too: nats/char of the single-step path over the text,
teacher-forced, against fp32. Prints JSON.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from report import emit, median_seconds

from rnnkit.api import load, sample_model
from rnnkit.data.vocab import CharVocab
from rnnkit.layers.recurrent_step import int8_available
from rnnkit.models import CharLM, CharLMConfig

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
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


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
    precisions = ["fp32", "bf16"] + (["int8"] if int8_available(args.device) else [])
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
    return emit(result, args.save)


if __name__ == "__main__":
    main()
