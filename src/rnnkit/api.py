"""The Python API: one function per CLI command.

    import rnnkit
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": "input.txt", "max_steps": 200})
    rnnkit.train(model_cfg, cfg, out="runs/mine")
    print(rnnkit.sample("runs/mine", prime_text="ROMEO:", length=200)[0])
    print(rnnkit.evaluate("runs/mine", split="val"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .data.tokenizers import TextStream
from .data.vocab import EOS
from .decoding import (
    SamplingConfig,
    beam_continue,
    check_beam_width,
    check_length_penalty,
    generate,
    generate_steps,
    prompt_ids,
)
from .errors import RnnkitError
from .layers.recurrent_step import PRECISIONS, int8_available
from .limits import check_seed
from .models.char_lm import CharLM, CharLMConfig
from .tasks import DecodeSettings, EvalRequest, task_of_kind
from .tasks.lm import LanguageModelTask
from .tasks.transcribe import audio_utterances
from .training.checkpoint import load_checkpoint, model_from_checkpoint
from .training.config import TrainConfig, build_configs, read_toml
from .training.loop import train as train  # noqa: PLC0414  re-exported
from .training.precision import resolve_device

# Samples are drawn as one batch (memory: this many model states and rows of logits at once)
MAX_SAMPLES = 10_000
# Texts returned rather than streamed are held in memory until the end: about 30 bytes a
# character at the peak (tokens, then ids, then text), 3 GB at this many. A streamed sample
# has no limit.
MAX_KEPT_CHARS = 10**8
# decoding.beam_search copies its K hypotheses at each step, K x length**2 / 2 tokens in all:
# about 10 s for K = 8 at this length on a CPU
MAX_BEAM_LENGTH = 10_000
# A streamed sample reaches on_text at least this often (a reader sees it appear), and in
# pieces of at most this many tokens (so nothing grows with the length of the sample)
FLUSH_SECONDS = 0.1
FLUSH_TOKENS = 4096


def configs(preset: str | None = None, config_file: str | None = None, model: dict | None = None,
            train: dict | None = None) -> tuple[CharLMConfig, TrainConfig]:
    """Configs from defaults < preset or TOML file < the given overrides."""
    layers = [read_toml(preset, config_file)] if preset or config_file else []
    return build_configs(*layers, {"model": model or {}, "train": train or {}})


def load(checkpoint: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, object, dict]:
    """(model in eval mode, vocab, meta) from a run folder, a .pt or .safetensors checkpoint,
    or a Hugging Face folder (a GPT-2's, or one ``rnnkit export --format hf`` wrote). The
    vocab is the tokenizer (lm: a CharVocab, or one of data/tokenizers.py), {"source",
    "target"} TokenVocabs (pair tasks) or the class names (vision tasks); ``meta["kind"]``
    names the model."""
    dev = resolve_device(device)
    payload = load_checkpoint(checkpoint, map_location=dev)
    model, vocab, _ = model_from_checkpoint(payload)
    return model.to(dev), vocab, payload["meta"]


def require_lm(meta: dict, checkpoint) -> None:
    task = task_of_kind(meta["kind"])
    if not isinstance(task, LanguageModelTask):
        raise RnnkitError(f"{checkpoint} holds a {task.name} model, not a language model; use "
                          f"rnnkit predict {checkpoint} --input FILE")


def sample(checkpoint: str | Path, prime_text: str = "", length: int = 500, num_samples: int = 1,
           seed: int = 1337, device: str = "cpu", on_text: Callable[[str], None] | None = None,
           precision: str = "fp32", beam: int = 1, length_penalty: float = 0.0,
           keep_text: bool = True, **sampling) -> list[str]:
    """Samples continuing ``prime_text`` (included in each), one string per sample.

    ``sampling`` takes SamplingConfig's fields (temperature, top_k, top_p, argmax). With one
    sample, ``on_text`` receives the text piece by piece as it is generated; with
    ``keep_text=False`` as well, that text is not also returned (the list is empty), so
    memory stays flat however long the sample. ``precision`` "bf16" or "int8" trades a
    little likelihood for speed (layers/recurrent_step.py); "auto" (the command line's
    default) is ``decoding_precision``'s choice. ``beam`` > 1 searches for the
    likeliest continuations instead of sampling: the ``num_samples`` best of the beam
    (decoding.beam_continue). Bad values raise RnnkitError.
    """
    model, vocab, meta = load(checkpoint, device)
    require_lm(meta, checkpoint)
    return sample_model(model, vocab, prime_text, length, num_samples, seed, on_text,
                        precision, beam, length_penalty, keep_text, **sampling)


def sample_model(model: CharLM, vocab, prime_text: str = "", length: int = 500,
                 num_samples: int = 1, seed: int = 1337,
                 on_text: Callable[[str], None] | None = None, precision: str = "fp32",
                 beam: int = 1, length_penalty: float = 0.0, keep_text: bool = True,
                 **sampling) -> list[str]:
    """``sample`` for a model already loaded."""
    check_seed(seed)
    cfg = SamplingConfig(**sampling)
    precision = decoding_precision(precision, model)
    check_precision(precision, next(model.parameters()).device, model)
    prompt_ids(vocab, prime_text)  # refuse a bad prompt before anything is printed
    check_beam(beam, num_samples, length_penalty, cfg, EOS in vocab.specials)
    streamed = on_text is not None and num_samples == 1 and beam == 1
    check_length(length, num_samples, beam, kept=keep_text or not streamed)
    if beam != 1:
        found = beam_continue(model, vocab, prime_text, length, beam, num_samples,
                              length_penalty, precision)
        texts = [prime_text + vocab.decode(tokens) for tokens in found]
        if on_text is not None and num_samples == 1 and texts:
            on_text(texts[0])
        return texts
    gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    writer = TextWriter(vocab, on_text) if streamed else None
    if writer:
        on_text(prime_text)
    if writer and not keep_text:  # nothing kept: the tokens go to the writer and are gone
        for tokens in generate_steps(model, vocab, prime_text, length, cfg, gen, 1, precision):
            writer.add(tokens)
        rows = []
    else:
        rows = generate(model, vocab, prime_text, length, cfg, gen, num_samples,
                        writer.add if writer else None, precision)
    if writer:
        writer.flush()
    return [prime_text + vocab.decode(r) for r in rows]


class TextWriter:
    """Passes the tokens of one sample, step by step, to ``on_text`` as text: in pieces of up
    to FLUSH_TOKENS tokens, at least every FLUSH_SECONDS (one call per token would spend more
    time writing than sampling, one per sample would keep the whole text)."""

    def __init__(self, vocab, on_text: Callable[[str], None]):
        self.on_text, self.specials = on_text, len(vocab.specials)
        self.text = TextStream(vocab)
        self.pending: list[Tensor] = []
        self.last = time.monotonic()

    def add(self, tokens: Tensor) -> None:
        """One step's (1,) token."""
        self.pending.append(tokens)
        if len(self.pending) >= FLUSH_TOKENS or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        ids = torch.cat(self.pending).tolist() if self.pending else []
        self.pending.clear()
        self.last = time.monotonic()
        piece = "".join(self.text.feed(i) for i in ids if i >= self.specials)  # no <eos>
        if piece:
            self.on_text(piece)


def check_length(length: int, rows: int, beam: int, kept: bool) -> None:
    """--length is >= 1, and the texts held in memory (``rows`` of them, unless the one text
    is streamed and not ``kept``) stay within MAX_KEPT_CHARS."""
    if length < 1:
        raise RnnkitError(f"--length must be >= 1, got {length}")
    if beam > 1 and length > MAX_BEAM_LENGTH:
        raise RnnkitError(f"--length with --beam must be <= {MAX_BEAM_LENGTH}, got {length}: "
                          "the search copies every hypothesis at each step, so its time grows "
                          "with the square of the length")
    if kept and rows * length > MAX_KEPT_CHARS:
        raise RnnkitError(f"--length {length} x {rows} text(s) is over {MAX_KEPT_CHARS} "
                          "characters held in memory until printed; stream one sample "
                          "(--num-samples 1, no --beam) for longer text")


def check_beam(beam: int, num_samples: int, length_penalty: float, cfg: SamplingConfig,
               lines_mode: bool) -> None:
    if beam < 1 or num_samples < 1:
        raise RnnkitError(f"--beam and --num-samples must be >= 1, got {beam} and {num_samples}")
    check_beam_width(beam)
    if num_samples > MAX_SAMPLES:
        raise RnnkitError(f"--num-samples must be between 1 and {MAX_SAMPLES} (they are "
                          f"sampled as one batch), got {num_samples}")
    check_length_penalty(length_penalty)
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


def decoding_precision(precision: str, model) -> str:
    """``--precision auto``: int8 for a recurrent model on a CPU with torch's int8 kernels
    (a batch-1 step reads every weight once, so a quarter of the bytes is the fastest step;
    it costs 0.0005 nats/char on the trained main job: sampling_shakespeare_2x512.json), else
    fp32. Any
    other precision is returned as it is."""
    if precision != "auto":
        return precision
    int8 = model.carries_state and int8_available(next(model.parameters()).device)
    return "int8" if int8 else "fp32"


def check_precision(precision: str, device: torch.device, model=None) -> None:
    if precision not in PRECISIONS:
        raise RnnkitError(f"--precision must be one of auto, {', '.join(PRECISIONS)}, got "
                          f"{precision!r}")
    if precision == "int8" and model is not None and not model.carries_state:
        raise RnnkitError("--precision int8 applies to the recurrent models; sample the "
                          "transformer with --precision fp32 or bf16")
    if precision == "int8" and not int8_available(device):
        raise RnnkitError("--precision int8 runs on the CPU only, with torch's x86/fbgemm "
                          "kernels; use --precision fp32 or bf16 here")


def evaluate(checkpoint: str | Path, data: str | None = None, split: str | None = None,
             batch_size: int | None = None, device: str = "cpu", free_running: bool = False,
             prefix: int = 10, continuation: int = 50, max_cases: int = 1000,
             beam: int = 1, encoding: str | None = None, lm: str | Path | None = None,
             lm_weight: float = 0.5, word_bonus: float = 0.0) -> dict:
    """The task's metrics on a split of the run's own data (or of ``data``): for a language
    model {"loss" (nats/token), "bpc", "perplexity", "tokens", "chars"}, for a pair or vision
    task its loss and metrics (seq2seq and captions decoded with a ``beam``; 1: greedy).

    The text defaults to the run's own training data; it is split with the run's fractions.
    ``encoding``: the character encoding of ``data`` (None: the run's).
    ``free_running`` adds "exposure_bias": greedy continuations after ``prefix`` true tokens
    (to the end of each line, or ``continuation`` characters in stream mode) scored against
    the teacher-forced predictions of the same positions (see tasks/free_running.py).
    ``lm`` (transcribe): a character language model's run folder or checkpoint, fused into
    the beam search with ``lm_weight`` and ``word_bonus`` per word.
    """
    model, vocab, meta = load(checkpoint, device)
    task = task_of_kind(meta["kind"])
    fused = load_lm(lm, task, device) if lm is not None else None
    cfg = TrainConfig(**meta["config"]["train"])
    request = EvalRequest(data, split, batch_size, beam, free_running, prefix, continuation,
                          max_cases, encoding, fused, lm_weight, word_bonus)
    return task.evaluate(model, vocab, meta, cfg, request)


def transcribe(checkpoint: str | Path, audio_files: list[str | Path], device: str = "cpu",
               beam: int = 1, lm: str | Path | None = None, lm_weight: float = 0.5,
               word_bonus: float = 0.0, batch_size: int = 32) -> list[str]:
    """Transcripts of audio files (WAV, FLAC, OGG; any sample rate) by a ``--task transcribe``
    model: greedy, or a prefix beam search (``beam`` > 1) fused with the character language
    model ``lm`` (a run folder or checkpoint) as ``evaluate`` does."""
    model, labels, meta = load(checkpoint, device)
    task = task_of_kind(meta["kind"])
    if not hasattr(task, "transcribe"):
        raise RnnkitError(f"{checkpoint} holds a {task.name} model, not a speech model "
                          "(--task transcribe)")
    check_beam_width(beam)
    fused = load_lm(lm, task, device) if lm is not None else None
    utts = audio_utterances([Path(a) for a in audio_files], [str(a) for a in audio_files])
    return task.transcribe(model, labels, utts,
                           DecodeSettings(beam, lm=fused, lm_weight=lm_weight,
                                          word_bonus=word_bonus), batch_size)


def load_lm(checkpoint: str | Path, task, device: str = "cpu") -> tuple[CharLM, object]:
    """(model, vocab) of a recurrent character language model, to fuse into a transcribe
    model's beam search."""
    if not getattr(task, "fuses_lm", False):
        raise RnnkitError(f"--lm applies to speech models (--task transcribe), not {task.name}; "
                          "drop --lm")
    model, vocab, meta = load(checkpoint, device)
    if not isinstance(model, CharLM) or meta["config"]["train"].get("tokenizer") != "char":
        raise RnnkitError(f"{checkpoint} is not a recurrent character language model (rnnkit "
                          "train --task lm --model rnn, the default --tokenizer char); --lm "
                          "scores characters with one")
    return model, vocab


def predict(checkpoint: str | Path, texts: list[str], device: str = "cpu",
            settings: DecodeSettings | None = None, batch_size: int = 64) -> list:
    """Predictions of a pair model, one per input text: seq2seq a list of n-best strings,
    classify a label, tag a list of labels. An empty text gets an empty prediction."""
    model, vocabs, meta = load(checkpoint, device)
    return predict_model(model, vocabs, meta, texts, settings, batch_size)


def predict_model(model, vocabs: dict, meta: dict, texts: list[str],
                  settings: DecodeSettings | None = None, batch_size: int = 64) -> list:
    """``predict`` for a model already loaded (``load`` gives model, vocabs and meta)."""
    task = task_of_kind(meta["kind"])
    if not hasattr(task, "predict_texts"):
        raise RnnkitError(f"this is a {task.name} model, not one of text pairs; use rnnkit "
                          "sample (a language model) or rnnkit predict")
    return task.predict_texts(model, vocabs, meta, texts, settings, batch_size)
