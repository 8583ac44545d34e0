"""Generate text from a trained language model, one token at a time.

examples:
  rnnkit sample runs/shakespeare --prime-text "ROMEO:" --length 500 --temperature 0.8
  rnnkit sample runs/shakespeare --prime-file prompt.txt --length 500   # a long prompt
  rnnkit sample runs/shakespeare/step_001000.pt   # an earlier stage (--keep-checkpoints)
  rnnkit sample runs/lines --num-samples 10          # lines mode: ten lines on stdout
  rnnkit sample runs/shakespeare --length 100000 > long.txt   # streamed as it is generated
  rnnkit sample runs/shakespeare --precision fp32 --seed 7   # the model's own arithmetic
  rnnkit sample runs/shakespeare --prime-text "ROMEO:" --length 200 --beam 8    # likeliest
"""

from __future__ import annotations

import sys

from ..api import load, require_lm, sample_model
from ..errors import RnnkitError
from ..fileio import input_file
from ..limits import check_seed, set_threads
from ..training.precision import DEVICE_HELP, DEVICES


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT",
                   help="a run folder (uses best.pt, else last.pt), a .pt or .safetensors "
                        "file, or an exported Hugging Face folder")
    prime = p.add_mutually_exclusive_group()
    prime.add_argument("--prime-text", default="", metavar="TEXT",
                       help="text to start from (printed first)")
    prime.add_argument("--prime-file", default=None, metavar="FILE",
                       help="start from the text of this UTF-8 file, as it is (printed first)")
    p.add_argument("--length", type=int, default=500, metavar="N",
                   help="tokens to generate (characters for a character model; lines mode: at "
                        "most, per line; default 500)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="F",
                   help="> 0; lower is more conservative (default: 1.0)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="sample among the k likeliest tokens (default: all)")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample among the likeliest tokens whose probability reaches p "
                        "(default: 1, off)")
    p.add_argument("--argmax", action="store_true", help="always take the likeliest token")
    p.add_argument("--num-samples", type=int, default=1, metavar="N",
                   help="independent samples (default 1); with --beam, the N best")
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam search for the likeliest continuation instead of sampling "
                        "(K hypotheses kept; default 1: sample)")
    p.add_argument("--length-penalty", type=float, default=0.0, metavar="ALPHA",
                   help="with --beam in lines mode: > 0 favours longer lines (GNMT's alpha, "
                        "0.6-1.0 usual; default 0)")
    p.add_argument("--seed", type=int, default=1337, metavar="N",
                   help="random seed (default 1337)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help=f"{DEVICE_HELP} (default: cpu)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="arithmetic of each generation step: fp32 is the model exactly; bf16 "
                        "and int8 (CPU) are faster at a small likelihood cost; auto (default): "
                        "int8 for a recurrent model on a CPU that has int8 kernels, else fp32")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads (default 0: one for a single sample of a recurrent model, "
                        "else one per core that other processes leave free)")


def run(args) -> int:
    check_seed(args.seed)
    set_threads(args.threads)
    prime = read_prime(args.prime_file) if args.prime_file is not None else args.prime_text
    model, vocab, meta = load(args.checkpoint, args.device)
    require_lm(meta, args.checkpoint)
    # one sample is written as it is generated, and not kept: memory stays flat however long
    streamed = args.num_samples == 1 and args.beam == 1
    if args.threads == 0 and streamed and model.carries_state:
        # a single stream's step is a few matrix-vector products, too small to share out:
        # more threads only wait on each other (benchmarks/README.md, sampling)
        set_threads(1)
    texts = sample_model(model, vocab, prime, args.length, args.num_samples, args.seed,
                         on_text=write if streamed else None, precision=args.precision,
                         beam=args.beam, length_penalty=args.length_penalty,
                         keep_text=not streamed, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, argmax=args.argmax)
    if streamed:
        write("\n")
    elif "<eos>" in vocab.specials:  # lines mode: one line each
        write("".join(t + "\n" for t in texts))
    else:
        write("\n\n".join(texts) + "\n")
    return 0


def read_prime(path: str) -> str:
    """--prime-file: the whole file, newlines included (nanoGPT's start="FILE:...")."""
    raw = input_file(path, "--prime-file", "prompt file").read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise RnnkitError(f"--prime-file {path} is not valid UTF-8 (bad byte at offset "
                          f"{e.start}); convert it first, e.g. iconv -f latin1 -t utf-8"
                          ) from None


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
