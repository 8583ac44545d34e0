"""Plot a run's loss curve and show its samples over training (loss.png, samples.html/.md).

Writes the train/val loss curve loss.png and a page of the sample taken at each evaluation,
with its step and val loss, oldest first, so you can read the text improve: samples.html
(self-contained) and samples.md. Files go into RUN_DIR unless --out says otherwise.

examples:
  rnnkit plot runs/shakespeare                      # runs/shakespeare/loss.png, samples.*
  rnnkit plot runs/shakespeare --out report --log-y --max-chars 2000

Works during training too: run it again to refresh the files (each is replaced whole). The
loss is in nats per token. Needs matplotlib: pip install 'rnnkit[plot]'.
"""

from __future__ import annotations

from ..plots import plot_run


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by rnnkit train")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the folder to write into (default: RUN_DIR; made if missing)")
    p.add_argument("--max-chars", type=int, default=600, metavar="N",
                   help="show at most N characters of each sample (default 600)")
    p.add_argument("--log-y", action="store_true", help="a log-scale loss axis")


def run(args) -> int:
    paths = plot_run(args.run_dir, args.out, max_chars=args.max_chars, log_y=args.log_y)
    for path in paths:
        print(path)
    return 0
