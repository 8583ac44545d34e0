"""Generated vision data, SSIM and image files: behaviour checks against independent references."""

import sys

import numpy as np
import pytest
import torch

from rnnkit.data import vision
from rnnkit.data.vision import (
    ACTIVITY_CLASSES,
    DIRECTIONS,
    NUMBER_WORDS,
    MovingDigits,
    activity_clips,
    bounce,
    caption_images,
    digit_images,
    moving_digits,
    upscale,
)
from rnnkit.errors import RnnkitError
from rnnkit.images import GAP, save_gif, save_strip
from rnnkit.metrics import mse, ssim

pytest.importorskip("sklearn", reason="the digit images come from scikit-learn")
Image = pytest.importorskip("PIL.Image", reason="image files are written with Pillow")


def image_keys(images: np.ndarray) -> set[bytes]:
    return {np.ascontiguousarray(im, dtype=np.float32).tobytes() for im in images}


# --- digit images and the split ---------------------------------------------------------------

def test_digit_split_is_disjoint_and_covers_all_images():
    train, train_y = digit_images("train")
    test, test_y = digit_images("test")
    every, _ = digit_images("all")
    assert train.shape[1:] == test.shape[1:] == (8, 8) and train.dtype == np.float32
    assert len(train) + len(test) == len(every) == 1797
    assert abs(len(test) / len(every) - 0.2) < 0.01
    assert image_keys(train).isdisjoint(image_keys(test))
    assert image_keys(train) | image_keys(test) == image_keys(every)
    assert set(train_y) == set(test_y) == set(range(10)) and train_y.dtype == np.int64
    assert 0.0 == every.min() and every.max() == 1.0


def test_digit_split_depends_on_its_seed_only():
    assert np.array_equal(digit_images("test")[0], digit_images("test", seed=0)[0])
    assert not np.array_equal(digit_images("test")[0], digit_images("test", seed=1)[0])


def test_digit_images_returns_copies_not_the_cache():
    images, _ = digit_images("all")
    images[:] = 0
    assert digit_images("all")[0].max() == 1.0


def test_bad_split_is_rejected():
    with pytest.raises(ValueError, match="split must be one of"):
        digit_images("valid")


def test_missing_sklearn_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    vision._sklearn_digits.cache_clear()
    try:
        with pytest.raises(RnnkitError, match="pip install scikit-learn"):
            digit_images()
    finally:
        monkeypatch.undo()
        vision._sklearn_digits.cache_clear()


def test_upscale_nearest_repeats_pixels_and_bilinear_stays_in_range():
    images, _ = digit_images("test")
    big = upscale(images[:5], 16, mode="nearest")
    assert np.array_equal(big, np.kron(images[:5], np.ones((1, 2, 2), np.float32)))
    smooth = upscale(images[:5], 28)
    assert smooth.shape == (5, 28, 28) and smooth.dtype == np.float32
    assert 0.0 <= smooth.min() and smooth.max() <= 1.0
    with pytest.raises(ValueError, match="mode"):
        upscale(images, 16, mode="bicubic")


# --- moving digits ----------------------------------------------------------------------------

def test_moving_digits_shape_range_and_seed():
    a = moving_digits(6, frames=5, size=32, digit_size=12, seed=3)
    assert a.shape == (6, 5, 1, 32, 32) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.max() > 0.5
    assert np.array_equal(a, moving_digits(6, frames=5, size=32, digit_size=12, seed=3))
    assert not np.array_equal(a, moving_digits(6, frames=5, size=32, digit_size=12, seed=4))
    assert not np.array_equal(a[:, 0], a[:, -1])  # the digits move


def test_batches_are_a_function_of_seed_and_step():
    kw = dict(frames=4, size=24, digit_size=10, seed=7)
    data = MovingDigits(10, **kw)
    whole = moving_digits(10, **kw)
    assert torch.equal(data[3], torch.from_numpy(whole[3]))
    b = data.batch(2, batch_size=4)  # sequences 8, 9, 0, 1: wraps around n
    assert b.shape == (4, 4, 1, 24, 24)
    assert np.array_equal(b.numpy(), whole[[8, 9, 0, 1]])
    assert torch.equal(MovingDigits(10, **kw).batch(2, batch_size=4), b)  # fresh instance
    assert not torch.equal(MovingDigits(10, frames=4, size=24, digit_size=10, seed=8)[3], data[3])


