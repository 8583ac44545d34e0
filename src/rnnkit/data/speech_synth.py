"""A synthetic speech corpus: sentences spoken by espeak-ng in many voices, with noise added.

``synthesize_corpus(out, utterances, ...)`` writes the folder that ``--task transcribe`` reads::

    OUT/train.tsv  OUT/val.tsv  OUT/test.tsv   audio_path<TAB>transcript (paths relative to OUT)
    OUT/wav/000000.wav ...                     16-bit PCM mono WAV at espeak-ng's rate (22050 Hz)
    OUT/corpus.json                            what was generated, and how

The sentences are lines of tinyshakespeare (or of a text file, or number words), lowercased to
letters, apostrophes and single spaces. Train sentences come only from the first 90% of the
text and val/test ones only from the last 10%, where the default split of ``rnnkit train``
puts them too: a character model of the same text can then help decode val/test without ever
having seen their sentences. A voice is an espeak-ng English accent with one of its variants
(en-us+m3, en-gb-scotland+f2 ...); some voices are kept for val only and some for test only,
so both measure how a model does on voices it never heard. Each utterance gets its own speed,
pitch and white or pink noise at a random signal-to-noise ratio.

Be warned that this is far easier than real speech. A formant synthesizer says a word the same
way every time, with no coarticulation across speakers, no reverberation, no hesitations and
no accents beyond its few rule sets; a model that does well here has learned espeak-ng, and
says little about recordings of people. It is a corpus for checking that a speech model and
its training work end to end, on a laptop, without a download.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import wave
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import RnnkitError
from ..fileio import input_file
from ..version import __version__
from .shakespeare import tinyshakespeare_bytes

INSTALL_HINT = ("install espeak-ng (apt-get install espeak-ng on Debian/Ubuntu, "
                "brew install espeak-ng on macOS)")
# espeak-ng's own English accents (mbrola voices need extra packages, so none is used) ...
LANGUAGES = ("en-us", "en-us-nyc", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
             "en-gb-x-gbcwmd", "en-029")
# ... crossed with its plain male and female variants (the others are effects: whisper, croak)
VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))
SPEED_WPM = (130, 200)  # espeak-ng -s, words per minute (its default is 175)
PITCH = (30, 70)  # espeak-ng -p, 0..99 (its default is 50)
NOISES = ("white", "pink")
HELD_OUT_FRAC = 0.1  # the end of the text that val/test sentences come from
MIN_WORDS = 2
MAX_UTTERANCES = 1_000_000
MAX_NUMBER = 9999
TEXTS = ("shakespeare", "numbers")  # or a file
ESPEAK_TIMEOUT_S = 120


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: what is said, by whom, how, and the noise put over it."""

    index: int
    split: str
    text: str
    voice: str
    speed: int
    pitch: int
    noise: str
    snr_db: float


# -- espeak-ng ------------------------------------------------------------------------------------

def find_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RnnkitError(f"espeak-ng was not found on PATH; {INSTALL_HINT}")
    return exe


def espeak_output(exe: str, *argv: str) -> str:
    done = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RnnkitError(f"espeak-ng {' '.join(argv)} failed (exit {done.returncode}); "
                          f"check the install, or reinstall: {INSTALL_HINT}")
    return done.stdout


def espeak_languages(listing: str) -> list[str]:
    """The accents of LANGUAGES that ``espeak-ng --voices=en`` lists as its own voices."""
    found = set()
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("gmw/"):  # gmw/: espeak's own, not mbrola
            found.add(cols[1])
    return [lang for lang in LANGUAGES if lang in found]


def espeak_variants(version_line: str) -> list[str]:
    """The VARIANTS whose files are in espeak-ng's data folder (``--version`` names it)."""
    m = re.search(r"Data at:\s*(.+?)\s*$", version_line)
    folder = Path(m.group(1)) / "voices" / "!v" if m else None
    if folder is None or not folder.is_dir():
        raise RnnkitError(f"espeak-ng's voice variants were not found (no voices/!v folder "
                          f"beside its data); reinstall it: {INSTALL_HINT}")
    return [v for v in VARIANTS if (folder / v).is_file()]


