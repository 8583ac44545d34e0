"""Bidirectional vs unidirectional speech recognition (CTC) on held-out voices, with and
without a character language model.

    python examples/speech_bidirectional.py --out runs/speech          # about 25 minutes
    python examples/speech_bidirectional.py --out runs/speech --save   # also keep the JSON

The lecture motivates bidirectional RNNs with speech: what a sound is depends on what comes
after it. This measures it. A corpus is synthesised with espeak-ng (``rnnkit data speech``:
number words, or lines of tinyshakespeare, spoken by many voices, with noise; the val and test
voices are never heard in training). Two transcribers with the same front end and about the
same number of parameters are trained for the same wall-clock time: a bidirectional LSTM stack and a
unidirectional one (wider, to match the parameters). Each is scored on the test voices with
greedy decoding, with a CTC prefix beam search, and with the beam search fused with a
character language model trained by ``rnnkit train`` on text like the transcripts that holds
none of the test sentences (number words of other numbers; or the first 90% of
tinyshakespeare, lowercased like the transcripts, where the test lines come from the last
10%). The LM's weight and word bonus are chosen on the val voices.

Synthetic speech is far easier than real speech: read these numbers as a comparison of the
two directions, not as what the models would do on recordings of people.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import rnnkit
from rnnkit.cli import main as rnnkit_main
from rnnkit.data.shakespeare import tinyshakespeare_bytes
from rnnkit.data.speech import Labels
from rnnkit.data.speech_synth import MAX_NUMBER, normalise, number_words
from rnnkit.examples_support import provenance, train_timed
from rnnkit.fileio import save_results
from rnnkit.models.transcriber import Transcriber, TranscriberConfig

RESULTS = Path(__file__).resolve().parent / "results" / "speech_bidirectional.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/speech")
    p.add_argument("--text", choices=("numbers", "shakespeare"), default="numbers",
                   help="what is said: number words (learnt in minutes on a CPU) or lines of "
                        "tinyshakespeare (an hour or more of training, a GPU's task)")
    p.add_argument("--utterances", type=int, default=3000, help="utterances synthesised")
    p.add_argument("--seconds", type=float, default=300.0,
                   help="training time of each transcriber")
    p.add_argument("--hidden", type=int, default=96,
                   help="units per direction of the bidirectional stack")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--conv-channels", type=int, default=16)
    p.add_argument("--lm-steps", type=int, default=400, help="training steps of the LM")
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", action="store_true", help=f"also write {RESULTS}")
    return p.parse_args(argv)


def corpus(args, out: Path) -> Path:
    folder = out / "corpus"
    if not (folder / "corpus.json").is_file():
        code = rnnkit_main(["data", "speech", "--out", str(folder), "--utterances",
                            str(args.utterances), "--seed", str(args.seed), "--text", args.text])
        if code:
            raise SystemExit(code)
    return folder


def lm_text(args, out: Path) -> Path:
    """Text like the transcripts, one per line, that holds no test sentence: number words of
    other random numbers, or tinyshakespeare's first 90% (normalised; the test sentences come
    from the last 10%)."""
    if args.text == "numbers":
        rng = np.random.default_rng(args.seed + 1)
        lines = [number_words(int(n)) for n in rng.integers(0, MAX_NUMBER + 1, 50_000)]
    else:
        text = tinyshakespeare_bytes().decode("utf-8")
        lines = [normalise(line) for line in text[:round(len(text) * 0.9)].splitlines()]
    path = out / "lm_text.txt"
    path.write_text("".join(line + "\n" for line in lines if line))
    return path


def params(args, hidden: int, bidirectional: bool, vocab: int) -> int:
    cfg = TranscriberConfig(vocab_size=vocab, feature_size=80, hidden_size=hidden,
                            num_layers=args.layers, conv_channels=args.conv_channels,
                            bidirectional=bidirectional)
    return sum(p.numel() for p in Transcriber(cfg).parameters())


def matched_hidden(args, vocab: int) -> int:
    """The unidirectional width whose parameter count is closest to the bidirectional's."""
    target = params(args, args.hidden, True, vocab)
    return min(range(args.hidden, 4 * args.hidden),
               key=lambda h: abs(params(args, h, False, vocab) - target))


