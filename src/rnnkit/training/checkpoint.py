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

Loading a checkpoint from someone else is safe in memory and time as well as in code: the
archive is checked before torch reads it (``check_archive``: no compressed records, so no zip
bomb), and the model its config describes is built on the meta device and compared with the
stored tensors before any real memory is allocated (``misfit``).

A Hugging Face folder (config.json + model.safetensors) is a checkpoint too: a GPT-2 saved by
transformers becomes a language model payload (``read_hf_folder``, "Hugging Face folders"
below); hf_export.py writes any payload as such a folder.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch.nn.modules.module import (
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)
from torch.overrides import TorchFunctionMode

from ..errors import RnnkitError
from ..fileio import atomic_write, atomic_write_all, atomic_write_json
from ..models import hf_gpt2
from ..models.gpt import GPTConfig
from ..tasks import task_of_kind
from .config import TrainConfig, coerce

FORMAT_VERSION = 1
# what rebuilding a model from a bad config raises: one error line, never a traceback
FIT_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, AssertionError, AttributeError,
              IndexError, OverflowError, NotImplementedError)


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
    """A run folder means its best.pt (lowest val loss), else its last.pt; a Hugging Face
    folder (config.json beside its weights, and no best.pt or last.pt) means itself."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        if is_hf_folder(p):
            return p
        raise RnnkitError(f"{str(p)!r} holds no checkpoint (best.pt or last.pt) and is no "
                          "Hugging Face folder (config.json + model.safetensors); train into "
                          "it first with rnnkit train --out")
    if not p.is_file():
        raise RnnkitError(f"checkpoint {str(p)!r} not found; give a run folder or a .pt file")
    return p


def export_safetensors(payload: dict, path: str | Path) -> None:
    """Weights as safetensors (no pickle at all), the meta as JSON in its header and beside it."""
    meta = {"format_version": FORMAT_VERSION, **payload["meta"]}
    data = safetensors_bytes(payload)
    side = (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode()
    atomic_write_all({Path(path): lambda f: f.write(data),  # both or neither
                      Path(path).with_suffix(".json"): lambda f: f.write(side)})


def safetensors_bytes(payload: dict) -> bytes:
    """The payload as one safetensors file: its weights, and its meta in the header."""
    meta = {"format_version": FORMAT_VERSION, **payload["meta"]}
    tensors, storages = {}, set()
    for k, v in payload["model"].items():
        # safetensors refuses tensors that share memory (a head tied to the embedding): the
        # second gets its own copy, and loading ties them again
        storage = (v.device, v.untyped_storage().data_ptr())
        tensors[k] = v.clone() if storage in storages else v.contiguous()
        storages.add(storage)
    return safetensors.torch.save(tensors, metadata={"rnnkit": json.dumps(meta)})


def load_safetensors(p: Path, map_location) -> dict:
    """safetensors bounds the read by the file: it refuses a header over 100 MB or longer than
    the file, and every tensor whose offsets fall outside it."""
    with safetensors.safe_open(p, framework="pt", device="cpu") as f:
        text = (f.metadata() or {}).get("rnnkit")
        try:
            meta = json.loads(text) if text else None
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            raise ValueError("its header holds no rnnkit meta (a JSON object)")
        model = {k: f.get_tensor(k).to(map_location) for k in f.keys()}
    return {"format_version": meta.pop("format_version", None), "meta": meta, "model": model}


def check_archive(p: Path) -> None:
    """Refuse a zip bomb before torch reads it. torch.save stores its records uncompressed, so
    every record's bytes lie in the file: compressed records, or records that unpack to more
    than the file's size (a central directory that lies), are a forgery. A file that is no
    zip at all is refused too: torch's legacy format (before 1.6; rnnkit never wrote it)
    allocates each tensor at the size its pickle claims before reading it."""
    if not zipfile.is_zipfile(p):
        raise ValueError("not a zip archive, the format torch.save writes (a truncated file?)")
    with zipfile.ZipFile(p) as z:
        records = z.infolist()
    compressed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if compressed:
        more = f" and {len(compressed) - 2} more" if len(compressed) > 2 else ""
        raise ValueError(f"compressed records: {', '.join(compressed[:2])}{more}")
    unpacked, size = sum(r.file_size for r in records), p.stat().st_size
    if unpacked > size:
        raise ValueError(f"its records unpack to {unpacked:,} bytes, the file holds {size:,}")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a checkpoint (.pt, .safetensors from ``rnnkit export``, or a Hugging
    Face folder: a GPT-2, or one ``rnnkit export --format hf`` wrote).

    A .pt file is read with ``torch.load(weights_only=True)`` and nothing else: a file that
    would need arbitrary unpickling (code execution) is refused, never retried unsafely.
    """
    p = resolve(path)
    if p.is_dir():  # a Hugging Face folder: its reader says what is wrong in its own words
        return check_payload(read_hf_folder(p, map_location), p)
    try:
        if p.suffix == ".safetensors":
            payload = load_safetensors(p, map_location)
        else:
            check_archive(p)
            payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RnnkitError(f"checkpoint {str(p)!r} is corrupt or not an rnnkit checkpoint "
                          f"({first_line(e)}); use another checkpoint or retrain") from None
    return check_payload(payload, p)