def available_voices(exe: str) -> list[str]:
    """Every accent+variant this espeak-ng has, e.g. ``en-us+m3``, in a fixed order."""
    languages = espeak_languages(espeak_output(exe, "--voices=en"))
    variants = espeak_variants(espeak_output(exe, "--version"))
    return [f"{lang}+{v}" for lang in languages for v in variants]


def speak(exe: str, utt: Utterance, path: Path) -> tuple[np.ndarray, int]:
    """espeak-ng says ``utt.text`` into ``path``; returns the samples (floats in [-1, 1])
    and their rate."""
    argv = [exe, "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "-w", str(path),
            "--", utt.text]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RnnkitError(f"espeak-ng took over {ESPEAK_TIMEOUT_S} s on utterance {utt.index} "
                          f"({utt.voice}, {utt.text!r}); check that espeak-ng -v {utt.voice} "
                          "hello works") from None
    why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    samples, rate = read_wav(path) if done.returncode == 0 and path.is_file() else (None, 0)
    if samples is None or not np.any(samples):
        raise RnnkitError(f"espeak-ng made no audio for utterance {utt.index} ({utt.voice}, "
                          f"{utt.text!r}): {why}; check that espeak-ng -v {utt.voice} hello "
                          "works")
    return samples, rate


# -- WAV files ------------------------------------------------------------------------------------

def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit mono WAV as floats in [-1, 1], and its sample rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise RnnkitError(f"{path} is not 16-bit mono; espeak-ng should write that")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.astype(np.float64) / 32768.0, w.getframerate()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Floats to 16-bit PCM, scaled down as a whole if the noise took them past full scale
    (scaling speech and noise together keeps their ratio)."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 0.98:
        samples = samples * (0.98 / peak)
    pcm = np.round(samples * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


# -- noise ----------------------------------------------------------------------------------------

def noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of white or pink (power falling as 1/f) noise, of mean power 1."""
    x = rng.standard_normal(n)
    if color == "pink":
        spectrum = np.fft.rfft(x)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0  # keep the mean (near zero anyway) instead of dividing by zero
        x = np.fft.irfft(spectrum / np.sqrt(f), n)
    elif color != "white":
        raise ValueError(f"unknown noise {color!r}; choose one of {', '.join(NOISES)}")
    x -= x.mean()
    return x / np.sqrt(np.mean(x ** 2))


def add_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator,
              color: str = "white") -> np.ndarray:
    """``signal`` plus noise whose power is the signal's mean power over ``snr_db`` dB.

    The signal's power is measured over the whole utterance, espeak-ng's short silences at
    either end included, so the ratio is that of the file as a listener gets it."""
    power = float(np.mean(signal ** 2))
    return signal + noise(len(signal), color, rng) * np.sqrt(power / 10 ** (snr_db / 10))


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The signal-to-noise ratio of ``noisy`` against the ``clean`` signal, in dB."""
    return float(10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2)))


# -- sentences ------------------------------------------------------------------------------------

def normalise(line: str) -> str:
    """Lowercase letters, apostrophes and single spaces: what a transcript may hold.

    Accents are dropped (café -> cafe), other characters become spaces (to-morrow -> to
    morrow), and a lone apostrophe (a quotation mark) is no word."""
    text = unicodedata.normalize("NFKD", line.lower())
    text = re.sub(r"[^a-z' ]", " ", "".join(c for c in text if not unicodedata.combining(c)))
    return " ".join(w for w in text.split() if w.strip("'"))


