"""--init-from: a new run that starts from the weights of another run (fine-tuning, as
char-rnn's -init_from and nanoGPT's init_from).

The new run has its own data, a new optimizer, a new learning-rate schedule and starts at step
0; the model comes from the checkpoint: its settings (meta["config"]["model"]), the TrainConfig
settings that define it (MODEL_KEYS: the task, --model, the tokenizer, the mode) and its
vocabulary, which the new data must fit. A setting given that contradicts the checkpoint is an
error; --dropout (TRAINING_ONLY) is the new run's own, as the learning rate is (char-rnn keeps
its -dropout too). Everything is checked before the run folder is created.

Who decides which settings were given: the CLI knows its flags (``init_layers``); the Python
API takes the settings left at their defaults from the checkpoint (``adopt``).
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

from ..errors import RnnkitError, UnseenTokens
from ..models import DATA_SIZES
from ..tasks import Task, task_of_kind
from .checkpoint import load_checkpoint, model_from_checkpoint, resolve
from .config import TrainConfig

# TrainConfig settings that belong to the model: what it is, and how its inputs are cut
MODEL_KEYS = ("task", "model", "tokenizer", "tokenizer_size", "mode", "tag_format")
# model settings that act only in training: the new run's own
TRAINING_ONLY = ("dropout",)
ABSENT = object()  # a setting the checkpoint's model does not have


def start_from(model_cfg, cfg: TrainConfig, task: Task | None, out: Path,
               resume: bool) -> tuple:
    """(the checkpoint --init-from names, or None; the run's model config; its TrainConfig).
    A run folder means its best.pt, else its last.pt; the checkpoint's config and weights are
    checked (they fit together and are finite). A resumed run continues from its own last.pt
    (None): its model settings are those it started with (its last.json), --init-from is
    what it started from, whatever ``cfg`` says."""
    if cfg.init_from is None:
        return None, model_cfg, cfg
    if resume:
        meta = run_meta(out)
        if meta is None:  # the resume itself says what is wrong with the folder
            return None, model_cfg, cfg
        path = meta["config"]["train"].get("init_from")
        if path is None:  # a run that did not start from another one
            return None, model_cfg, dataclasses.replace(cfg, init_from=None)
        return None, *adopt(meta, model_cfg, cfg, task, path)
    payload = load_checkpoint(cfg.init_from, map_location="cpu")
    model_from_checkpoint(payload)  # one error line now, rather than a traceback later
    path = weights_path(cfg.init_from)
    model_cfg, cfg = adopt(payload["meta"], model_cfg, cfg, task, path)
    return {**payload, "path": path}, model_cfg, cfg


def weights_path(path: str) -> str:
    """The file ``path`` means (a run folder: its best.pt, else last.pt), absolute, for the
    run's config.json: what the run started from, wherever it is read."""
    try:
        return str(resolve(path).absolute())
    except RnnkitError:  # a folder that load_checkpoint reads whole (Hugging Face GPT-2)
        return str(Path(path).absolute())


def run_meta(out: Path) -> dict | None:
    """The meta of the run in ``out`` (last.json: no weights to read), if it is sound."""
    try:
        meta = json.loads((out / "last.json").read_text(encoding="utf-8"))
        return meta if task_of_kind(meta["kind"]) and isinstance(meta["config"]["train"],
                                                                  dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def load_weights(model, init: dict, log) -> None:
    """The init checkpoint's weights into the new run's ``model`` (then dropped from ``init``)."""
    model.load_state_dict(init.pop("model"))
    log(f"starting from the weights of {init['path']} (its step {init['meta']['step']})")


def model_layer(meta: dict) -> dict:
    """The checkpoint's model as a config layer {"model": ..., "train": ...}."""
    saved = meta["config"]
    train = {k: v for k, v in saved.get("train", {}).items() if k in MODEL_KEYS}
    if meta.get("tag_format"):  # what "auto" found in the first run's file
        train["tag_format"] = meta["tag_format"]
    model = {k: v for k, v in saved["model"].items() if k not in TRAINING_ONLY}
    return {"model": model, "train": train}


def check_given(path, meta: dict, given: dict, name=str) -> None:
    """Refuse ``given`` settings ({"model": ..., "train": ...}) that contradict the model in
    the checkpoint at ``path``; ``name(setting)`` is what the message calls it (a flag)."""
    layer, task = model_layer(meta), task_of_kind(meta["kind"])
    wanted = given.get("train", {}).get("task")
    if wanted is not None and wanted != task.name:
        raise RnnkitError(f"--init-from {path} holds a model of --task {task.name}, not "
                          f"{wanted}; fine-tune it with --task {task.name}, or choose another "
                          "checkpoint")
    model, train = given.get("model", {}), given.get("train", {})
    changed = [k for k, v in model.items()
               if k not in (*DATA_SIZES, *TRAINING_ONLY) and layer["model"].get(k, ABSENT) != v]
    changed += [k for k, v in train.items() if k in layer["train"] and layer["train"][k] != v]
    if changed:
        saved = {**layer["model"], **layer["train"]}
        has = ", ".join(f"{name(k)} {saved[k]}" if k in saved else f"no {name(k)}"
                        for k in changed)
        raise RnnkitError(f"--init-from cannot change {', '.join(map(name, changed))} (the "
                          f"model in {path} has {has}); drop them: a fine-tuned model keeps "
                          f"its settings (but {', '.join(map(name, TRAINING_ONLY))})")


def init_layers(path: str, layers: list[dict], given: dict, name=str) -> list[dict]:
    """The CLI's config layers for a new run --init-from ``path``: the checkpoint's model
    replaces the preset's or TOML file's (all but TRAINING_ONLY); the flags ``given`` come
    last and must agree with it (``name``: a setting's flag, for the message)."""
    meta = load_checkpoint(path, map_location="cpu")["meta"]
    check_given(path, meta, given, name)
    kept = [{"train": layer.get("train", {}),
             "model": {k: v for k, v in layer.get("model", {}).items() if k in TRAINING_ONLY}}
            for layer in layers]
    return [*kept, model_layer(meta), given]


def adopt(meta: dict, model_cfg, cfg: TrainConfig, task: Task | None, path: str) -> tuple:
    """(model config, TrainConfig) of a run from the checkpoint at ``path`` (its ``meta``):
    the model's settings from the checkpoint, the rest from ``cfg``. Settings that differ from
    their defaults count as given (the Python API's ``rnnkit.train``): they must agree."""
    given = {"model": non_default(model_cfg),
             "train": {k: v for k, v in non_default(cfg).items() if k in MODEL_KEYS}}
    check_given(cfg.init_from, meta, given)
    if task is not None and task.kind != meta["kind"]:
        raise RnnkitError(f"--init-from {cfg.init_from} holds a model of --task "
                          f"{task_of_kind(meta['kind']).name}, not {task.name}")
    task = task or task_of_kind(meta["kind"])
    layer = model_layer(meta)
    try:
        cfg = dataclasses.replace(cfg, **layer["train"], init_from=path)
        model_cls = task.models[cfg.model][1]
        own = {f.name: getattr(model_cfg, f.name) for f in dataclasses.fields(model_cls)
               if f.name in TRAINING_ONLY and hasattr(model_cfg, f.name)}
        return model_cls(**{**layer["model"], **own}), cfg
    except (ValueError, TypeError) as e:
        raise RnnkitError(f"bad configuration: {e}") from None


def non_default(obj) -> dict:
    """The fields of dataclass ``obj`` that differ from their defaults."""
    out = {}
    for f in dataclasses.fields(obj):
        default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else f.default)
        if default is dataclasses.MISSING or getattr(obj, f.name) != default:
            out[f.name] = getattr(obj, f.name)
    return out


@contextmanager
def init_data_errors(init: dict | None):
    """Say in terms of --init-from that the new data has tokens the ``init`` checkpoint's
    vocabulary lacks (the readers' own words suit a prompt or a resumed run); None: no
    --init-from."""
    try:
        yield
    except UnseenTokens as e:
        if init is None:
            raise
        shown = "".join(e.unseen[:20]) if all(len(t) == 1 for t in e.unseen) else " ".join(
            e.unseen[:20])
        error = type(e).__new__(type(e))  # its class and exit code: one rank's or every rank's
        error.__dict__.update(e.__dict__)
        error.args = (f"{e.source} has {len(e.unseen)} character(s) or label(s) the "
                      f"--init-from model ({init['path']}) has never seen: {shown!r}; remove "
                      "them from the data, or train from scratch (without --init-from)",)
        raise error from None
