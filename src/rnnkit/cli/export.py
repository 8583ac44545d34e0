"""Export a model as safetensors, a Hugging Face folder or an ONNX graph.

examples:
  rnnkit export runs/shakespeare --out shakespeare.safetensors
  rnnkit sample shakespeare.safetensors --prime-text "ROMEO:"
  rnnkit export runs/gpt --format hf --out gpt-hf     # a GPT-2 folder for a --model gpt run
  rnnkit sample gpt-hf --prime-text "ROMEO:"
  rnnkit export runs/shakespeare --format onnx --out shakespeare.onnx
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RnnkitError
from ..training.checkpoint import export_safetensors, is_hf_folder, load_checkpoint
from ..training.hf_export import EXPORT_NAMES, export_hf

FORMATS = ("safetensors", "hf", "onnx")
SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx"}


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--format", default="safetensors", choices=FORMATS,
                   help="safetensors: one file of weights, FILE.json beside it gets the meta; "
                        "hf: a Hugging Face folder (config.json, model.safetensors, the "
                        "tokenizer, README.md; a GPT over byte-level BPE is a GPT-2 that "
                        "transformers loads); onnx: an ONNX graph (default: safetensors)")
    p.add_argument("--out", required=True, metavar="FILE|DIR",
                   help="FILE.safetensors, a folder (--format hf) or FILE.onnx")
    p.add_argument("--force", action="store_true", help="replace an existing file or folder")


def run(args) -> int:
    out = Path(args.out)
    if not out.absolute().parent.is_dir():  # checked before any folder is made
        raise RnnkitError(f"the folder of --out {args.out!r} does not exist; create it first")
    if args.format == "hf":
        check_folder(out, args.force)
        names = export_hf(load_checkpoint(args.checkpoint), out)
        print(f"wrote {out}/ ({', '.join(names)})")
        return 0
    if out.suffix != SUFFIXES[args.format]:
        raise RnnkitError(f"--out must end in {SUFFIXES[args.format]} for --format "
                          f"{args.format}, got {args.out!r}")
    check_free([out, out.with_suffix(".json")], args.force)  # both write FILE.json beside
    if args.format == "onnx":
        from ..onnx_export import export_onnx  # torch.onnx is slow to import: only when asked

        export_onnx(load_checkpoint(args.checkpoint), out)
    else:
        export_safetensors(load_checkpoint(args.checkpoint), out)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def check_free(paths: list[Path], force: bool) -> None:
    taken = [str(p) for p in paths if p.exists()]
    if taken and not force:
        raise RnnkitError(f"{' and '.join(taken)} exist(s); pass --force to replace, or choose "
                          "another --out")


def check_folder(out: Path, force: bool) -> None:
    """--out of --format hf: a new or empty folder, or with --force an earlier export (never
    a run folder or any other folder that --force would delete)."""
    if out.exists() and not out.is_dir():
        raise RnnkitError(f"--out {str(out)!r} is a file; --format hf writes a folder: choose "
                          "another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise RnnkitError(f"--out {str(out)!r} is a folder that is not empty; pass --force to "
                          "replace it, or choose another --out")
    others = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_NAMES)
    if not is_hf_folder(out) or others:  # a run folder, a download, a user's own files
        held = f" ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
        raise RnnkitError(f"--out {str(out)!r} holds something other than an exported "
                          f"model{held}; --force replaces only an earlier export: choose "
                          "another --out")