def text_sentences(text: str, max_words: int,
                   held_out_frac: float = HELD_OUT_FRAC) -> tuple[list[str], list[str]]:
    """The lines of ``text`` with MIN_WORDS..max_words words, normalised, without repeats:
    those wholly in its first 1 - held_out_frac (for train), and those wholly after (val/test).

    The cut is by characters, as ``rnnkit train`` cuts a character model's text; a line
    across it is used by neither. Lines ending in ':' are headings (a play's speaker names),
    not speech, and are left out."""
    cut = round(len(text) * (1 - held_out_frac))
    train, held_out, start = {}, {}, 0
    for line in text.splitlines(keepends=True):
        end = start + len(line)
        sentence = normalise(line)
        if (MIN_WORDS <= len(sentence.split()) <= max_words
                and not line.rstrip().endswith(":")):
            if end <= cut:
                train[sentence] = None
            elif start >= cut:
                held_out[sentence] = None
        start = end
    return list(train), list(held_out)


ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """``n`` (0..999999) in British English words: 312 -> three hundred and twelve."""
    if not 0 <= n <= 999_999:
        raise ValueError(f"number_words takes 0..999999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    joint = " and " if 0 < rest < 100 else " "  # one thousand and five
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else joint +
                                                     number_words(rest))


def random_numbers(count: int, rng: np.random.Generator) -> list[str]:
    """Number words of 0..MAX_NUMBER, with as many 1-digit as 4-digit numbers: a uniform
    draw would make nine in ten of them thousands."""
    digits = rng.integers(1, len(str(MAX_NUMBER)) + 1, size=count)
    lows = np.where(digits == 1, 0, 10 ** (digits - 1))
    return [number_words(int(rng.integers(lo, 10 ** d))) for lo, d in zip(lows, digits)]


