"""Audio files to log-mel features: reading, resampling and the filterbank, all in numpy and torch.

    read_audio(path)       float32 mono samples of a WAV/FLAC/OGG file and its sample rate
    resample(wave, a, b)   band-limited (windowed-sinc, polyphase) resampling from a Hz to b Hz
    load_wave(path)        both: a (N,) float32 tensor at SAMPLE_RATE
    LogMel                 (B, N) waves -> (B, T, N_MELS) log-mel features, padded frames zero
    normalize              per-utterance mean/variance normalisation over the valid frames

Features follow librosa's defaults for speech: a 25 ms Hann window inside a 512-point FFT every
10 ms, the power spectrum, 80 Slaney mel filters from 0 Hz to 8 kHz, then log(mel + LOG_FLOOR).
Frames are centred (``center=True``): the wave is zero-padded by N_FFT // 2 on both sides, and
frame t is centred on sample t * HOP_LENGTH, so n samples give frame_count(n) = 1 + n // HOP_LENGTH
frames (0 for an empty wave). A clip shorter than one window still gives a frame (mostly zero
padding); callers that need a minimum length compare frame counts (or sample counts) with it.

Only torch ops touch the waves, so features are computed on whatever device the waves are on.
soundfile is needed only to read files; torchaudio and librosa are not used.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RnnkitError

SAMPLE_RATE = 16_000  # what every feature is computed at
N_MELS = 80
WIN_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
LOG_FLOOR = 1e-6  # added to the mel power before the log, so silence gives log(1e-6) ~ -13.8

# Resampling filter: a Kaiser-windowed sinc with its cutoff a little below the lower of the two
# Nyquist frequencies (the 8% gap is the transition band, so nothing above Nyquist aliases).
ROLLOFF = 0.92  # cutoff as a fraction of min(orig, new) / 2
ZEROS = 32  # zero crossings of the sinc kept on each side of the centre
BETA = 8.6  # Kaiser window shape: stopband ~ -85 dB
KERNEL_BUDGET = 1 << 20  # filter taps per conv1d call; bounds memory for awkward rate pairs
STD_FLOOR = 1e-3  # normalize divides by at least this: log-mel features vary by units, not 1e-3


# --- reading files ----------------------------------------------------------------------------

def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples, sample_rate) of an audio file: float32 (N,) mono, multi-channel averaged.

    Integer PCM is scaled into [-1, 1); float files come back as stored. Anything wrong with the
    file (missing, unreadable, empty, a bad sample rate, NaN or inf samples) is one RnnkitError.
    """
    try:
        import soundfile
    except ImportError:
        raise RnnkitError("reading audio needs the soundfile package; pip install soundfile") \
            from None
    p = Path(path)
    name = f"audio file {str(p)!r}"
    if not p.exists():
        raise RnnkitError(f"{name} not found; check the path")
    if p.is_dir():
        raise RnnkitError(f"{name} is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise RnnkitError(f"{name} is empty (0 bytes)")
    try:
        data, rate = soundfile.read(p, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, getattr(soundfile, "SoundFileError", RuntimeError)) \
            as e:
        # libsndfile's own reason ("Format not recognised.") without the path it repeats
        reason = getattr(e, "error_string", None) or str(e).splitlines()[0]
        raise RnnkitError(f"{name} cannot be read as audio: {reason.rstrip('.')}") from None
    if rate <= 0:
        raise RnnkitError(f"{name} has sample rate {rate}; it must be above 0")
    if data.shape[0] == 0:
        raise RnnkitError(f"{name} holds no samples")
    if not np.isfinite(data).all():
        raise RnnkitError(f"{name} holds NaN or infinite samples")
    return data.mean(axis=1, dtype=np.float32), int(rate)


def load_wave(path: str | Path, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """The file's samples resampled to ``sample_rate``: a float32 (N,) tensor."""
    data, rate = read_audio(path)
    return resample(torch.from_numpy(data), rate, sample_rate)


# --- resampling -------------------------------------------------------------------------------

def resample(wave: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """(..., N) -> (..., M) at ``new_sr``, M = ceil(N * new_sr / orig_sr).

    Output sample m sits at input time m * orig_sr / new_sr (so sample 0 stays at time 0) and is
    the band-limited interpolation of the input there, low-passed below the lower Nyquist
    frequency; outside the input the wave counts as zero. Equal rates give a copy.
    """
    orig_sr, new_sr = check_rate(orig_sr), check_rate(new_sr)
    if not wave.is_floating_point():
        wave = wave.float()
    if orig_sr == new_sr:
        return wave.clone()
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g  # the filters repeat every `new` outputs
    n = wave.shape[-1]
    m = -(-n * new // orig)
    if m == 0:
        return wave.new_zeros(*wave.shape[:-1], 0)
    out = polyphase(wave.reshape(-1, 1, n), orig, new, -(-m // new))
    return out[:, :m].reshape(*wave.shape[:-1], m)


def check_rate(rate: int) -> int:
    if int(rate) != rate or rate <= 0:
        raise RnnkitError(f"a sample rate must be a whole number of Hz above 0, got {rate}")
    return int(rate)


def polyphase(x: Tensor, orig: int, new: int, q: int) -> Tensor:
    """(B, 1, N) -> (B, q * new): output q' * new + j for q' < q, j < new, from the filter bank.

    Output q' * new + j lies just after input sample q' * orig + offsets[j], so phase j is a
    conv1d with stride ``orig`` starting at offsets[j]. Phases are done in groups that share one
    conv1d (each filter placed at its own offset in a wider kernel); one group when that fits.
    """
    taps, offsets = filter_bank(orig, new)
    width = taps.shape[1] // 2
    total = (q - 1) * orig + int(offsets[-1]) + 2 * width  # padded input the last output reads
    xp = F.pad(x, (width - 1, max(0, total - (width - 1) - x.shape[-1])))
    group = min(new, max(1, int(math.sqrt(KERNEL_BUDGET * new / orig))))
    out = x.new_empty(x.shape[0], new, q)
    for j0 in range(0, new, group):
        j1 = min(new, j0 + group)
        start = int(offsets[j0])
        kernel = np.zeros((j1 - j0, 1, int(offsets[j1 - 1]) - start + 2 * width))
        for i, j in enumerate(range(j0, j1)):
            kernel[i, 0, offsets[j] - start:offsets[j] - start + 2 * width] = taps[j]
        segment = xp[..., start:start + (q - 1) * orig + kernel.shape[-1]]
        out[:, j0:j1] = F.conv1d(segment, torch.from_numpy(kernel).to(x), stride=orig)
    return out.transpose(1, 2).reshape(x.shape[0], q * new)


@functools.lru_cache(maxsize=16)
def filter_bank(orig: int, new: int) -> tuple[np.ndarray, np.ndarray]:
    """(taps (new, 2W) float64, offsets (new,) int64) of the polyphase filter for orig -> new.

    Output j (of each run of ``new``) is at input time t = j * orig / new; its 2W taps weight
    the input samples floor(t) - W + 1 .. floor(t) + W, and offsets[j] = floor(t).
    """
    c = ROLLOFF * min(orig, new) / orig  # cutoff, in cycles per input sample, times 2
    half = ZEROS / c  # half the filter's length, in input samples
    width = math.ceil(half)
    j = np.arange(new)
    offsets = j * orig // new
    frac = (j * orig % new) / new
    tau = frac[:, None] + (width - 1) - np.arange(2 * width)  # t minus each tap's sample time
    inside = np.clip(1 - (tau / half) ** 2, 0, None)
    window = np.where(np.abs(tau) <= half, np.i0(BETA * np.sqrt(inside)) / np.i0(BETA), 0.0)
    return c * np.sinc(c * tau) * window, offsets


# --- features ---------------------------------------------------------------------------------

def frame_count(num_samples: int | Tensor) -> int | Tensor:
    """Frames LogMel gives for that many samples: 1 + n // HOP_LENGTH, or 0 when n is 0.

    Works on ints and, elementwise, on a tensor of lengths."""
    if isinstance(num_samples, Tensor):
        return torch.where(num_samples > 0, 1 + num_samples // HOP_LENGTH, 0)
    return 1 + num_samples // HOP_LENGTH if num_samples > 0 else 0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (200/3 Hz a mel) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz * 3 / 200
    log_part = 15 + np.log(np.maximum(hz, 1e-10) / 1000) / (np.log(6.4) / 27)
    return np.where(hz >= 1000, log_part, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15, 1000 * np.exp((np.log(6.4) / 27) * (mel - 15)), mel * 200 / 3)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                   n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Slaney mel filters from 0 Hz to sample_rate / 2.

    Triangles evenly spaced in mels, each scaled to unit area in Hz (Slaney's normalisation);
    the same matrix as librosa.filters.mel with its defaults."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz - lo) / (mid - lo)
    falling = (hi - fft_hz) / (hi - mid)
    triangles = np.maximum(0, np.minimum(rising, falling))
    return (triangles * (2 / (hi - lo))).astype(np.float32)


class LogMel(torch.nn.Module):
    """Log-mel filterbank features, in torch ops so they run on any device.

    forward(waves (B, N) float, lengths (B,) int64 samples) -> (features (B, T, N_MELS) float32,
    frame_lengths (B,) int64), T = frame_count(N). Samples past an utterance's length are ignored
    (read as zero) and frames past its end are zero, so a padded batch gives each utterance the
    features it gets alone.
    """

    def __init__(self):
        super().__init__()
        # Not saved in checkpoints: both are fixed by the constants above.
        self.register_buffer("window", torch.hann_window(WIN_LENGTH), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank()), persistent=False)

    def forward(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, n = waves.shape
        lengths = lengths.to(waves.device)
        if bool((lengths > n).any()) or bool((lengths < 0).any()):
            raise ValueError(f"lengths must lie in [0, {n}], the padded width; got {lengths}")
        frame_lengths = frame_count(lengths)
        t = frame_count(n)
        if t == 0:
            return waves.new_zeros(b, 0, N_MELS, dtype=torch.float32), frame_lengths
        valid = torch.arange(n, device=waves.device) < lengths[:, None]
        x = waves.float() * valid  # padding may hold anything; it must read as zero
        spec = torch.stft(x, N_FFT, HOP_LENGTH, WIN_LENGTH, self.window, center=True,
                          pad_mode="constant", return_complex=True)  # (B, N_FFT // 2 + 1, T)
        power = spec.real ** 2 + spec.imag ** 2
        features = torch.log(self.mel @ power + LOG_FLOOR).transpose(1, 2)  # (B, T, N_MELS)
        return features * frame_mask(frame_lengths, t)[..., None], frame_lengths


def frame_mask(lengths: Tensor, t: int) -> Tensor:
    """(B, t) float: 1 for the valid frames of each row, 0 for padding."""
    return (torch.arange(t, device=lengths.device) < lengths[:, None]).float()


def normalize(features: Tensor, lengths: Tensor) -> Tensor:
    """(B, T, D) features, each of the D normalised to mean 0, std 1 over its valid frames.

    ``lengths`` (B,) counts valid frames; padding frames come back exactly zero. The std is the
    population one (divide by the frame count), floored at STD_FLOOR so a constant feature
    (silence at the log floor) becomes 0, not NaN or amplified rounding noise.
    """
    mask = frame_mask(lengths, features.shape[1]).to(features.dtype)[..., None]  # (B, T, 1)
    count = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (features * mask).sum(1, keepdim=True) / count
    centred = (features - mean) * mask
    std = ((centred ** 2).sum(1, keepdim=True) / count).sqrt()
    return centred / std.clamp(min=STD_FLOOR)


def log_mel(wave: Tensor) -> Tensor:
    """One (N,) wave at SAMPLE_RATE -> its normalised (T, N_MELS) log-mel features."""
    lengths = torch.tensor([wave.shape[-1]], device=wave.device)
    features, frames = LogMel().to(wave.device)(wave[None], lengths)
    return normalize(features, frames)[0]
