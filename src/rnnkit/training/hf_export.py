"""Hugging Face folders out: ``rnnkit export --format hf``.

A GPT whose vocabulary is a byte-level BPE is written as a real GPT-2 (model_type gpt2,
GPT-2's weight names, tokenizer.json: transformers loads it, and config.json's "rnnkit" key
keeps the run's meta); any other model as model_type rnnkit, whose model.safetensors is
``export_safetensors``'s file (the meta in its header: what checkpoint.py reads back). Each
folder has a README.md model card.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import safetensors.torch

from ..data import tokenizers
from ..fileio import atomic_write_json
from ..models import hf_gpt2
from ..models.gpt import GPTConfig
from ..tasks import task_of_kind
from .checkpoint import FORMAT_VERSION, HF_WEIGHTS, RNNKIT_TYPE, safetensors_bytes


def export_hf(payload: dict, out: Path) -> list[str]:
    """Write the payload as a Hugging Face folder ``out`` (replacing it if there: the caller
    asks first). Everything is written into a temp folder beside it, then renamed into place,
    so a failure leaves no partial folder. Returns the names of the files written."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = write_hf_files(payload, tmp, out.name)
        replace_folder(tmp, out)
    except OSError as e:  # named as the folder asked for, not the temp folder or no file
        shutil.rmtree(tmp, ignore_errors=True)
        raise type(e)(e.errno, e.strerror, str(out)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


def replace_folder(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed once the
    new one is in place (put back if the rename fails)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# every name write_hf_files may write: an earlier export holds these and nothing else
EXPORT_NAMES = frozenset({HF_WEIGHTS, "tokenizer.json", "vocab.json", "config.json", "README.md"})


def write_hf_files(payload: dict, folder: Path, name: str) -> list[str]:
    meta = payload["meta"]
    gpt2 = gpt2_export(meta)
    kept = {k: v for k, v in meta.items() if k != "vocab"}  # the vocab has its own file
    if gpt2 is not None:
        config, vocab = gpt2
        tensors = hf_gpt2.from_rnnkit(config, payload["model"])
        safetensors.torch.save_file(tensors, folder / HF_WEIGHTS, metadata={"format": "pt"})
        hf = {**hf_gpt2.hf_config(config, len(vocab)), **hf_gpt2.special_ids(vocab),
              "rnnkit": kept}
        (folder / "tokenizer.json").write_text(vocab.serialized)
    else:
        (folder / HF_WEIGHTS).write_bytes(safetensors_bytes(payload))
        hf = {"model_type": RNNKIT_TYPE, "format_version": FORMAT_VERSION, "rnnkit": kept}
        if "vocab" in meta:
            atomic_write_json(folder / "vocab.json", meta["vocab"])
    atomic_write_json(folder / "config.json", hf)
    (folder / "README.md").write_text(model_card(payload, hf["model_type"], name))
    return sorted(p.name for p in folder.iterdir())


def gpt2_export(meta: dict) -> tuple[GPTConfig, object] | None:
    """(config, vocab) when the model is a GPT over byte-level BPE without special tokens, so
    a GPT-2 folder holds it (a GPT without biases gets zero ones); None otherwise."""
    task = task_of_kind(meta["kind"])
    _, config_cls = task.models.get(meta["config"]["train"].get("model", "rnn"), (None, None))
    if config_cls is not GPTConfig or "vocab" not in meta:
        return None
    vocab = tokenizers.from_json(meta["vocab"])
    if not isinstance(vocab, tokenizers.BPEVocab) or vocab.specials:
        return None
    return GPTConfig(**meta["config"]["model"]), vocab


def model_card(payload: dict, model_type: str, name: str) -> str:
    """README.md: what the model is, what it was trained on, its val loss, how to load it."""
    meta = payload["meta"]
    model_cfg, train = meta["config"]["model"], meta["config"]["train"]
    model = train.get("model", "rnn")
    params = sum(t.numel() for t in {id(t): t for t in payload["model"].values()}.values())
    data = train.get("data") or f"the built-in corpus {train.get('corpus', 'tinyshakespeare')}"
    metrics = meta.get("metrics") or {}
    loss = "not recorded"
    if "val_loss" in metrics:
        bpc = f" ({metrics['val_bpc']:.4f} bits per character)" if "val_bpc" in metrics else ""
        loss = f"{metrics['val_loss']:.4f} nats per token{bpc} at step {meta.get('step', '?')}"
    what = task_of_kind(meta["kind"]).help
    use = (f'rnnkit sample {name} --prime-text "..." --length 200' if "vocab" in meta
           else f"rnnkit predict {name} --input FILE")
    lines = [f"# {name}", "", f"{what[0].upper()}{what[1:]}: an rnnkit model ({model}), "
             "exported with `rnnkit export --format hf`.", "", "## Model", "",
             f"- {model}: " + ", ".join(f"{k} {v}" for k, v in model_cfg.items()),
             f"- {params:,} parameters", f"- config.json model_type: {model_type}"]
    if "vocab" in meta:
        vocab = tokenizers.from_json(meta["vocab"])
        lines.append(f"- tokenizer: {vocab.kind}, {len(vocab):,} tokens")
    lines += ["", "## Training", "", f"- data: {data} ({train.get('mode', 'stream')} mode)",
              f"- steps: {meta.get('step', 0)}", f"- validation loss: {loss}", "",
              "## Use", "", "```", use,
              f"python -c 'import rnnkit; model, vocab, meta = rnnkit.load(\"{name}\")'",
              "```", ""]
    if model_type == hf_gpt2.MODEL_TYPE:
        lines += ["A GPT-2 folder: transformers reads it too.", "", "```python",
                  "from transformers import AutoTokenizer, GPT2LMHeadModel",
                  f'model = GPT2LMHeadModel.from_pretrained("{name}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", ""]
    return "\n".join(lines)
