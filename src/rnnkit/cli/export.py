"""Export a model's weights to safetensors (plus its JSON meta), for loading without pickle.

examples:
  rnnkit export runs/shakespeare --out shakespeare.safetensors
  rnnkit sample shakespeare.safetensors --prime-text "ROMEO:"
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RnnkitError
from ..training.checkpoint import export_safetensors, load_checkpoint


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--out", required=True, metavar="FILE.safetensors",
                   help="the weights; FILE.json beside it gets the meta")
    p.add_argument("--force", action="store_true", help="replace an existing file")


def run(args) -> int:
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise RnnkitError(f"--out must end in .safetensors, got {args.out!r}")
    taken = [str(p) for p in (out, out.with_suffix(".json")) if p.exists()]
    if taken and not args.force:
        raise RnnkitError(f"{' and '.join(taken)} exist(s); pass --force to replace, or choose "
                          "another --out")
    export_safetensors(load_checkpoint(args.checkpoint), out)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
