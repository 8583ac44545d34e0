"""The Python API: one function per CLI command.

    import rnnkit
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": "input.txt", "max_steps": 200})
    rnnkit.train(model_cfg, cfg, out="runs/mine")
    print(rnnkit.sample("runs/mine", prime_text="ROMEO:", length=200)[0])
    print(rnnkit.evaluate("runs/mine", split="val"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from . import tasks, vision_tasks
from .data.corpus import encode_file, read_source
from .data.pairs import parse_examples, read_lines, split_indices
from .data.shakespeare import corpus_bytes
from .data.tokenizers import TextStream
from .data.vocab import EOS
from .decoding import SamplingConfig, beam_continue, generate, prompt_ids
from .errors import RnnkitError
from .layers.recurrent_step import PRECISIONS, int8_available
from .models.char_lm import CharLM, CharLMConfig
from .training.checkpoint import KIND, TASK_OF_KIND, load_checkpoint, model_from_checkpoint
from .training.config import TrainConfig, build_configs, read_toml
from .training.free_running import free_running_report
from .training.loop import eval_batch_size, resolve_device
from .training.loop import evaluate as evaluate_tokens
from .training.loop import train as train  # noqa: PLC0414  re-exported


def configs(preset: str | None = None, config_file: str | None = None, model: dict | None = None,
            train: dict | None = None) -> tuple[CharLMConfig, TrainConfig]:
    """Configs from defaults < preset or TOML file < the given overrides."""
    layers = [read_toml(preset, config_file)] if preset or config_file else []
    return build_configs(*layers, {"model": model or {}, "train": train or {}})


def load(checkpoint: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, object, dict]:
    """(model in eval mode, vocab, meta) from a run folder or a .pt checkpoint. The vocab is
    a CharVocab (lm), {"source", "target"} TokenVocabs (pair tasks) or the class names
    (vision tasks); ``meta["kind"]`` names the model."""
    dev = resolve_device(device)
    payload = load_checkpoint(checkpoint, map_location=dev)
    model, vocab = model_from_checkpoint(payload)
    return model.to(dev), vocab, payload["meta"]


def require_lm(meta: dict, checkpoint) -> None:
    if meta["kind"] != KIND:
        raise RnnkitError(f"{checkpoint} holds a {TASK_OF_KIND[meta['kind']]} model, not a "
                          f"language model; use rnnkit predict {checkpoint} --input FILE")


def sample(checkpoint: str | Path, prime_text: str = "", length: int = 500, num_samples: int = 1,
           seed: int = 1337, device: str = "cpu", on_text: Callable[[str], None] | None = None,
           precision: str = "fp32", beam: int = 1, length_penalty: float = 0.0,
           **sampling) -> list[str]:
    """Samples continuing ``prime_text`` (included in each), one string per sample.

    ``sampling`` takes SamplingConfig's fields (temperature, top_k, top_p, argmax). With one
    sample, ``on_text`` receives the text piece by piece as it is generated. ``precision``
    "bf16" or "int8" trades a little likelihood for speed (layers/recurrent_step.py).
    ``beam`` > 1 searches for the likeliest continuations instead of sampling: the
    ``num_samples`` best of the beam (decoding.beam_continue).
    """
    model, vocab, meta = load(checkpoint, device)
    require_lm(meta, checkpoint)
    return sample_model(model, vocab, prime_text, length, num_samples, seed, on_text,
                        precision, beam, length_penalty, **sampling)


def sample_model(model: CharLM, vocab, prime_text: str = "", length: int = 500,
                 num_samples: int = 1, seed: int = 1337,
                 on_text: Callable[[str], None] | None = None, precision: str = "fp32",
                 beam: int = 1, length_penalty: float = 0.0, **sampling) -> list[str]:
    """``sample`` for a model already loaded."""
    cfg = SamplingConfig(**sampling)
    check_precision(precision, next(model.parameters()).device, model)
    prompt_ids(vocab, prime_text)  # refuse a bad prompt before anything is printed
    check_beam(beam, num_samples, length_penalty, cfg, EOS in vocab.specials)
    if beam != 1:
        if length < 1:
            raise RnnkitError(f"--length must be >= 1, got {length}")
        found = beam_continue(model, vocab, prime_text, length, beam, num_samples,
                              length_penalty, precision)
        texts = [prime_text + vocab.decode(tokens) for tokens in found]
        if on_text is not None and num_samples == 1 and texts:
            on_text(texts[0])
        return texts
    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    stream = on_text if num_samples == 1 else None
    if stream:
        stream(prime_text)

    text = TextStream(vocab)

    def emit(token):
        if stream and int(token[0]) >= len(vocab.specials):
            stream(text.feed(int(token[0])))

    rows = generate(model, vocab, prime_text, length, cfg, gen, num_samples, emit, precision)
    return [prime_text + vocab.decode(r) for r in rows]


def check_beam(beam: int, num_samples: int, length_penalty: float, cfg: SamplingConfig,
               lines_mode: bool) -> None:
    if beam < 1 or num_samples < 1:
        raise RnnkitError(f"--beam and --num-samples must be >= 1, got {beam} and {num_samples}")
    if length_penalty and (beam == 1 or not lines_mode):
        raise RnnkitError("--length-penalty weighs lines of different lengths: it applies to "
                          "--beam in lines mode only (in stream mode every text has --length "
                          "characters)")
    if beam == 1:
        return
    if num_samples > beam:
        raise RnnkitError(f"--num-samples ({num_samples}) must be <= --beam ({beam}): a beam "
                          "search returns the best of the hypotheses it keeps")
    if cfg != SamplingConfig():
        raise RnnkitError("--beam searches for the likeliest text and samples nothing: drop "
                          "--temperature, --top-k, --top-p and --argmax, or --beam")


def check_precision(precision: str, device: torch.device, model=None) -> None:
    if precision not in PRECISIONS:
        raise RnnkitError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and not getattr(model, "carries_state", True):
        raise RnnkitError("--precision int8 applies to the recurrent models; sample the "
                          "transformer with --precision fp32 or bf16")
    if precision == "int8" and not int8_available(device):
        raise RnnkitError("--precision int8 runs on the CPU only, with torch's x86/fbgemm "
                          "kernels; use --precision fp32 or bf16 here")


def evaluate(checkpoint: str | Path, data: str | None = None, split: str | None = None,
             batch_size: int | None = None, device: str = "cpu", free_running: bool = False,
             prefix: int = 10, continuation: int = 50, max_cases: int = 1000,
             beam: int = 1) -> dict:
    """{"loss" (nats/char), "bpc", "perplexity", "chars"} on a split of a text; for a pair
    or vision task the task's metrics (see ``evaluate_pairs``, ``evaluate_vision``); seq2seq
    and captions are decoded with a ``beam`` (1: greedy).

    The text defaults to the run's own training data; it is split with the run's fractions.
    ``free_running`` adds "exposure_bias": greedy continuations after ``prefix`` true tokens
    (to the end of each line, or ``continuation`` characters in stream mode) scored against
    the teacher-forced predictions of the same positions (see training/free_running.py).
    """
    model, vocab, meta = load(checkpoint, device)
    tcfg = TrainConfig(**meta["config"]["train"])
    if tcfg.task in vision_tasks.VISION_TASKS:
        return evaluate_vision(model, tcfg, data, split, batch_size, beam)
    if tcfg.task != "lm":
        return evaluate_pairs(model, vocab, meta, tcfg, data, split, batch_size, beam)
    split = split or "val"
    if data is not None:
        raw, name = read_source(data), str(data)
    elif tcfg.data is not None:
        raw, name = read_source(tcfg.data), tcfg.data
    else:
        raw, name = corpus_bytes(tcfg.corpus), f"corpus:{tcfg.corpus}"
    tokens = encode_file(raw, name, tcfg.mode, vocab).split(tcfg.val_frac, tcfg.test_frac)[split]
    if len(tokens) < 2:
        raise RnnkitError(f"the {split} split of {name} is empty (val_frac {tcfg.val_frac}, "
                          f"test_frac {tcfg.test_frac}); use --split all")
    rows = batch_size or eval_batch_size(tcfg.mode, tcfg.batch_size)
    report = {"split": split, **evaluate_tokens(model, tokens, vocab, tcfg.mode, rows,
                                                tcfg.seq_length)}
    if free_running:
        report["exposure_bias"] = exposure_bias(model, vocab, tokens, tcfg.mode, prefix,
                                                continuation, max_cases)
    return report


def exposure_bias(model, vocab, tokens, mode: str, prefix: int, continuation: int,
                  max_cases: int) -> dict:
    if prefix < (0 if mode == "lines" else 1) or continuation < 1 or max_cases < 1:
        raise RnnkitError("--prefix must be >= 1 (>= 0 in lines mode, where <bos> starts each "
                          "line), --continuation and --max-cases >= 1")
    report = free_running_report(model, vocab, tokens, mode, prefix, continuation, max_cases)
    if not report["cases"]:
        raise RnnkitError(f"no held-out {'line' if mode == 'lines' else 'text'} is longer than "
                          f"--prefix {prefix}; lower --prefix")
    return report


def evaluate_pairs(model, vocabs: dict, meta: dict, tcfg: TrainConfig, data: str | None,
                   split: str | None, batch_size: int | None, beam: int = 1) -> dict:
    """A pair task's metrics on a TSV file: the run's own file (its val split by default) or
    another file (all of it by default)."""
    own = data is None or Path(data).resolve() == Path(tcfg.data or "").resolve()
    split = split or ("val" if own else "all")
    path = tcfg.data if data is None else data
    examples, _ = parse_examples(read_lines(path), tcfg.task, meta["tag_format"] or "auto",
                                 vocabs["source"].splitter)
    part = split_indices(len(examples), tcfg.val_frac, tcfg.test_frac, tcfg.seed)[split]
    if not len(part):
        raise RnnkitError(f"the {split} split of {path} is empty (val_frac {tcfg.val_frac}, "
                          f"test_frac {tcfg.test_frac}); use --split all")
    report = tasks.evaluate(model, tcfg.task, vocabs, [examples[i] for i in part],
                            batch_size or tcfg.batch_size, meta["max_length"], beam=beam)
    return {"task": tcfg.task, "split": split, **report}


def evaluate_vision(model, tcfg: TrainConfig, data: str | None, split: str | None,
                    batch_size: int | None, beam: int = 1) -> dict:
    """A vision task's metrics: on a fresh generated test set (or val), on the run's own .npz
    (its test split by default) or on all of another .npz file."""
    rows = batch_size or tcfg.batch_size
    if data is not None:
        examples = vision_tasks.load_npz(data, tcfg.task, model.config)
        split = split or "all"
        if split != "all":
            part = split_indices(len(examples), tcfg.val_frac, tcfg.test_frac, tcfg.seed)[split]
            examples = examples.subset(part)
    else:
        split = split or "test"
        sets = vision_tasks.VisionData(tcfg.task, model.config, tcfg.data, rows, tcfg.seed,
                                       tcfg.eval_examples, tcfg.val_frac, tcfg.test_frac)
        examples = sets.val if split == "val" else sets.test
    if not len(examples):
        raise RnnkitError(f"the {split} split is empty; use --split all or another --data")
    report = vision_tasks.evaluate(model, tcfg.task, examples, rows, beam)
    return {"task": tcfg.task, "split": split, **report}


def predict(checkpoint: str | Path, texts: list[str], device: str = "cpu",
            settings: tasks.DecodeSettings | None = None, batch_size: int = 64) -> list:
    """Predictions of a pair model, one per input text: seq2seq a list of n-best strings,
    classify a label, tag a list of labels. An empty text gets an empty prediction."""
    model, vocabs, meta = load(checkpoint, device)
    return predict_model(model, vocabs, meta, texts, settings, batch_size)


def predict_model(model, vocabs: dict, meta: dict, texts: list[str],
                  settings: tasks.DecodeSettings | None = None, batch_size: int = 64) -> list:
    """``predict`` for a model already loaded (``load`` gives model, vocabs and meta)."""
    task = TASK_OF_KIND[meta["kind"]]
    if task == "lm":
        raise RnnkitError("this is a language model; use rnnkit sample")
    if batch_size < 1:
        raise RnnkitError(f"--batch-size must be >= 1, got {batch_size}")
    settings = settings or tasks.DecodeSettings()
    if settings.max_length is None:  # the model's own limit, from its training data
        settings = dataclasses.replace(settings, max_length=meta["max_length"])
    examples = tasks.examples_from_texts(texts, task, meta["tag_format"],
                                         vocabs["source"].splitter)
    filled = [e for e in examples if e.source]
    preds = iter(tasks.predict(model, task, vocabs, filled, settings, batch_size))
    empty = {"seq2seq": [""], "classify": "", "tag": []}[task]
    return [next(preds) if e.source else empty for e in examples]