def train_transcriber(args, data: Path, run: Path, hidden: int, bidirectional: bool) -> dict:
    model_cfg, cfg = rnnkit.configs(
        model={"hidden_size": hidden, "num_layers": args.layers, "bidirectional": bidirectional,
               "conv_channels": args.conv_channels, "spec_augment": True},
        train={"task": "transcribe", "data": str(data), "batch_size": 32,
               "learning_rate": 3e-3, "max_steps": 100_000, "max_time": args.seconds,
               "warmup_steps": 50, "eval_every": 100, "eval_examples": 100,
               "seed": args.seed})
    metrics, seconds = train_timed(model_cfg, cfg, run, quiet=True)
    return {"steps": metrics["step"], "train_seconds": round(seconds, 1)}


def scores(run: Path, lm: Path, beam: int, fusion: dict, split: str) -> dict:
    out = {}
    for name, kw in (("greedy", {}), ("beam", {"beam": beam}),
                     ("beam_lm", {"beam": beam, "lm": lm, **fusion})):
        r = rnnkit.evaluate(run, split=split, **kw)
        out[name] = {"cer": round(r["cer"], 4), "wer": round(r["wer"], 4)}
    return out


def tune_fusion(run: Path, lm: Path, beam: int) -> dict:
    """The LM weight and word bonus with the lowest WER on the val voices."""
    tried = {}
    for weight in (0.3, 0.6, 1.0):
        for bonus in (0.0, 1.0, 2.0):
            r = rnnkit.evaluate(run, split="val", beam=beam, lm=lm, lm_weight=weight,
                                word_bonus=bonus)
            tried[(weight, bonus)] = r["wer"]
    weight, bonus = min(tried, key=tried.get)
    return {"lm_weight": weight, "word_bonus": bonus}


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = corpus(args, out)
    synth_seconds = time.perf_counter() - t0
    lm_cfg = rnnkit.configs(model={"hidden_size": 256, "num_layers": 1},
                            train={"data": str(lm_text(args, out)), "val_frac": 0.05,
                                   "test_frac": 0.0, "max_steps": args.lm_steps,
                                   "eval_every": args.lm_steps, "seed": args.seed})
    lm_metrics, lm_seconds = train_timed(*lm_cfg, out / "lm", quiet=True)
    vocab = len(Labels.of([line.split("\t")[1] for line in
                           (data / "train.tsv").read_text().splitlines()]))
    uni_hidden = matched_hidden(args, vocab)
    runs = {"bidirectional": (args.hidden, True), "unidirectional": (uni_hidden, False)}
    results = {}
    for name, (hidden, bidirectional) in runs.items():
        info = train_transcriber(args, data, out / name, hidden, bidirectional)
        fusion = tune_fusion(out / name, out / "lm", args.beam)
        results[name] = {"hidden_size": hidden, "num_layers": args.layers,
                         "parameters": params(args, hidden, bidirectional, vocab),
                         **info, "fusion": fusion,
                         "test": scores(out / name, out / "lm", args.beam, fusion, "test")}
    bi, uni = results["bidirectional"]["test"], results["unidirectional"]["test"]
    summary = {
        "test_cer_reduction_bidirectional_vs_unidirectional":
            {k: round(1 - bi[k]["cer"] / uni[k]["cer"], 3) for k in bi},
        "test_wer_change_from_lm": {n: round(r["test"]["beam_lm"]["wer"]
                                              - r["test"]["beam"]["wer"], 4)
                                    for n, r in results.items()},
    }
    corpus_info = json.loads((data / "corpus.json").read_text())
    save_results({"args": vars(args), "results": results, "summary": summary,
                  "lm": {"val_loss": round(lm_metrics.get("val_loss", float("nan")), 4),
                         "train_seconds": round(lm_seconds, 1)},
                  "corpus": {k: corpus_info[k] for k in corpus_info
                             if k in ("counts", "hours", "voices", "snr_db", "text")},
                  "synthesis_seconds": round(synth_seconds, 1),
                  "provenance": provenance("examples/speech_bidirectional.py")},
                 out / "results.json", RESULTS if args.save else None, echo=False)
    print(json.dumps({"results": results, "summary": summary}, indent=2))
    return summary


if __name__ == "__main__":
    main()