def draw(pool: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` sentences of ``pool``: each once, in random order, before any is repeated."""
    out: list[str] = []
    while len(out) < count:
        out += [pool[i] for i in rng.permutation(len(pool))[:count - len(out)]]
    return out


# -- the plan -------------------------------------------------------------------------------------

def split_counts(utterances: int, val_frac: float, test_frac: float) -> dict[str, int]:
    """Utterances per split: val and test a fraction each (at least one), train the rest."""
    val = max(1, round(utterances * val_frac))
    test = max(1, round(utterances * test_frac))
    return {"train": utterances - val - test, "val": val, "test": test}


def split_voices(voices: list[str], val: int, test: int,
                 rng: np.random.Generator) -> dict[str, list[str]]:
    """``val`` and ``test`` voices drawn at random for those splits alone; train has the rest."""
    order = [voices[i] for i in rng.permutation(len(voices))]
    return {"train": sorted(order[val + test:]), "val": sorted(order[:val]),
            "test": sorted(order[val:val + test])}


def plan(sentences: dict[str, list[str]], voices: dict[str, list[str]],
         snr: tuple[float, float], rng: np.random.Generator) -> list[Utterance]:
    """Every utterance's text, voice, speed, pitch and noise, train first, then val, test.

    All the randomness is drawn here, in one order, so a seed gives the same corpus however
    the threads that speak it are scheduled."""
    plans = []
    for split, texts in sentences.items():
        for text in texts:
            plans.append(Utterance(
                index=len(plans), split=split, text=text,
                voice=voices[split][int(rng.integers(len(voices[split])))],
                speed=int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1)),
                pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
                noise=NOISES[int(rng.integers(len(NOISES)))],
                snr_db=round(float(rng.uniform(*snr)), 2)))
    return plans


# -- checks, before anything is written ----------------------------------------------------------

def check_request(out: Path, utterances: int, val_frac: float, test_frac: float,
                  max_words: int, snr: tuple[float, float], workers: int) -> None:
    if not 3 <= utterances <= MAX_UTTERANCES:
        raise RnnkitError(f"--utterances must be between 3 and {MAX_UTTERANCES:,} (one for "
                          f"each split at least), got {utterances}")
    for flag, frac in (("--val-frac", val_frac), ("--test-frac", test_frac)):
        if not 0 < frac < 0.5:
            raise RnnkitError(f"{flag} must be above 0 and below 0.5, got {frac}")
    if split_counts(utterances, val_frac, test_frac)["train"] < 1:
        raise RnnkitError(f"--val-frac and --test-frac leave no training utterance out of "
                          f"{utterances}; ask for more --utterances")
    if not MIN_WORDS <= max_words <= 100:
        raise RnnkitError(f"--max-words must be between {MIN_WORDS} and 100, got {max_words}")
    low, high = snr
    if not (np.isfinite(low) and np.isfinite(high) and -20 <= low <= high <= 100):
        raise RnnkitError(f"--snr-min {low} and --snr-max {high} are not a range of dB in "
                          "-20..100 with min <= max; e.g. --snr-min 10 --snr-max 30")
    if not 1 <= workers <= 64:
        raise RnnkitError(f"--workers must be between 1 and 64, got {workers}")
    check_out(out)


def check_out(out: Path) -> None:
    """Never overwrite: ``out`` must not exist, or be an empty folder."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RnnkitError(f"--out {out} exists and is not a folder; choose a new path")
    if out.is_dir() and any(out.iterdir()):
        raise RnnkitError(f"--out {out} is a folder that is not empty; choose a new path, or "
                          "remove it first (nothing is ever overwritten)")


def check_voices(voices: list[str], val_voices: int, test_voices: int) -> None:
    if val_voices < 1 or test_voices < 1 or val_voices + test_voices >= len(voices):
        raise RnnkitError(f"--val-voices {val_voices} and --test-voices {test_voices} must be "
                          f"at least 1 each and leave training some of the {len(voices)} "
                          f"espeak-ng voices found; lower them")


def sentence_pools(text: str, max_words: int) -> tuple[list[str], list[str], dict]:
    """``--text``: (train sentences, val/test sentences, how they were made, for corpus.json).

    For ``numbers`` both pools are empty: numbers are drawn as they are needed."""
    if text == "numbers":
        return [], [], {"source": "numbers", "range": [0, MAX_NUMBER]}
    if text == "shakespeare":
        raw, source = tinyshakespeare_bytes().decode("utf-8"), "shakespeare (tinyshakespeare)"
    else:
        path = input_file(text, "--text", "text file")
        try:
            raw = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as e:
            raise RnnkitError(f"--text {text} is not valid UTF-8 (bad byte at offset "
                              f"{e.start}); convert it first, e.g. iconv -f latin1 -t utf-8"
                              ) from None
        source = str(path.resolve())
    train, held_out = text_sentences(raw, max_words)
    if not train or not held_out:
        part = "first 90%" if not train else "last 10%"
        raise RnnkitError(f"--text {text} has no line of {MIN_WORDS}..{max_words} words in "
                          f"its {part}; give a longer text, or raise --max-words")
    about = {"source": source, "min_words": MIN_WORDS, "max_words": max_words,
             "held_out_frac": HELD_OUT_FRAC, "train_sentences": len(train),
             "held_out_sentences": len(held_out),
             "split": "train sentences come from lines wholly in the first 90% of the text "
                      "(by characters), val and test ones from lines wholly in the last 10%"}
    return train, held_out, about


# -- the corpus -----------------------------------------------------------------------------------

def synthesize_corpus(out: str | Path, utterances: int, text: str = "shakespeare",
                      seed: int = 1337, val_frac: float = 0.1, test_frac: float = 0.1,
                      val_voices: int = 6, test_voices: int = 6,
                      snr: tuple[float, float] = (10.0, 30.0), max_words: int = 8,
                      workers: int = 2, command: str | None = None,
                      progress: bool = True) -> dict:
    """Write the corpus to the folder ``out`` and return what corpus.json says of it.

    Everything the user can get wrong is checked before anything is written; the corpus is
    built in a temporary folder beside ``out`` and renamed to it when complete, so ``out``
    never holds half a corpus (a failure or Ctrl-C removes the temporary folder)."""
    out = Path(os.path.abspath(out))  # "." and "x/.." have a name and a parent this way
    check_request(out, utterances, val_frac, test_frac, max_words, snr, workers)
    exe = find_espeak()
    voices = available_voices(exe)
    check_voices(voices, val_voices, test_voices)
    train_pool, held_out_pool, about_text = sentence_pools(text, max_words)

    rng = np.random.default_rng(seed)
    counts = split_counts(utterances, val_frac, test_frac)
    by_split = split_voices(voices, val_voices, test_voices, rng)
    if text == "numbers":
        sentences = {s: random_numbers(n, rng) for s, n in counts.items()}
    else:
        sentences = {s: draw(train_pool if s == "train" else held_out_pool, n, rng)
                     for s, n in counts.items()}
    utts = plan(sentences, by_split, snr, rng)

    out.parent.mkdir(parents=True, exist_ok=True)
    # visible, so that one a kill -9 left behind is seen
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        frames, rate = speak_all(exe, utts, tmp, seed, workers, progress)
        info = describe(utts, frames, rate, by_split, about_text, seed, snr, exe, command)
        write_tables(tmp, utts)
        (tmp / "corpus.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; use the usual mode
        if out.is_dir():
            out.rmdir()  # empty (checked above); a rename onto a folder is not portable
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def wav_name(utt: Utterance, total: int) -> str:
    return f"wav/{utt.index:0{max(6, len(str(total - 1)))}d}.wav"


def speak_all(exe: str, utts: list[Utterance], folder: Path, seed: int, workers: int,
              progress: bool) -> tuple[list[int], int]:
    """Speak and noise every utterance into ``folder``; their lengths in samples, and the rate.

    espeak-ng is a process per call, so a few threads keep the cores busy; on an error or
    Ctrl-C the queued calls are cancelled and the running ones finished before it is raised."""
    (folder / "wav").mkdir()
    frames, rates = [0] * len(utts), set()
    pool = ThreadPoolExecutor(max_workers=workers)
    bar = tqdm(total=len(utts), unit="utt", file=sys.stderr, mininterval=2.0,
               disable=None if progress else True, desc="speaking")
    try:
        futures = {pool.submit(speak_one, exe, u, folder / wav_name(u, len(utts)), seed): u
                   for u in utts}
        for future in as_completed(futures):
            frames[futures[future].index], rate = future.result()
            rates.add(rate)
            bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if len(rates) != 1:
        raise RnnkitError(f"espeak-ng wrote WAVs at several rates ({sorted(rates)}); the "
                          "corpus needs one; check its install")
    return frames, rates.pop()


def speak_one(exe: str, utt: Utterance, path: Path, seed: int) -> tuple[int, int]:
    """One utterance: espeak-ng's WAV, overwritten by it plus its noise."""
    clean, rate = speak(exe, utt, path)
    rng = np.random.default_rng([seed, utt.index])  # each utterance its own noise stream
    write_wav(path, add_noise(clean, utt.snr_db, rng, utt.noise), rate)
    return len(clean), rate


def write_tables(folder: Path, utts: list[Utterance]) -> None:
    for split in ("train", "val", "test"):
        lines = [f"{wav_name(u, len(utts))}\t{u.text}\n" for u in utts if u.split == split]
        (folder / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")


def describe(utts: list[Utterance], frames: list[int], rate: int,
             voices: dict[str, list[str]], about_text: dict, seed: int,
             snr: tuple[float, float], exe: str, command: str | None) -> dict:
    """corpus.json: what was generated, enough to make it again."""
    splits = ("train", "val", "test")
    seconds = {s: sum(frames[u.index] for u in utts if u.split == s) / rate for s in splits}
    return {
        "format": "rnnkit speech corpus: {train,val,test}.tsv of audio_path<TAB>transcript",
        "rnnkit_version": __version__,
        "command": command,
        "seed": seed,
        "utterances": {s: sum(u.split == s for u in utts) for s in splits},
        "hours": {s: round(seconds[s] / 3600, 4) for s in splits},
        "sample_rate": rate,
        "voices": voices,
        "text": about_text,
        "snr_db": list(snr),
        "noise": list(NOISES),
        "speed_wpm": list(SPEED_WPM),
        "pitch": list(PITCH),
        "espeak_ng": espeak_output(exe, "--version").strip(),
        "failures": "none: an utterance espeak-ng cannot say stops the run, nothing is skipped",
    }


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
