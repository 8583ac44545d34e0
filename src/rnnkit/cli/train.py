"""Train a model into a run folder: a character-level language model (--task lm, the default),
or a seq2seq, classifier or tagger on a TSV file of input<TAB>output lines.

examples:
  rnnkit train --preset shakespeare-5min --out runs/shakespeare
  rnnkit train --data input.txt --out runs/mine --rnn-size 512 --max-steps 5000
  rnnkit train --task seq2seq --data pairs.tsv --out runs/translate --attention additive
  rnnkit train --task classify --data labelled.tsv --out runs/cls --pool mean
  rnnkit train --task tag --data tagged.tsv --out runs/tagger --no-bidirectional
  rnnkit train --task activity --out runs/activity      # generated clips of moving digits
  rnnkit train --task frames --out runs/frames --arch convlstm --max-time 600
  rnnkit train --out runs/mine --resume                 # continue an interrupted run
  rnnkit train --out runs/mine --resume --max-steps 8000  # extend a finished one

Settings come from the dataclass defaults, then --preset or --config, then (with --resume)
the run's config.json, then the flags given here.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RnnkitError
from ..models import MODELS
from ..training.config import TrainConfig, build_configs, check_keys, preset_names, read_toml
from ..training.loop import train
from .args import add_dataclass_arguments, overrides


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder for checkpoints, metrics.jsonl and samples")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME",
                        help=f"a built-in configuration: {', '.join(preset_names())}")
    source.add_argument("--config", metavar="FILE.toml", help="a TOML file with [model] "
                        "and [train] tables, keys as the flags below with underscores")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt, exactly where it stopped")
    add_dataclass_arguments(p, {task: cls for task, (_, cls) in MODELS.items()}, "model")
    add_dataclass_arguments(p, TrainConfig, "train")


def saved_config(out: Path) -> dict:
    path = out / "config.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        check_keys(doc, str(path))
    except (ValueError, AttributeError, RnnkitError):
        raise RnnkitError(f"{path} is corrupt; fix it (or delete it and pass the run's settings "
                          "as flags), or start a new --out") from None
    return doc


def run(args) -> int:
    out = Path(args.out)
    layers = [read_toml(args.preset, args.config)] if args.preset or args.config else []
    if args.resume:
        layers.append(saved_config(out))
    model_cfg, cfg = build_configs(*layers, overrides(args))
    metrics = train(model_cfg, cfg, out, resume=args.resume)
    val = metrics.get("val_loss")
    if val is not None and "val_bpc" in metrics:
        summary = f"val loss {val:.4f} nats/char ({metrics['val_bpc']:.3f} bpc)"
    elif val is not None:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("val_"))
    else:
        summary = "done"
    print(f"step {metrics.get('step', 0)}: {summary}; run folder {out}", flush=True)
    return 0
