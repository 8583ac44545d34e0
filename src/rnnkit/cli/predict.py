"""Predict with a seq2seq, classifier, tagger, image or video model.

Text models write one output line per input line; image and video models write activity
labels, captions, or forecast frames as PNG and GIF.

examples:
  rnnkit predict runs/translate --input sources.txt               # greedy decoding
  rnnkit predict runs/translate --input sources.txt --beam 5 --n-best 3 --length-penalty 0.6
  rnnkit predict runs/translate --input sources.txt --temperature 0.8 --top-p 0.9
  rnnkit predict runs/sentiment --input reviews.txt --output labels.txt
  rnnkit predict runs/frames --output predictions/        # 8 generated test sequences
  rnnkit predict runs/captions --input images.npz --beam 3
  rnnkit predict runs/speech --input wavs.txt --beam 8 --lm runs/shakespeare
A line of the input that holds a tab (a TSV with answers) is read up to its first tab.
Seq2seq n-best hypotheses are written on one line, separated by tabs; tags by spaces.
Speech models read a list of audio files, one per line, relative to the list's folder
(or a .npz of features), and write one transcript per line.
Vision models read a .npz file (the arrays of their --data format) or, without --input,
generate --count test examples; frames are written into the --output folder as
strip_NNN.png (input | truth | prediction) and sequence_NNN.gif, plus predictions.npz.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..api import load, load_lm
from ..decoding import SamplingConfig, check_beam_width, check_length_penalty
from ..errors import RnnkitError
from ..fileio import atomic_write_bytes
from ..limits import check_seed, set_threads
from ..tasks import DecodeSettings, PredictRequest, task_of_kind
from ..training.config import TrainConfig
from ..training.precision import DEVICE_HELP, DEVICES
from .evaluate import add_lm_arguments, check_fusion

# Decoding a row runs until <eos> or --max-length: a model that never says <eos> would run
# (and hold its output) as long as asked. Outputs are a sentence or a caption, far shorter.
MAX_OUTPUT_LENGTH = 10_000
# Each generated vision example is a clip held in memory (20 x 64 x 64 frames: 330 kB) and
# written to disk as a PNG strip and a GIF
MAX_COUNT = 1000


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="one input per line (- for stdin; speech: audio file paths); a .npz "
                        "file for vision models")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="write the predictions here (default: stdout); a folder for frames")
    p.add_argument("--count", type=int, default=8,
                   help="vision models without --input: generated test examples (default 8)")
    p.add_argument("--batch-size", type=int, default=64, help="inputs per batch (default 64)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads (default 0: one per core that other processes leave free)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help=f"{DEVICE_HELP} (default: cpu)")
    s = p.add_argument_group("seq2seq decoding (default: greedy)")
    s.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy)")
    s.add_argument("--n-best", type=int, default=1,
                   help="hypotheses per input (<= --beam; default 1)")
    s.add_argument("--length-penalty", type=float, default=0.0,
                   help="GNMT alpha: longer outputs score higher as it grows (default 0)")
    s.add_argument("--max-length", type=int, default=None,
                   help="longest output (default: twice the longest training target + 10)")
    s.add_argument("--temperature", type=float, default=None,
                   help="sample instead of searching, at this temperature (default: search)")
    s.add_argument("--top-k", type=int, default=None,
                   help="sample among the k likeliest (default: all)")
    s.add_argument("--top-p", type=float, default=None,
                   help="nucleus sampling threshold (default: 1, off)")
    s.add_argument("--seed", type=int, default=1337, help="random seed for sampling (default 1337)")
    add_lm_arguments(p)


def settings_from(args) -> DecodeSettings:
    wants_sampling = any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    temperature = 1.0 if args.temperature is None else args.temperature
    sampling = SamplingConfig(temperature, args.top_k, args.top_p) if wants_sampling else None
    return DecodeSettings(args.beam, args.n_best, args.length_penalty,
                          args.max_length, sampling, args.seed, None, args.lm_weight,
                          args.word_bonus)


def run(args) -> int:
    check_seed(args.seed)
    check_fusion(args.lm_weight, args.word_bonus)
    settings = settings_from(args)  # bad flags are refused before the model loads
    check_limits(args)
    set_threads(args.threads)
    model, vocab, meta = load(args.checkpoint, args.device)
    task = task_of_kind(meta["kind"])
    if args.lm is not None:
        settings.lm = load_lm(args.lm, task, args.device)
    if task.predicts_files and not args.output:
        raise RnnkitError(f"{task.name} predictions are images: give --output FOLDER")
    request = PredictRequest(args.input, args.count, args.batch_size, settings)
    preds = task.predict(model, vocab, meta, TrainConfig(**meta["config"]["train"]), request)
    if task.predicts_files:
        preds.write(Path(args.output))
        print(f"wrote {len(preds)} forecasts to {args.output}", file=sys.stderr)
        return 0
    write_lines(preds, args.output)
    return 0


def check_limits(args) -> None:
    check_beam_width(args.beam)
    check_length_penalty(args.length_penalty)
    if args.max_length is not None and args.max_length > MAX_OUTPUT_LENGTH:
        raise RnnkitError(f"--max-length must be between 1 and {MAX_OUTPUT_LENGTH} tokens, got "
                          f"{args.max_length}")
    if not 1 <= args.count <= MAX_COUNT:
        raise RnnkitError(f"--count must be between 1 and {MAX_COUNT} (generated examples), "
                          f"got {args.count}")


def write_lines(lines: list[str], output: str | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if output:
        atomic_write_bytes(output, text.encode())
    else:
        sys.stdout.write(text)