def naive_bounce(p: float, v: float, frames: int, span: float) -> list[float]:
    """Step-by-step reflection, the way Moving MNIST's generator does it."""
    out = [p]
    for _ in range(frames - 1):
        p += v
        if p > span:
            p, v = 2 * span - p, -v
        elif p < 0:
            p, v = -p, -v
        out.append(p)
    return out


def test_bounce_reflects_at_both_edges_like_a_step_by_step_simulation():
    assert bounce(9.0, 3.0, 5, 10).tolist() == [9, 8, 5, 2, 1]  # 12 -> 8, -1 -> 1
    rng = np.random.default_rng(0)
    span = 36.0
    start, velocity = rng.uniform(0, span, 50), rng.uniform(-8, 8, 50)
    ours = bounce(start, velocity, 30, span)
    ref = [naive_bounce(p, v, 30, span) for p, v in zip(start, velocity)]
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert ours.min() >= 0 and ours.max() <= span


def test_digit_mass_never_leaves_the_frame_and_follows_the_positions():
    data = MovingDigits(40, frames=20, size=32, digits=1, digit_size=14, seed=1)
    span, hit_edge = 32 - 14, 0
    for i in range(len(data)):
        video, track = data.sequence(i)[:, 0], data.positions(i)[0]  # (T, H, W), (T, 2)
        mass = video.sum(axis=(1, 2))
        np.testing.assert_allclose(mass, mass[0], rtol=1e-5)  # nothing is cut off at an edge
        assert track.min() >= 0 and track.max() <= span
        hit_edge += bool(((track == 0) | (track == span)).any())
        grid = np.arange(32)
        com = np.stack([video.sum(2) @ grid, video.sum(1) @ grid], 1) / mass[:, None]
        offset = com - track  # the digit's own centre of mass, the same in every frame
        np.testing.assert_allclose(offset, offset[:1].repeat(len(offset), 0), atol=1e-3)
    assert hit_edge > 10  # the bounces are actually exercised


def test_test_sequences_use_only_test_images():
    # digit_size 8 leaves the 8x8 digits unscaled, so they can be looked up exactly
    data = MovingDigits(30, frames=1, size=20, digits=1, digit_size=8, split="test")
    test_keys, train_keys = image_keys(digit_images("test")[0]), image_keys(digit_images()[0])
    for i in range(len(data)):
        r, c = data.positions(i)[0, 0]
        crop = data.sequence(i)[0, 0, r:r + 8, c:c + 8]
        assert crop.tobytes() in test_keys and crop.tobytes() not in train_keys


def test_moving_digits_rejects_a_digit_bigger_than_the_frame():
    with pytest.raises(ValueError, match="digit_size"):
        moving_digits(2, size=16, digit_size=28)


# --- activity clips ---------------------------------------------------------------------------

def circular_centre(frames: np.ndarray, axis: int) -> np.ndarray:
    """Centre of mass on a torus along one axis of (..., H, W) frames, as an angle."""
    size = frames.shape[-1]
    profile = frames.sum(axis=-1 if axis == 0 else -2)  # mass per row (axis 0) or column
    phase = np.exp(2j * np.pi * np.arange(size) / size)
    return np.angle(profile @ phase)


