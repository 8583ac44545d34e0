"""Make a data set to train on: a synthetic speech corpus spoken by espeak-ng.

examples:
  rnnkit data speech --out data/speech --utterances 5000
  rnnkit data speech --out data/numbers --utterances 2000 --text numbers
  rnnkit data speech --out data/mine --utterances 1000 --text lines.txt --snr-min 0

speech writes OUT/{train,val,test}.tsv (audio_path<TAB>transcript), OUT/wav/*.wav (16-bit mono,
espeak-ng's 22050 Hz) and OUT/corpus.json, for rnnkit train --task transcribe --data OUT.
Transcripts are lowercase letters, apostrophes and spaces. Train sentences come from the first
90% of the text and val/test ones from its last 10% (where rnnkit train's default split puts
them); --val-voices and --test-voices voices are heard only in val and only in test. Each
utterance gets a random speed (130..200 words a minute), pitch (30..70) and white or pink noise
at a random SNR. Synthetic speech is far easier than real speech: use it to check that a model
and its training work, not to judge a model of real recordings. Needs espeak-ng.
"""

from __future__ import annotations

import shlex
import sys

from ..data import speech_synth
from ..limits import check_seed


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    s = sub.add_parser("speech", help="a speech-recognition corpus spoken by espeak-ng",
                       description=__doc__.split("\n\n")[2].strip())
    s.add_argument("--out", required=True, metavar="DIR",
                   help="the corpus folder to create (must not exist, or be empty)")
    s.add_argument("--utterances", type=int, default=1000, metavar="N",
                   help=f"utterances in all, 3..{speech_synth.MAX_UTTERANCES:,} (default 1000)")
    s.add_argument("--text", default="shakespeare", metavar="shakespeare|numbers|FILE",
                   help="what is said: lines of tinyshakespeare, number words (0..9999), or "
                        "the lines of a UTF-8 text file (default: shakespeare)")
    s.add_argument("--max-words", type=int, default=8, metavar="N",
                   help="longest line kept, in words; the shortest has 2 (default 8)")
    s.add_argument("--val-frac", type=float, default=0.1, metavar="F",
                   help="fraction of the utterances for val (default 0.1)")
    s.add_argument("--test-frac", type=float, default=0.1, metavar="F",
                   help="fraction of the utterances for test (default 0.1)")
    s.add_argument("--val-voices", type=int, default=6, metavar="K",
                   help="voices heard only in val (default 6)")
    s.add_argument("--test-voices", type=int, default=6, metavar="K",
                   help="voices heard only in test (default 6)")
    s.add_argument("--snr-min", type=float, default=10.0, metavar="DB",
                   help="lowest signal-to-noise ratio of the added noise (default 10)")
    s.add_argument("--snr-max", type=float, default=30.0, metavar="DB",
                   help="highest signal-to-noise ratio of the added noise (default 30)")
    s.add_argument("--seed", type=int, default=1337, metavar="N",
                   help="random seed: the same seed makes the same corpus (default 1337)")
    s.add_argument("--workers", type=int, default=2, metavar="N",
                   help="espeak-ng processes at a time (default 2)")


def run(args) -> int:
    check_seed(args.seed)
    info = speech_synth.synthesize_corpus(
        args.out, args.utterances, text=args.text, seed=args.seed, val_frac=args.val_frac,
        test_frac=args.test_frac, val_voices=args.val_voices, test_voices=args.test_voices,
        snr=(args.snr_min, args.snr_max), max_words=args.max_words, workers=args.workers,
        command=command_line(args))
    n, voices = info["utterances"], {v for vs in info["voices"].values() for v in vs}
    print(f"wrote {sum(n.values())} utterances (train {n['train']}, val {n['val']}, test "
          f"{n['test']}; {len(voices)} voices, {sum(info['hours'].values()):.1f} hours) to "
          f"{args.out}", file=sys.stderr)
    return 0


def command_line(args) -> str:
    """The command that makes this corpus again, every setting spelled out."""
    flags = ("out", "utterances", "text", "max_words", "val_frac", "test_frac", "val_voices",
             "test_voices", "snr_min", "snr_max", "seed")
    words = ["rnnkit", "data", "speech"]
    for name in flags:
        words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return shlex.join(words)
