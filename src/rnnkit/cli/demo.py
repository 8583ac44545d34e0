"""Run a demonstration of the lecture's ideas.

examples:
  rnnkit demo structured-prediction                  # the lecture's three sentences, in words
  rnnkit demo structured-prediction --tokens chars   # the same, character by character
  rnnkit demo structured-prediction --sentences my.txt --samples 200 --json
"""

from __future__ import annotations

import json

from ..api import MAX_SAMPLES
from ..demos import DEMOS
from ..errors import RnnkitError
from ..limits import check_seed


def add_arguments(p) -> None:
    p.add_argument("name", choices=sorted(DEMOS), help="which demonstration")
    p.add_argument("--sentences", metavar="FILE", default=None,
                   help="training sentences, one per line (default: the lecture's three)")
    p.add_argument("--samples", type=int, default=100, metavar="N",
                   help="samples drawn from each model (default 100)")
    p.add_argument("--tokens", choices=("words", "chars"), default="words",
                   help="the sequences' tokens: words (spaces are tokens too), as in the "
                        "lecture's example, or characters (default: words)")
    p.add_argument("--seed", type=int, default=1337, metavar="N",
                   help="random seed (default 1337)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    check_seed(args.seed)
    if not 1 <= args.samples <= MAX_SAMPLES:
        raise RnnkitError(f"--samples must be between 1 and {MAX_SAMPLES}, got {args.samples}")
    report = DEMOS[args.name](args.sentences, args.samples, args.seed, tokens=args.tokens)
    if args.json:
        print(json.dumps(report))
        return 0
    print("trained on:", *(f"  {s}" for s in report["sentences"]), sep="\n")
    for name in ("autoregressive", "independent"):
        frac = report[f"{name}_valid_fraction"]
        print(f"\n{name} sampling: {frac:.0%} of {report['samples']} samples are training "
              "sentences, e.g.")
        print(*(f"  {s}" for s in report[f"{name}_examples"]), sep="\n")
    return 0
