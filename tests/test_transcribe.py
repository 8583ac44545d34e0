"""--task transcribe through the command line: a synthesised corpus is learnt, decoded
greedily, with a beam and with a character language model; bad input is one line."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import rnnkit
from rnnkit.cli import main
from rnnkit.data.speech_synth import synthesize_corpus

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")
SMALL = ["--conv-channels", "16", "--rnn-size", "64", "--num-layers", "2", "--dropout", "0",
         "--batch-size", "8", "--learning-rate", "3e-3", "--warmup-steps", "20",
         "--lr-schedule", "constant"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """48 utterances of number words by a few voices (the val and test voices held out)."""
    out = tmp_path_factory.mktemp("speech") / "corpus"
    synthesize_corpus(out, 48, text="numbers", seed=3, val_voices=1, test_voices=1,
                      snr=(25.0, 30.0), progress=False)
    return out


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "speech"
    code = main(["train", "--task", "transcribe", "--data", str(corpus), "--out", str(run),
                 "--max-steps", "300", "--eval-every", "300", *SMALL])
    assert code == 0
    return run


def eval_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@needs_espeak
@pytest.mark.slow
def test_a_few_synthesised_utterances_are_learnt(trained, corpus, capsys):
    """On its own training utterances a trained model writes most characters right; an
    untrained one writes nothing right (CER 1)."""
    r = eval_json(capsys, str(trained), "--data", str(corpus / "train.tsv"))
    assert r["task"] == "transcribe" and r["split"] == "all" and r["skipped"] == 0
    assert r["cer"] < 0.4, r  # 0.22 when measured; an untrained model 0.97
    assert r["wer"] < 0.9, r
    first = json.loads((trained / "metrics.jsonl").read_text().splitlines()[0])
    assert r["loss"] < first["train_loss"] / 3


@needs_espeak
@pytest.mark.slow
def test_beam_search_and_a_language_model_decode_the_same_model(trained, corpus, tmp_path,
                                                                capsys):
    greedy = eval_json(capsys, str(trained), "--data", str(corpus / "train.tsv"))
    beam = eval_json(capsys, str(trained), "--data", str(corpus / "train.tsv"), "--beam", "4")
    assert beam["cer"] <= greedy["cer"] + 0.05  # the beam holds the greedy path's prefix too
    # a character LM of number words, trained by rnnkit train, fused into the search
    words = [line.split("\t")[1] for line in (corpus / "train.tsv").read_text().splitlines()]
    text = tmp_path / "numbers.txt"
    text.write_text("\n".join(words * 20) + "\n")
    lm = tmp_path / "lm"
    assert main(["train", "--data", str(text), "--out", str(lm), "--max-steps", "150",
                 "--eval-every", "150", "--rnn-size", "64", "--num-layers", "1",
                 "--seq-length", "64", "--batch-size", "16"]) == 0
    fused = eval_json(capsys, str(trained), "--data", str(corpus / "train.tsv"), "--beam", "4",
                      "--lm", str(lm), "--lm-weight", "0.5", "--word-bonus", "0.5")
    assert fused["wer"] <= beam["wer"] + 0.05
    # predict: one transcript per listed file, the same text eval scored
    listing = tmp_path / "wavs.txt"
    listing.write_text("".join(f"{corpus / line.split(chr(9))[0]}\n" for line in
                               (corpus / "train.tsv").read_text().splitlines()[:5]))
    capsys.readouterr()
    assert main(["predict", str(trained), "--input", str(listing), "--beam", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(set(line) <= set("abcdefghijklmnopqrstuvwxyz' ")
                                   for line in lines)
    # the Python API writes the same transcripts
    files = listing.read_text().splitlines()
    assert rnnkit.transcribe(trained, files, beam=4) == lines


@needs_espeak
def test_the_lm_must_be_a_character_language_model(trained, capsys):
    code = main(["eval", str(trained), "--lm", str(trained)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a recurrent character language" in err


# -- bad input ------------------------------------------------------------------------------

def tone(path: Path, seconds: float = 1.0, rate: int = 16000, amplitude: float = 0.3) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def speech_tsv(folder: Path, rows: list[tuple[str, str]]) -> Path:
    path = folder / "list.tsv"
    path.write_text("".join(f"{a}\t{t}\n" for a, t in rows))
    return path


def train_fails(capsys, data: Path, out: Path, *extra) -> str:
    code = main(["train", "--task", "transcribe", "--data", str(data), "--out", str(out),
                 "--max-steps", "2", *SMALL, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("rnnkit: error:"), err
    assert not out.exists()
    return err


def test_a_missing_audio_file_names_its_tsv_line(tmp_path, capsys):
    tone(tmp_path / "a.wav")
    data = speech_tsv(tmp_path, [("a.wav", "ab"), ("gone.wav", "ba")])
    err = train_fails(capsys, data, tmp_path / "run")
    assert "list.tsv line 2" in err and "gone.wav" in err


def test_a_sample_rate_of_zero_names_its_tsv_line(tmp_path, capsys):
    tone(tmp_path / "a.wav")
    raw = bytearray((tmp_path / "a.wav").read_bytes())
    raw[24:28] = struct.pack("<I", 0)  # the fmt chunk's sample rate
    (tmp_path / "zero.wav").write_bytes(bytes(raw))
    data = speech_tsv(tmp_path, [("a.wav", "ab"), ("zero.wav", "ba")])
    err = train_fails(capsys, data, tmp_path / "run")
    assert "list.tsv line 2" in err


def test_characters_the_model_cannot_write_are_one_line(tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("".join(f"{tone(tmp_path / f'{i}.wav').name}\tab\n"
                                                for i in range(3)))
    (tmp_path / "val.tsv").write_text("0.wav\tba\n")
    run = tmp_path / "run"
    assert main(["train", "--task", "transcribe", "--data", str(tmp_path), "--out", str(run),
                 "--max-steps", "2", *SMALL]) == 0
    (tmp_path / "other.tsv").write_text("0.wav\taé\n")
    capsys.readouterr()
    code = main(["eval", str(run), "--data", str(tmp_path / "other.tsv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'é'" in err


def test_a_folder_without_train_and_val_files_is_one_line(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    err = train_fails(capsys, tmp_path / "corpus", tmp_path / "run")
    assert "train.tsv and val.tsv" in err


def test_silent_and_too_short_utterances_are_skipped_and_counted(tmp_path, capsys):
    rows = [(tone(tmp_path / f"{i}.wav").name, "abab") for i in range(6)]
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    tone(tmp_path / "short.wav", seconds=0.05)  # 6 frames: 2 output steps for 4 labels
    rows += [("silent.wav", "ab"), ("short.wav", "abab")]
    (tmp_path / "train.tsv").write_text("".join(f"{a}\t{t}\n" for a, t in rows))
    (tmp_path / "val.tsv").write_text(f"{rows[0][0]}\tabab\n")
    run = tmp_path / "run"
    assert main(["train", "--task", "transcribe", "--data", str(tmp_path), "--out", str(run),
                 "--max-steps", "2", *SMALL]) == 0
    err = capsys.readouterr().err
    assert "train: 2 utterances skipped: 1 silent" in err and "1 too short" in err
    assert "train.tsv line 7" in err and "train.tsv line 8" in err
    meta = json.loads((run / "best.json").read_text()) if (run / "best.json").exists() else None
    r = eval_json(capsys, str(run), "--data", str(tmp_path / "train.tsv"))
    assert r["examples"] == 6 and r["skipped"] == 2, (r, meta)


def test_npz_features_train_and_bad_arrays_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 40, 16)).astype(np.float32)
    good = tmp_path / "feats.npz"
    np.savez(good, features=feats, lengths=np.full(12, 40), transcripts=np.array(["ab"] * 12))
    assert main(["train", "--task", "transcribe", "--data", str(good), "--out",
                 str(tmp_path / "ok"), "--max-steps", "2", "--val-frac", "0.25", *SMALL]) == 0
    capsys.readouterr()
    for name, arrays, needle in (
            ("nolen", {"features": feats, "transcripts": np.array(["a"] * 12)}, "'lengths'"),
            ("shape", {"features": feats[0], "lengths": np.full(12, 40),
                       "transcripts": np.array(["a"] * 12)}, "(N, T, D)"),
            ("count", {"features": feats, "lengths": np.full(11, 40),
                       "transcripts": np.array(["a"] * 12)}, "one of each"),
            ("range", {"features": feats, "lengths": np.full(12, 41),
                       "transcripts": np.array(["a"] * 12)}, "between 1 and 40"),
            ("nan", {"features": feats * np.nan, "lengths": np.full(12, 40),
                     "transcripts": np.array(["a"] * 12)}, "NaN")):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        err = train_fails(capsys, tmp_path / f"{name}.npz", tmp_path / f"run_{name}")
        assert needle in err, (name, err)


def test_transcribe_needs_data(tmp_path, capsys):
    code = main(["train", "--task", "transcribe", "--out", str(tmp_path / "run")])
    assert code == 2 and "needs --data" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
