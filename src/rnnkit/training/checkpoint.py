"""Checkpoints: ``NAME.pt`` (state_dicts, loaded with weights_only=True) + ``NAME.json`` (meta).

The .pt file holds everything needed (the meta too), so one atomic rename makes a checkpoint
valid; the .json sidecar repeats the meta for people and tools that do not load torch.

    {"format_version": 1, "meta": {"kind" (the task's, tasks/), "config", the task's own keys
     ("vocab" (lm), "vocabs" and "tag_format" (pair tasks), "classes" (vision)), "step",
     "metrics", "world_size"},
     "model": model.state_dict(), "trainer": {optimizer, rng, carried state, ...} or absent}

"model" is always the plain module's state_dict (never a torch.compile wrapper's, whose keys
carry an ``_orig_mod.`` prefix). Under --precision fp16 "trainer" also holds "scaler", the
gradient scaler's state_dict (its scale and growth tracker), and "overflows".

``world_size`` is the number of training processes that wrote it (absent before it was
recorded: 1). A multi-process run saves from rank 0 the global carried state (every rank's
streams, in rank order, so any number of ranks can resume it) and "rng_ranks", each rank's
generator states.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from ..errors import RnnkitError
from ..fileio import atomic_write, atomic_write_json
from ..tasks import task_of_kind

FORMAT_VERSION = 1
def save_checkpoint(path: str | Path, model_state: dict, meta: dict,
                    trainer: dict | None = None) -> None:
    path = Path(path)
    payload = {"format_version": FORMAT_VERSION, "meta": meta, "model": model_state}
    if trainer is not None:
        payload["trainer"] = trainer
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))
    atomic_write_json(path.with_suffix(".json"), {"format_version": FORMAT_VERSION, **meta})


def resolve(path: str | Path) -> Path:
    """A run folder means its best.pt (lowest val loss), else its last.pt."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise RnnkitError(f"{str(p)!r} holds no checkpoint (best.pt or last.pt); "
                          "train into it first with rnnkit train --out")
    if not p.is_file():
        raise RnnkitError(f"checkpoint {str(p)!r} not found; give a run folder or a .pt file")
    return p


def export_safetensors(payload: dict, path: str | Path) -> None:
    """Weights as safetensors (no pickle at all), the meta as JSON in its header and beside it."""
    meta = {"format_version": FORMAT_VERSION, **payload["meta"]}
    tensors = {k: v.contiguous() for k, v in payload["model"].items()}
    data = safetensors.torch.save(tensors, metadata={"rnnkit": json.dumps(meta)})
    atomic_write(Path(path), lambda f: f.write(data))
    atomic_write_json(Path(path).with_suffix(".json"), meta)


def load_safetensors(p: Path, map_location) -> dict:
    with safetensors.safe_open(p, framework="pt", device="cpu") as f:
        meta = json.loads((f.metadata() or {})["rnnkit"])
        model = {k: f.get_tensor(k).to(map_location) for k in f.keys()}
    return {"format_version": meta.pop("format_version", None), "meta": meta, "model": model}


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a checkpoint (.pt, or .safetensors from ``rnnkit export``).

    A .pt file is read with ``torch.load(weights_only=True)`` and nothing else: a file that
    would need arbitrary unpickling (code execution) is refused, never retried unsafely.
    """
    p = resolve(path)
    try:
        if p.suffix == ".safetensors":
            payload = load_safetensors(p, map_location)
        else:
            payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise RnnkitError(f"checkpoint {str(p)!r} is corrupt or not an rnnkit checkpoint "
                          f"({reason}); use another checkpoint or retrain") from None
    meta = payload.get("meta") if isinstance(payload, dict) else None
    task = task_of_kind(meta.get("kind")) if isinstance(meta, dict) else None
    if task is None:
        raise RnnkitError(f"{str(p)!r} is not an rnnkit checkpoint (unknown kind)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise RnnkitError(f"{str(p)!r} has format version {payload.get('format_version')}, "
                          f"this rnnkit reads version {FORMAT_VERSION}; use a matching rnnkit")
    missing = [k for k in ("config", *task.meta_keys, "step", "metrics") if k not in meta]
    if missing or "model" not in payload:
        raise RnnkitError(f"{str(p)!r} is incomplete (missing {missing or ['model']}); "
                          "use another checkpoint or retrain")
    return payload


def model_from_checkpoint(payload: dict):
    """Rebuild the model from the saved config alone, load its weights, eval mode. Returns
    (model, vocab, task): the vocab is the task's (``Task.vocab``: a tokenizer for a language
    model, {"source", "target"} TokenVocabs for a pair task, the class names for a vision
    task)."""
    meta = payload["meta"]
    task = task_of_kind(meta["kind"])
    try:
        model_cls, config_cls = task.models[meta["config"]["train"].get("model", "rnn")]
        model = model_cls(config_cls(**meta["config"]["model"]))
        model.load_state_dict(payload["model"])
        vocab = task.vocab(meta, model)
    except (KeyError, TypeError, ValueError, RuntimeError, AssertionError) as e:
        reason = str(e).splitlines()[0][:120]
        raise RnnkitError(f"the checkpoint's config and weights do not fit together ({reason}); "
                          "use another checkpoint or retrain") from None
    return model.eval(), vocab, task
