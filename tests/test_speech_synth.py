"""rnnkit data speech: the corpus folder, its splits (held-out voices, held-out text), its
determinism, the noise's SNR, and every bad input refused before anything is written."""

from __future__ import annotations

import json
import re
import shutil
import wave

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data import speech_synth
from rnnkit.data.shakespeare import tinyshakespeare_bytes
from rnnkit.errors import RnnkitError

from .test_cli import error_of

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")
SPLITS = ("train", "val", "test")


def make(folder, n=16, seed=1, *extra) -> dict:
    assert main(["data", "speech", "--out", str(folder), "--utterances", str(n), "--seed",
                 str(seed), *extra]) == 0
    return json.loads((folder / "corpus.json").read_text())


def rows(folder, split) -> list[tuple[str, str]]:
    lines = (folder / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech") / "corpus"
    return folder, make(folder)


# -- the folder -----------------------------------------------------------------------------------

@needs_espeak
def test_every_row_is_a_wav_and_a_normalised_transcript(corpus, capsys):
    folder, info = corpus
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.json", "test.tsv", "train.tsv",
                                                         "val.tsv", "wav"]
    for split in SPLITS:
        table = rows(folder, split)
        assert len(table) == info["utterances"][split] > 0
        for path, transcript in table:
            assert re.fullmatch(r"[a-z']+( [a-z']+)+", transcript), transcript
            with wave.open(str(folder / path), "rb") as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
                samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            assert len(samples) > 22050 // 4 and np.all(np.isfinite(samples)) and samples.any()
    assert sum(info["utterances"].values()) == 16 == len(list((folder / "wav").iterdir()))
    assert info["sample_rate"] == 22050 and info["seed"] == 1
    assert info["command"].startswith("rnnkit data speech --out ")


@needs_espeak
def test_val_and_test_voices_and_text_are_held_out(corpus):
    folder, info = corpus
    voices = {s: set(info["voices"][s]) for s in SPLITS}
    assert len(voices["val"]) == len(voices["test"]) == 6 and len(voices["train"]) > 12
    assert not voices["train"] & voices["val"] and not voices["train"] & voices["test"]
    assert not voices["val"] & voices["test"]
    text = tinyshakespeare_bytes().decode()
    cut = round(len(text) * 0.9)  # rnnkit train's default split of tinyshakespeare
    head = {speech_synth.normalise(line) for line in text[:cut].splitlines()}
    tail = {speech_synth.normalise(line) for line in text[cut:].splitlines()}
    for split, lines in (("train", head), ("val", tail), ("test", tail)):
        for _, transcript in rows(folder, split):
            assert transcript in lines, (split, transcript)


def test_each_split_speaks_only_its_own_voices():
    rng = np.random.default_rng(0)
    voices = [f"en-us+m{i}" for i in range(1, 8)] + [f"en-gb+f{i}" for i in range(1, 6)]
    by_split = speech_synth.split_voices(voices, 2, 3, rng)
    assert [len(by_split[s]) for s in SPLITS] == [7, 2, 3]
    assert sorted(sum(by_split.values(), [])) == sorted(voices)
    sentences = {s: ["a b"] * 50 for s in SPLITS}
    for utt in speech_synth.plan(sentences, by_split, (10, 30), rng):
        assert utt.voice in by_split[utt.split]
        assert 10 <= utt.snr_db <= 30 and utt.noise in speech_synth.NOISES


# -- determinism ----------------------------------------------------------------------------------

@needs_espeak
def test_a_seed_makes_the_same_corpus_and_another_seed_another(corpus, tmp_path):
    folder, _ = corpus
    again, other = tmp_path / "again", tmp_path / "other"
    make(again)
    make(other, 16, 2)
    for split in SPLITS:
        assert (again / f"{split}.tsv").read_bytes() == (folder / f"{split}.tsv").read_bytes()
    wav = rows(folder, "val")[0][0]
    assert (again / wav).read_bytes() == (folder / wav).read_bytes()
    assert (other / "train.tsv").read_bytes() != (folder / "train.tsv").read_bytes()
    assert (other / wav).read_bytes() != (folder / wav).read_bytes()


# -- noise ----------------------------------------------------------------------------------------

@needs_espeak
@pytest.mark.parametrize("color", speech_synth.NOISES)
def test_noise_is_added_at_the_requested_snr(tmp_path, color):
    utt = speech_synth.Utterance(0, "train", "now is the winter of our discontent", "en-us+m3",
                                 160, 50, color, 0.0)
    clean, rate = speech_synth.speak(shutil.which("espeak-ng"), utt, tmp_path / "a.wav")
    assert rate == 22050 and len(clean) > rate
    for asked in (5.0, 20.0):
        noisy = speech_synth.add_noise(clean, asked, np.random.default_rng(3), color)
        assert abs(speech_synth.snr_db(clean, noisy) - asked) < 1.0
    # and in the file as written: 16-bit rounding and any scaling keep it
    speech_synth.write_wav(tmp_path / "b.wav", noisy, rate)
    written, _ = speech_synth.read_wav(tmp_path / "b.wav")
    scale = np.dot(written, clean) / np.dot(clean, clean)  # undo write_wav's scaling, if any
    assert abs(speech_synth.snr_db(clean * scale, written) - 20.0) < 1.0