def check_payload(payload, p: Path) -> dict:
    """The payload, once its kind, format version and keys are known good."""
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
    task).

    Nothing large is allocated before the weights are known to fit the config (``misfit``),
    so a small file claiming a huge model fails at once; non-finite weights are refused."""
    meta, weights = payload["meta"], payload["model"]
    task = task_of_kind(meta["kind"])
    try:
        settings = meta["config"]
        if not (isinstance(settings, dict) and isinstance(settings.get("model"), dict)
                and isinstance(settings.get("train"), dict)):
            raise ValueError("its config holds no model and train settings")
        model_cls, config_cls = task.models[settings["train"].get("model", "rnn")]
        # the types first, as for a config file: "hidden_size must be int, got '16'"
        config = config_cls(**coerce(config_cls, settings["model"]))
        reason = misfit(model_cls, config, weights)
    except FIT_ERRORS as e:
        reason = first_line(e)
    if reason:
        raise misfit_error(reason)
    bad = next((k for k, t in weights.items()
                if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise RnnkitError(f"the checkpoint holds non-finite weights (NaN or inf in {bad}); use "
                          "another checkpoint (best.pt, if this is last.pt) or retrain")
    try:
        model = model_cls(config)
        model.load_state_dict(weights)
        vocab = task.vocab(meta, model)
    except FIT_ERRORS as e:
        raise misfit_error(first_line(e)) from None
    return model.eval(), vocab, task


def first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__


def misfit_error(reason: str) -> RnnkitError:
    return RnnkitError(f"the checkpoint's config and weights do not fit together ({reason}); "
                       "use another checkpoint or retrain")


def misfit(model_cls: type, config, weights) -> str | None:
    """How the model ``config`` describes differs from the stored ``weights`` (the first
    missing, unexpected or misshapen tensor, e.g. "rnn.cells.0.weight_hh: config wants
    (48000, 12000), file holds (128, 32)"), or None when they fit.

    The model is built on the meta device: shapes without memory or initialisation, and at
    most a few modules and parameters per stored tensor, so an absurd config (hidden_size
    10**9, num_layers 10**6) costs milliseconds. A model whose __init__ cannot run on the meta
    device is not checked here (None); load_state_dict checks it after the real build."""
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor)
                                                for t in weights.values()):
        return "the file's weights are not a dict of tensors"
    limit = 8 * len(weights) + 256  # rnnkit's models register under 3 per stored tensor
    try:
        with at_most_registrations(limit), torch.device("meta"), ShapesOnly():
            model = model_cls(config)
    except TooManyModules:
        return (f"config builds over {limit} modules and parameters, "
                f"file holds {len(weights)} tensors")
    except (RuntimeError, NotImplementedError) as e:
        if "meta" in str(e).lower():
            return None
        if "overflow" in str(e).lower():  # torch's "Storage size calculation overflowed"
            return "config describes tensors too large for any machine (their sizes overflow)"
        raise
    wanted = model.state_dict()
    for key, t in wanted.items():
        if key not in weights:
            return f"{key}: config wants {tuple(t.shape)}, file has no such tensor"
        if weights[key].shape != t.shape:
            return (f"{key}: config wants {tuple(t.shape)}, "
                    f"file holds {tuple(weights[key].shape)}")
    extra = next((k for k in weights if k not in wanted), None)
    if extra is not None:
        return f"{extra}: in the file, not in the model the config builds"
    return expanded(model, weights)


def expanded(model: torch.nn.Module, weights: dict) -> str | None:
    """A file can store one number and view it with zero strides as a tensor of any shape;
    refuse weights whose storage is far smaller than the model they fill."""
    need = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    storages = {(t.device, t.untyped_storage().data_ptr()): t.untyped_storage().nbytes()
                for t in weights.values()}
    have = sum(storages.values())
    if need > 4 * have + 2**20:  # 4: room for weights stored in a narrower dtype
        return f"config wants {need:,} bytes of weights, file stores {have:,} bytes"
    return None


class TooManyModules(Exception):
    pass


@contextmanager
def at_most_registrations(limit: int):
    """Stop a model build in this thread once it has registered ``limit`` modules and
    parameters (torch's global registration hooks see every one)."""
    thread, count = threading.get_ident(), 0

    def count_one(*_):
        nonlocal count
        if threading.get_ident() == thread:
            count += 1
            if count > limit:
                raise TooManyModules

    hooks = [register_module_module_registration_hook(count_one),
             register_module_parameter_registration_hook(count_one)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


class ShapesOnly(TorchFunctionMode):
    """Skips in-place writes to meta tensors (the initialisers: normal_, uniform_, zero_, ...).
    They would compute nothing anyway, and their meta kernels import torch._dynamo (seconds)."""

    RESHAPING = frozenset({"resize_", "resize_as_", "set_", "as_strided_", "squeeze_",
                           "unsqueeze_", "t_", "transpose_", "swapdims_", "swapaxes_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
        if (name.endswith("_") and not name.endswith("__") and name not in self.RESHAPING
                and isinstance(target, torch.Tensor) and target.is_meta):
            return target
        return func(*args, **kwargs)


# ---------------------------------------------------------------- Hugging Face folders
#
# A folder of config.json + model.safetensors (+ the tokenizer): GPT-2 as transformers saves
# it (model_type gpt2; models/hf_gpt2.py), or what ``rnnkit export --format hf`` writes. A GPT
# whose vocabulary is a byte-level BPE is written as a real GPT-2 (transformers loads it, and
# config.json's "rnnkit" key keeps the run's meta); any other model as model_type rnnkit, whose
# model.safetensors is ``export_safetensors``'s file (meta in its header: what is read back).

HF_WEIGHTS = "model.safetensors"
RNNKIT_TYPE = "rnnkit"
# a GPT-2 folder is a language model (tasks/lm.py's kind) with --model gpt
LM_KIND, GPT_MODEL = "rnnkit.char_lm", "gpt"
MAX_CONFIG_BYTES = 100 * 2**20


def is_hf_folder(p: Path) -> bool:
    return (p / "config.json").is_file() and any(
        (p / name).is_file()
        for name in (HF_WEIGHTS, "pytorch_model.bin", "model.safetensors.index.json"))


def read_hf_folder(p: Path, map_location) -> dict:
    """A Hugging Face folder as a payload. A GPT-2 is a language model with --model gpt,
    its tokenizer as the vocab, step 0 and no metrics (unless rnnkit exported it: then the
    run's meta from config.json)."""
    hf = read_config_json(p)
    kind = hf.get("model_type")
    if kind not in (hf_gpt2.MODEL_TYPE, RNNKIT_TYPE):
        raise RnnkitError(f"{str(p)!r} holds a {kind!r} model (config.json's model_type); "
                          "rnnkit reads GPT-2 folders (model_type gpt2) and its own exports "
                          "(model_type rnnkit)")
    check_weights_file(p)
    if kind == RNNKIT_TYPE:
        try:
            return load_safetensors(p / HF_WEIGHTS, map_location)
        except Exception as e:
            raise RnnkitError(f"{str(p / HF_WEIGHTS)!r} is corrupt or not written by rnnkit "
                              f"export ({first_line(e)}); export the run again") from None
    config, weights, vocab = hf_gpt2.read_folder(p, hf)
    saved = hf.get("rnnkit") if isinstance(hf.get("rnnkit"), dict) else {}
    train = gpt2_train_config(saved, config)
    meta = {"step": 0, "metrics": {}, **saved, "kind": LM_KIND,
            "config": {"model": asdict(config), "train": train}, "vocab": vocab.to_json()}
    model = {k: v.to(map_location) for k, v in weights.items()}
    return {"format_version": FORMAT_VERSION, "meta": meta, "model": model}


def read_config_json(p: Path) -> dict:
    path = p / "config.json"
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise RnnkitError(f"{str(path)!r} is over {MAX_CONFIG_BYTES // 2**20} MB, no model "
                          "config; use the config.json saved with the model")
    try:
        hf = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:
        raise RnnkitError(f"{str(path)!r} is not valid JSON ({first_line(e)}); use the "
                          "config.json saved with the model") from None
    if not isinstance(hf, dict):
        raise RnnkitError(f"{str(path)!r} holds no JSON object; use the config.json saved "
                          "with the model")
    return hf


def check_weights_file(p: Path) -> None:
    if (p / HF_WEIGHTS).is_file():
        return
    if (p / "model.safetensors.index.json").is_file():
        raise RnnkitError(f"{str(p)!r} holds its weights in shards; rnnkit reads one "
                          "model.safetensors: save it again with save_pretrained(DIR, "
                          "max_shard_size='100GB')")
    raise RnnkitError(f"{str(p)!r} holds pytorch_model.bin only, a pickle rnnkit does not "
                      "load; convert it to safetensors: GPT2LMHeadModel.from_pretrained(DIR)"
                      ".save_pretrained(DIR) writes model.safetensors")


def gpt2_train_config(saved: dict, config: GPTConfig) -> dict:
    """The training settings of a GPT-2 folder: those rnnkit exported with it, else --model
    gpt over windows of its whole context, one stream at a time (a 50,257-token vocabulary
    makes every row of logits large)."""
    train = saved.get("config", {}).get("train") if isinstance(saved.get("config"), dict) else None
    if not isinstance(train, dict):
        train = {"model": GPT_MODEL, "tokenizer": "bpe", "mode": "stream",
                 "seq_length": config.block_size, "batch_size": 1}
    known = {f.name for f in fields(TrainConfig)}
    try:
        TrainConfig(**{k: v for k, v in train.items() if k in known})
    except (TypeError, ValueError) as e:
        raise RnnkitError(f"config.json's rnnkit settings are invalid ({first_line(e)}); "
                          "remove its \"rnnkit\" key, or export the run again") from None
    return {k: v for k, v in train.items() if k in known}
