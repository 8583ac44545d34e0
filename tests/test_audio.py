"""Audio files, resampling and log-mel features, checked against librosa, soxr and exact sines."""

import warnings

import numpy as np
import pytest
import torch

from rnnkit.data import audio
from rnnkit.data.audio import (
    HOP_LENGTH,
    LOG_FLOOR,
    N_MELS,
    SAMPLE_RATE,
    LogMel,
    frame_count,
    load_wave,
    log_mel,
    mel_filterbank,
    normalize,
    read_audio,
    resample,
)
from rnnkit.errors import RnnkitError


def librosa_or_skip():
    return pytest.importorskip("librosa", reason="librosa is the reference for the features")


def soundfile_or_skip():
    return pytest.importorskip("soundfile", reason="audio files are read with soundfile")


def chirp_and_noise(n: int, seed: int = 0) -> np.ndarray:
    """A 100 Hz -> 7 kHz chirp over n samples at 16 kHz, plus a little white noise."""
    t = np.arange(n) / SAMPLE_RATE
    sweep = 100 * t + (7000 - 100) / (2 * t[-1]) * t ** 2
    noise = 0.01 * np.random.default_rng(seed).standard_normal(n)
    return (0.5 * np.sin(2 * np.pi * sweep) + noise).astype(np.float32)


def tones(n: int, rate: int, parts) -> np.ndarray:
    t = np.arange(n) / rate
    return sum(a * np.sin(2 * np.pi * f * t + phase) for a, f, phase in parts)


# --- log-mel features -------------------------------------------------------------------------

def test_mel_filterbank_equals_librosa():
    librosa = librosa_or_skip()
    ours = mel_filterbank()
    ref = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=512, n_mels=N_MELS)
    assert ours.shape == ref.shape == (N_MELS, 257) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_log_mel_matches_librosa_frame_by_frame():
    librosa = librosa_or_skip()
    n = 2 * SAMPLE_RATE + 77  # not a whole number of hops
    y = chirp_and_noise(n)
    ref = librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=SAMPLE_RATE, n_fft=512, win_length=400, hop_length=160,
        n_mels=N_MELS, center=True, power=2.0)
    ref = np.log(ref + LOG_FLOOR).T  # (T, N_MELS)
    features, frames = LogMel()(torch.from_numpy(y)[None], torch.tensor([n]))
    assert features.dtype == torch.float32 and features.shape == (1, ref.shape[0], N_MELS)
    assert frames.tolist() == [ref.shape[0]] == [frame_count(n)]
    # float32 FFT against librosa's float64: the log features agree to well under 1e-3
    np.testing.assert_allclose(features[0].numpy(), ref, rtol=0, atol=1e-3)