def test_pink_noise_has_more_power_low_than_high():
    x = speech_synth.noise(1 << 14, "pink", np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    assert abs(np.mean(x ** 2) - 1) < 1e-9
    assert power[1:200].mean() > 20 * power[-2000:].mean()


# -- text -----------------------------------------------------------------------------------------

def test_normalise_keeps_letters_apostrophes_and_single_spaces():
    assert speech_synth.normalise("  KING RICHARD III:  'Tis  to-morrow, Café!") == \
        "king richard iii 'tis to morrow cafe"
    assert speech_synth.normalise("' -- 42 '") == ""


def test_number_words():
    cases = {0: "zero", 7: "seven", 40: "forty", 312: "three hundred and twelve",
             1005: "one thousand and five", 9999: "nine thousand nine hundred and ninety nine",
             2100: "two thousand one hundred"}
    assert {n: speech_synth.number_words(n) for n in cases} == cases


@needs_espeak
def test_numbers_text_speaks_number_words(tmp_path):
    info = make(tmp_path / "numbers", 12, 1, "--text", "numbers")
    allowed = set(speech_synth.ONES + speech_synth.TENS[2:] + ["hundred", "thousand", "and"])
    said = [t for s in SPLITS for _, t in rows(tmp_path / "numbers", s)]
    assert len(said) == 12 and info["text"]["source"] == "numbers"
    assert all(set(t.split()) <= allowed for t in said), said


def test_a_text_file_is_split_by_position():
    lines = [f"line {speech_synth.number_words(i)}\n" for i in range(100)]
    text = "".join(lines[:95]) + "SPEAKER ONE:\n" + "".join(lines[95:]) + "one\n"
    train, held_out = speech_synth.text_sentences(text, 3)
    cut = round(len(text) * 0.9)
    assert train == [speech_synth.normalise(x) for x in lines if text.index(x) + len(x) <= cut]
    assert held_out == [speech_synth.normalise(x) for x in lines if text.index(x) >= cut]
    assert len(train) + len(held_out) >= 98 and len(held_out) >= 5  # at most one line across
    assert "speaker one" not in held_out  # a speaker's name is no sentence


# -- bad input ------------------------------------------------------------------------------------

BAD = {
    "too few utterances": (["--utterances", "2"], "--utterances must be between 3"),
    "too many utterances": (["--utterances", "2000000"], "--utterances must be between 3"),
    "SNR range upside down": (["--snr-min", "30", "--snr-max", "10"], "--snr-min 30.0"),
    "SNR not a number": (["--snr-min", "nan"], "are not a range of dB"),
    "unknown text file": (["--text", "no/such.txt"], "text file 'no/such.txt' not found"),
    "too many held-out voices": (["--val-voices", "50", "--test-voices", "50"],
                                 "leave training some of the"),
    "held-out fraction": (["--val-frac", "0.7"], "--val-frac must be above 0"),
    "max words": (["--max-words", "1"], "--max-words must be between 2"),
}


@needs_espeak
@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags, message = BAD[name]
    argv = ["data", "speech", "--out", str(tmp_path / "out" / "corpus"), "--utterances", "10"]
    assert message in error_of(capsys, [*argv, *flags])
    assert list(tmp_path.iterdir()) == []


def test_missing_espeak_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(speech_synth.shutil, "which", lambda name: None)
    err = error_of(capsys, ["data", "speech", "--out", str(tmp_path / "c"), "--utterances",
                            "10"])
    assert "apt-get install espeak-ng" in err and "brew install espeak-ng" in err
    assert list(tmp_path.iterdir()) == []


@needs_espeak
def test_an_existing_folder_is_never_overwritten(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert "not empty" in error_of(capsys, ["data", "speech", "--out", str(full),
                                            "--utterances", "10"])
    (tmp_path / "file").write_text("mine")
    assert "is not a folder" in error_of(capsys, ["data", "speech", "--out",
                                                  str(tmp_path / "file"), "--utterances", "10"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is taken
    make(empty, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "full"]


@needs_espeak
@pytest.mark.parametrize("failure", [RnnkitError("espeak-ng made no audio"), KeyboardInterrupt])
def test_a_failure_midway_leaves_no_folder(failure, tmp_path, capsys, monkeypatch):
    speak = speech_synth.speak

    def speak_or_fail(exe, utt, path):
        if utt.index == 5:
            raise failure
        return speak(exe, utt, path)

    monkeypatch.setattr(speech_synth, "speak", speak_or_fail)
    code = main(["data", "speech", "--out", str(tmp_path / "c"), "--utterances", "12"])
    assert code == (2 if isinstance(failure, RnnkitError) else 130)
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert "espeak-ng made no audio" in err or "interrupted" in err