def com_steps(clips: np.ndarray) -> np.ndarray:
    """Frame-to-frame displacement of the centre of mass in pixels: (N, T - 1, 2) as (dy, dx)."""
    size = clips.shape[-1]
    steps = []
    for axis in (0, 1):
        turn = np.diff(circular_centre(clips[:, :, 0], axis), axis=1)
        steps.append(np.angle(np.exp(1j * turn)) * size / (2 * np.pi))  # wrap to (-pi, pi]
    return np.stack(steps, axis=-1)


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    centroids = np.stack([train_x[train_y == k].mean(0) for k in range(len(ACTIVITY_CLASSES))])
    dist = ((test_x[:, None, :] - centroids[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == test_y).mean())


def test_activity_clips_shape_labels_and_seed():
    clips, labels = activity_clips(64, frames=6, size=24, seed=5)
    assert clips.shape == (64, 6, 1, 24, 24) and clips.dtype == np.float32
    assert labels.dtype == np.int64 and set(labels) <= set(range(len(ACTIVITY_CLASSES)))
    assert 0.0 <= clips.min() and clips.max() <= 1.0
    again, again_labels = activity_clips(64, frames=6, size=24, seed=5)
    assert np.array_equal(clips, again) and np.array_equal(labels, again_labels)
    assert not np.array_equal(clips, activity_clips(64, frames=6, size=24, seed=6)[0])
    assert len(ACTIVITY_CLASSES) == len(DIRECTIONS) == 8


def test_motion_of_the_centre_of_mass_matches_the_class_direction():
    clips, labels = activity_clips(200, frames=8, size=32, seed=0)
    steps = com_steps(clips)  # (N, T - 1, 2)
    speed = np.abs(steps).max(axis=(1, 2))
    assert set(np.round(speed, 3)) == {1.0, 2.0}
    # from the class names, not DIRECTIONS: rows grow downward, so "up" lowers the row
    named = np.array([(("down" in c) - ("up" in c), ("right" in c) - ("left" in c))
                      for c in ACTIVITY_CLASSES])
    assert np.array_equal(named, DIRECTIONS)
    expected = named[labels][:, None, :] * speed[:, None, None]
    np.testing.assert_allclose(steps, np.broadcast_to(expected, steps.shape), atol=1e-3)


def test_single_frames_carry_no_class_information_but_motion_does():
    train, train_y = activity_clips(800, frames=4, size=32, seed=1)
    test, test_y = activity_clips(800, frames=4, size=32, seed=2)

    def frame0_centre(clips):
        angles = np.stack([circular_centre(clips[:, 0, 0], a) for a in (0, 1)], 1)
        return np.concatenate([np.cos(angles), np.sin(angles)], 1)

    def pixels(clips):
        return clips[:, 0, 0].reshape(len(clips), -1)

    def motion(clips):
        return com_steps(clips).mean(1)

    chance = 1 / len(ACTIVITY_CLASSES)
    assert nearest_centroid_accuracy(frame0_centre(train), train_y,
                                     frame0_centre(test), test_y) < chance + 0.08
    assert nearest_centroid_accuracy(pixels(train), train_y, pixels(test), test_y) < chance + 0.08
    assert nearest_centroid_accuracy(motion(train), train_y, motion(test), test_y) > 0.95
    # and each class's mean first frame is close to flat: no region is class-specific
    overall = train[:, 0, 0].mean(0)
    for k in range(len(ACTIVITY_CLASSES)):
        class_mean = train[train_y == k, 0, 0].mean(0)
        assert np.abs(class_mean - overall).mean() < 0.5 * overall.mean()


# --- captions ---------------------------------------------------------------------------------

def test_caption_words_name_the_digits_shown_left_to_right():
    images, captions = caption_images(60, seed=2, split="test", max_digits=3, digit_size=8)
    assert images.shape == (60, 1, 8, 24) and images.dtype == np.float32
    test_images, test_labels = digit_images("test")
    label_of = {im.tobytes(): int(y) for im, y in zip(test_images, test_labels)}
    counts = set()
    for image, caption in zip(images[:, 0], captions):
        words = caption.split(" then ")
        counts.add(len(words))
        slots = [np.ascontiguousarray(image[:, 8 * k:8 * (k + 1)]) for k in range(3)]
        assert [NUMBER_WORDS[label_of[s.tobytes()]] for s in slots[:len(words)]] == words
        assert all(not s.any() for s in slots[len(words):])  # empty slots stay blank
    assert counts == {1, 2, 3}


def test_caption_images_default_canvas_and_seed():
    images, captions = caption_images(20, seed=0)
    assert images.shape == (20, 1, 16, 32) and len(captions) == 20
    assert all(set(c.split(" then ")) <= set(NUMBER_WORDS) for c in captions)
    assert captions == caption_images(20, seed=0)[1]
    assert not np.array_equal(images, caption_images(20, seed=1)[0])


# --- SSIM and MSE -----------------------------------------------------------------------------

def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Window by window, straight from Wang et al. 2004 (11x11 Gaussian, sigma 1.5)."""
    r = np.arange(11) - 5
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for a, b in zip(x.reshape(-1, *x.shape[-2:]), y.reshape(-1, *y.shape[-2:])):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                p, q = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
                mp, mq = (g * p).sum(), (g * q).sum()
                vp, vq = (g * (p - mp) ** 2).sum(), (g * (q - mq) ** 2).sum()
                cov = (g * (p - mp) * (q - mq)).sum()
                scores.append((2 * mp * mq + c1) * (2 * cov + c2)
                              / ((mp ** 2 + mq ** 2 + c1) * (vp + vq + c2)))
    return float(np.mean(scores))


def test_ssim_matches_a_window_by_window_reference():
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    assert abs(ssim(x, y) - reference_ssim(x, y)) < 1e-4
    z = rng.random((2, 16, 16))
    assert abs(ssim(z, 2 * z[::-1], data_range=2.0) - reference_ssim(z, 2 * z[::-1], 2.0)) < 1e-4


def test_ssim_is_one_on_equal_images_symmetric_and_falls_with_noise():
    x = moving_digits(4, frames=3, size=32, digit_size=14)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    noise = np.random.default_rng(1).standard_normal(x.shape)
    scores = [ssim(x, x + s * noise) for s in (0.01, 0.05, 0.1, 0.2, 0.4)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    y = x + 0.1 * noise
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    assert ssim(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(ssim(x, y), abs=1e-12)


def test_ssim_handles_constant_images():
    flat = np.full((2, 12, 12), 0.5)
    assert ssim(flat, flat) == pytest.approx(1.0, abs=1e-12)
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5 ** 2 + 0.25 ** 2 + c1)  # only the luminance term
    assert ssim(flat, np.full_like(flat, 0.25)) == pytest.approx(expected, abs=1e-9)
    assert ssim(np.zeros((12, 12)), np.zeros((12, 12))) == pytest.approx(1.0, abs=1e-12)


def test_ssim_and_mse_reject_bad_inputs():
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="same shape"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)))
    with pytest.raises(ValueError, match="data_range"):
        ssim(np.zeros((16, 16)), np.zeros((16, 16)), data_range=0)
    with pytest.raises(ValueError, match="same shape"):
        mse(np.zeros(3), np.zeros(4))


def test_mse_on_arrays_and_tensors():
    assert mse(np.array([0.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert mse(torch.tensor([[0.5, 0.0]]), np.array([[0.0, 0.0]])) == 0.125


# --- PNG strips and GIFs ----------------------------------------------------------------------

def test_save_strip_writes_a_labelled_grid(tmp_path):
    video = moving_digits(1, frames=6, size=16, digit_size=8)[0]  # (6, 1, 16, 16)
    path = save_strip([("input", video[:3]), ("truth", video[3:, 0]),
                       ("prediction", torch.from_numpy(video[3:]))], tmp_path / "s.png", scale=2)
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temp file left behind
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.height == GAP + 3 * (32 + GAP)
        label_w = im.width - 3 * (32 + GAP)
        assert label_w > 20  # room was made for the labels
        first = np.asarray(im)[GAP:GAP + 32, label_w:label_w + 32]
        label = np.asarray(im)[GAP:GAP + 32, :label_w]
    expected = np.rint(video[0, 0] * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    assert np.array_equal(first, expected)
    assert label.min() < 128  # the label text is drawn


def test_save_gif_writes_every_frame_of_side_by_side_panels(tmp_path):
    video = moving_digits(2, frames=7, size=16, digit_size=8)
    path = save_gif([video[0], video[1, :, 0]], tmp_path / "a.gif", fps=4, scale=3)
    assert [p.name for p in tmp_path.iterdir()] == ["a.gif"]
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 7
        assert im.size == ((16 + GAP + 16) * 3, 16 * 3)
        assert im.info["duration"] == 250 and im.info["loop"] == 0
    single = save_gif(video[0], tmp_path / "b.gif")
    with Image.open(single) as im:
        assert im.n_frames == 7 and im.size == (32, 32)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    good = np.zeros((2, 8, 8))
    path = save_strip([("x", good)], tmp_path / "s.png")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        save_strip([("x", np.full((2, 8, 8), np.nan))], path)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        save_gif(np.zeros((8, 8)), tmp_path / "a.gif")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


def test_missing_pillow_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(RnnkitError, match="pip install pillow"):
        save_gif(np.zeros((2, 8, 8)), tmp_path / "a.gif")