def test_frame_count_matches_librosa_framing():
    librosa = librosa_or_skip()
    for n in (1, 159, 160, 161, 399, 400, 511, 512, 1000, 16000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that short inputs are padded
            ref = librosa.feature.melspectrogram(
                y=np.ones(n, dtype=np.float32), sr=SAMPLE_RATE, n_fft=512, win_length=400,
                hop_length=160, n_mels=N_MELS, center=True)
        assert frame_count(n) == ref.shape[1], n


def test_frame_count_agrees_with_log_mel_for_every_length():
    rng = np.random.default_rng(1)
    lengths = list(range(0, 1001, 7)) + [159, 160, 161, 319, 320, 321] + \
        rng.integers(1, 6000, size=20).tolist()
    lengths_t = torch.tensor(lengths)
    assert frame_count(lengths_t).tolist() == [frame_count(n) for n in lengths]
    assert frame_count(0) == 0 and frame_count(1) == 1 and frame_count(160) == 2
    logmel = LogMel()
    for n in lengths:
        features, frames = logmel(torch.randn(1, n), torch.tensor([n]))
        assert features.shape == (1, frame_count(n), N_MELS) and frames.tolist() == [frame_count(n)]
    # the whole set as one padded batch: T is set by the padded width, each row by its length
    width = max(lengths)
    features, frames = logmel(torch.randn(len(lengths), width), lengths_t)
    assert features.shape == (len(lengths), frame_count(width), N_MELS)
    assert torch.equal(frames, frame_count(lengths_t))


def test_padded_batch_gives_each_utterance_its_own_features():
    lengths = [16000, 1, 159, 400, 5333, 12001, 0]
    width = max(lengths) + 321
    waves = torch.randn(len(lengths), width)  # the padding is noise: it must be ignored
    logmel = LogMel()
    features, frames = logmel(waves, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        alone, alone_frames = logmel(waves[i:i + 1, :n], torch.tensor([n]))
        t = frame_count(n)
        assert frames[i] == alone_frames[0] == t
        torch.testing.assert_close(features[i, :t], alone[0], rtol=0, atol=1e-4)
        assert torch.all(features[i, t:] == 0)
    empty, empty_frames = logmel(torch.zeros(2, 0), torch.tensor([0, 0]))
    assert empty.shape == (2, 0, N_MELS) and empty_frames.tolist() == [0, 0]
    with pytest.raises(ValueError, match="lengths"):
        logmel(waves, torch.tensor([width + 1] * len(lengths)))


def test_silence_sits_at_the_log_floor():
    features, _ = LogMel()(torch.zeros(1, 1600), torch.tensor([1600]))
    torch.testing.assert_close(features, torch.full_like(features, float(np.log(LOG_FLOOR))))


# --- normalisation ----------------------------------------------------------------------------

def test_normalize_gives_zero_mean_unit_std_over_valid_frames():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(3, 50, N_MELS, generator=g) * 4 - 7
    lengths = torch.tensor([50, 17, 2])
    out = normalize(features, lengths)
    for i, t in enumerate(lengths.tolist()):
        valid = out[i, :t]
        torch.testing.assert_close(valid.mean(0), torch.zeros(N_MELS), rtol=0, atol=1e-5)
        torch.testing.assert_close(valid.std(0, unbiased=False), torch.ones(N_MELS),
                                   rtol=0, atol=1e-4)
        assert torch.all(out[i, t:] == 0)  # the input's padding was not zero; the output's is
    # a constant feature (silence) becomes zeros up to rounding, not NaN or amplified noise
    flat = normalize(torch.full((1, 10, N_MELS), -13.8), torch.tensor([10]))
    torch.testing.assert_close(flat, torch.zeros_like(flat), rtol=0, atol=1e-2)


def test_log_mel_of_one_wave():
    wave = torch.from_numpy(chirp_and_noise(8000))
    features = log_mel(wave)
    assert features.shape == (frame_count(8000), N_MELS)
    torch.testing.assert_close(features.mean(0), torch.zeros(N_MELS), rtol=0, atol=1e-4)


# --- resampling -------------------------------------------------------------------------------

@pytest.mark.parametrize("orig", [22050, 44100, 8000, 48000, 11025, 16001])
def test_resampled_sine_is_the_same_sine_at_16k(orig):
    n = orig  # one second
    wave = torch.from_numpy(np.sin(2 * np.pi * 1000 * np.arange(n) / orig)).float()
    out = resample(wave, orig, SAMPLE_RATE)
    assert out.dtype == torch.float32 and out.shape == (SAMPLE_RATE,)
    expected = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    edge = SAMPLE_RATE // 20  # the filter sees the zeros outside the clip near its ends
    np.testing.assert_allclose(out.numpy()[edge:-edge], expected[edge:-edge], rtol=0, atol=1e-4)


@pytest.mark.parametrize("freq", [8500, 10000, 15000])
def test_tones_above_the_new_nyquist_do_not_alias(freq):
    wave = torch.from_numpy(np.sin(2 * np.pi * freq * np.arange(44100) / 44100))
    out = resample(wave, 44100, SAMPLE_RATE).numpy()
    assert np.abs(out[800:-800]).max() < 1e-3  # -60 dB; the filter's stopband is ~ -85 dB


def test_upsampling_does_not_image():
    # 8 kHz -> 16 kHz must not create the 5 kHz mirror image of a 3 kHz tone
    wave = torch.from_numpy(np.sin(2 * np.pi * 3000 * np.arange(8000) / 8000))
    out = resample(wave, 8000, SAMPLE_RATE).numpy()[800:-800]
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    hz = np.fft.rfftfreq(len(out), 1 / SAMPLE_RATE)
    assert spectrum[np.abs(hz - 5000) < 50].max() < 1e-4 * spectrum.max()


@pytest.mark.parametrize("orig", [22050, 44100, 8000])
def test_resample_matches_librosa_soxr(orig):
    librosa = librosa_or_skip()
    pytest.importorskip("soxr", reason="librosa's soxr_hq resampler")
    # tones inside both filters' passbands (below 0.8 x the lower Nyquist)
    x = tones(orig, orig, [(0.3, 220, 0.1), (0.2, 1234, 1.0), (0.1, 3100, 2.0)])
    ref = librosa.resample(x, orig_sr=orig, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    out = resample(torch.from_numpy(x), orig, SAMPLE_RATE).numpy()
    assert out.dtype == np.float64 and len(out) == len(ref)
    np.testing.assert_allclose(out[500:-500], ref[500:-500], rtol=0, atol=1e-4)


def test_resample_length_is_ceil_and_batches_work():
    for orig, new in [(22050, 16000), (44100, 16000), (8000, 16000), (16001, 16000)]:
        for n in (0, 1, 2, 3, 440, 441, 442, 12345):
            m = resample(torch.zeros(n), orig, new).shape[-1]
            assert m == -(-n * new // orig), (orig, new, n)
    waves = torch.randn(2, 3, 5000)
    out = resample(waves, 22050, SAMPLE_RATE)
    assert out.shape == (2, 3, -(-5000 * 16000 // 22050))
    torch.testing.assert_close(out[1, 2], resample(waves[1, 2], 22050, SAMPLE_RATE))


def test_resample_at_equal_rates_copies():
    wave = torch.randn(1000)
    out = resample(wave, 16000, 16000)
    assert torch.equal(out, wave) and out.data_ptr() != wave.data_ptr()
    with pytest.raises(RnnkitError, match="sample rate"):
        resample(wave, 0, 16000)


# --- reading files ----------------------------------------------------------------------------

def test_int16_wav_and_flac_round_trip(tmp_path):
    sf = soundfile_or_skip()
    ints = np.random.default_rng(4).integers(-32768, 32768, size=2345).astype(np.int16)
    for name, fmt in [("a.wav", "WAV"), ("a.flac", "FLAC")]:
        path = tmp_path / name
        sf.write(path, ints, 22050, format=fmt, subtype="PCM_16")
        samples, rate = read_audio(path)
        assert rate == 22050 and samples.dtype == np.float32 and samples.shape == (2345,)
        np.testing.assert_array_equal(samples, ints / np.float32(32768))
        assert samples.min() >= -1 and samples.max() < 1


def test_stereo_is_averaged_and_load_wave_resamples(tmp_path):
    sf = soundfile_or_skip()
    left = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000) * 0.5
    right = np.full(8000, 0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    samples, rate = read_audio(path)
    assert rate == 8000 and samples.shape == (8000,)
    np.testing.assert_allclose(samples, (left + right) / 2, rtol=0, atol=1e-7)
    wave = load_wave(path)
    assert wave.dtype == torch.float32 and wave.shape == (SAMPLE_RATE,)
    torch.testing.assert_close(wave, resample(torch.from_numpy(samples), 8000, SAMPLE_RATE))


def one_line_error_naming(path, match: str):
    return pytest.raises(RnnkitError, match=rf"^audio file '{path}' .*{match}[^\n]*$")


def test_bad_audio_files_are_one_clear_error(tmp_path):
    sf = soundfile_or_skip()
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a wave file\n" * 20)
    empty_bytes = tmp_path / "nothing.wav"
    empty_bytes.write_bytes(b"")
    no_frames = tmp_path / "no_frames.wav"
    sf.write(no_frames, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000, subtype="FLOAT")
    cases = [(tmp_path / "missing.wav", "not found"), (garbage, "cannot be read"),
             (empty_bytes, "empty"), (no_frames, "no samples"), (nan, "NaN"),
             (tmp_path, "directory")]
    for path, match in cases:
        with one_line_error_naming(path, match):
            read_audio(path)


def test_bad_sample_rate_and_missing_soundfile(tmp_path, monkeypatch):
    sf = soundfile_or_skip()
    path = tmp_path / "ok.wav"
    sf.write(path, np.zeros(100, dtype=np.int16), 16000, subtype="PCM_16")
    monkeypatch.setattr(sf, "read", lambda *a, **k: (np.zeros((100, 1), np.float32), 0))
    with one_line_error_naming(path, "sample rate 0"):
        read_audio(path)
    monkeypatch.setitem(__import__("sys").modules, "soundfile", None)  # import now fails
    with pytest.raises(RnnkitError, match="pip install soundfile"):
        read_audio(path)
    assert audio.SAMPLE_RATE == SAMPLE_RATE and HOP_LENGTH == 160


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_features_and_resampling_on_the_gpu_match_the_cpu():
    waves = torch.from_numpy(np.stack([chirp_and_noise(9000), chirp_and_noise(9000, seed=1)]))
    lengths = torch.tensor([9000, 4321])
    cpu, cpu_frames = LogMel()(waves, lengths)
    gpu, gpu_frames = LogMel().cuda()(waves.cuda(), lengths.cuda())
    assert gpu.device.type == "cuda" and torch.equal(gpu_frames.cpu(), cpu_frames)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-3)
    torch.testing.assert_close(resample(waves.cuda(), 22050, SAMPLE_RATE).cpu(),
                               resample(waves, 22050, SAMPLE_RATE), rtol=0, atol=1e-5)
