"""Why outputs must be fed back as inputs: autoregressive vs independent sampling.

Two models learn the same few sentences in lines mode, as sequences of words (the lecture's
example; spaces are tokens too) or of characters. The autoregressive one reads its own
previous token at every step. The independent one (``CharLMConfig.feedback=False``) reads
only the start token and then a blank, so at every position it can only learn the marginal
distribution of tokens there. Each of its per-step distributions is right, yet sampling them
independently mixes the sentences: "I think machine ..." instead of a real sentence.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..api import configs, sample
from ..data.tokenizers import WORD
from ..errors import RnnkitError
from ..training.loop import train

LECTURE_SENTENCES = ["I think therefore I am", "I like machine learning",
                     "I am not just a neural network"]
TOKENS = {"words": "word", "chars": "char"}  # --tokens: the tokenizer it trains with


def read_sentences(path: str | None) -> list[str]:
    if path is None:
        return LECTURE_SENTENCES
    p = Path(path)
    if not p.is_file():
        raise RnnkitError(f"sentences file {path!r} not found; give a text file, one per line")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < 2:
        raise RnnkitError(f"{path} needs at least two non-empty lines (one sentence each)")
    return lines


def train_and_sample(sentences: list[str], feedback: bool, samples: int, seed: int,
                     workdir: Path, tokens: str = "words") -> list[str]:
    data = workdir / "sentences.txt"
    # twice each: the word tokenizer keeps the words it sees more than once (the rest it
    # spells in characters); the same lines twice change no distribution
    copies = 2 if tokens == "words" else 1
    data.write_text("\n".join(sentences * copies) + "\n", encoding="utf-8")
    longest = max(len(WORD.findall(s)) if tokens == "words" else len(s) for s in sentences)
    model_cfg, cfg = configs(
        model={"hidden_size": 64, "embed_size": 16, "num_layers": 1, "feedback": feedback},
        train={"data": str(data), "mode": "lines", "tokenizer": TOKENS[tokens],
               "batch_size": min(len(sentences), 16), "seq_length": longest + 1,
               "val_frac": 0.0, "test_frac": 0.0, "max_steps": 1000, "eval_every": 1000,
               "learning_rate": 2e-2, "warmup_steps": 10, "seed": seed, "sample_length": 1})
    out = workdir / ("autoregressive" if feedback else "independent")
    train(model_cfg, cfg, out, log=lambda msg: None)
    return sample(out, length=longest * 2, num_samples=samples, seed=seed, temperature=1.0)


def structured_prediction(sentences_file: str | None = None, samples: int = 100,
                          seed: int = 1337, examples: int = 5, tokens: str = "words") -> dict:
    """Train both models over ``tokens`` ("words" or "chars"), sample ``samples`` sentences
    from each, report the valid fractions."""
    if samples < 1:
        raise RnnkitError(f"--samples must be >= 1, got {samples}")
    if tokens not in TOKENS:
        raise RnnkitError(f"--tokens must be one of {', '.join(TOKENS)}, got {tokens!r}")
    sentences = read_sentences(sentences_file)
    report = {"sentences": sentences, "samples": samples, "tokens": tokens}
    with tempfile.TemporaryDirectory(prefix="rnnkit_demo_") as tmp:
        for name, feedback in (("autoregressive", True), ("independent", False)):
            drawn = train_and_sample(sentences, feedback, samples, seed, Path(tmp), tokens)
            valid = sum(s in sentences for s in drawn)
            report[f"{name}_valid_fraction"] = valid / samples
            report[f"{name}_examples"] = drawn[:examples]
    return report
