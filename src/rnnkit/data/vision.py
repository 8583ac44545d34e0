"""Generated image and video data for recurrent models, built from scikit-learn's digits.

Nothing is downloaded: the 1,797 8x8 digits ship inside scikit-learn (``pip install
scikit-learn``). Every generator is a pure function of its seed. Frames are float32 in [0, 1].

    images, labels = digit_images("train")                 # (1437, 8, 8), (1437,)
    video = moving_digits(1000, frames=20, size=64)        # (1000, 20, 1, 64, 64)
    clips, labels = activity_clips(500)                    # many-to-one: label = direction
    images, captions = caption_images(500)                 # one-to-many: "three then one"

Shape legend: N examples, T frames, H/W height/width in pixels.

The train/test split is a fixed seeded permutation of the digit images (80/20), the same for
every generator, so a test sequence never shows a digit image seen in training.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RnnkitError
from .synthetic import ONES

SPLITS = ("train", "test", "all")
SPLIT_SEED = 0  # one permutation for all generators: a changed seed must not leak test images
TEST_FRACTION = 0.2
NUMBER_WORDS = tuple(ONES[:10])  # "zero" .. "nine"
ACTIVITY_CLASSES = ("up", "down", "left", "right", "up-left", "up-right", "down-left",
                    "down-right")
# (dy, dx) per class in image coordinates: rows grow downward, so "up" is dy = -1
DIRECTIONS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)])
SPEED = (2.0, 5.0)  # moving digits: pixels per frame at size 64 (Moving MNIST moves ~3.6)
INSTALL_HINT = "pip install scikit-learn"


@cache
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as read-only (N, 8, 8) float32 in [0, 1] and (N,) int64 labels."""
    try:
        from sklearn.datasets import load_digits  # lazy: only the vision data needs sklearn
    except ImportError as e:
        raise RnnkitError(f"the digit images come from scikit-learn; run: {INSTALL_HINT}") from e
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)  # stored as 0..16 grey levels
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def digit_images(split: str = "train", seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The scikit-learn digits, cut into disjoint train and test sets by a seeded permutation.

    Args:
        split: "train" (80%), "test" (the other 20%) or "all" (every image, original order).
        seed: Seed of the permutation. Keep the default to get the split that the generators
            below use.

    Returns:
        ``(images, labels)``: (N, 8, 8) float32 in [0, 1] and (N,) int64 in 0..9 (fresh copies).
    """
    _check_split(split)
    images, labels = _sklearn_digits()
    if split == "all":
        return images.copy(), labels.copy()
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = round(len(images) * TEST_FRACTION)
    rows = order[n_test:] if split == "train" else order[:n_test]
    return images[rows], labels[rows]


def upscale(images: np.ndarray, size: int, mode: str = "bilinear") -> np.ndarray:
    """Resize (..., h, w) images to (..., size, size) with ``torch.nn.functional.interpolate``.

    Args:
        images: Array of shape (..., h, w), values in [0, 1].
        size: Output height and width.
        mode: "bilinear" (smooth strokes, closer to MNIST) or "nearest" (blocky, exact values).

    Returns:
        float32 array of shape (..., size, size), clipped to [0, 1].
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    extra = {"align_corners": False} if mode == "bilinear" else {}
    y = F.interpolate(x.reshape(-1, 1, h, w), size=(size, size), mode=mode, **extra)
    return y.reshape(*lead, size, size).clamp_(0.0, 1.0).numpy()


@cache
def _digit_pool(split: str, digit_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Upscaled digits of a split, computed once per (split, size) and shared read-only."""
    images, labels = digit_images(split)
    pool = upscale(images, digit_size)
    pool.flags.writeable = False
    return pool, labels


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _check_fits(digit_size: int, size: int) -> None:
    _check_positive(digit_size=digit_size, size=size)
    if digit_size > size:
        raise ValueError(f"digit_size ({digit_size}) must be <= size ({size})")


# --- moving digits (next-frame prediction) ---------------------------------------------------

def bounce(start: np.ndarray, velocity: np.ndarray, frames: int, span: float) -> np.ndarray:
    """Positions of points moving at constant velocity in [0, span], reflecting at both ends.

    Closed form (a triangle wave of period 2 * span), so there is no per-frame loop and a fast
    point reflects correctly however far it overshoots.

    Args:
        start: Start positions, any shape S, each in [0, span].
        velocity: Displacement per frame, shape S.
        frames: Number of frames T.
        span: Largest position (the canvas size minus the object size).

    Returns:
        float64 array of shape S + (T,); entry t is the position at frame t (t = 0 is start).
    """
    start, velocity = np.asarray(start, np.float64), np.asarray(velocity, np.float64)
    free = start[..., None] + velocity[..., None] * np.arange(frames)  # unbounded path
    if span == 0:
        return np.zeros_like(free)
    return span - np.abs(np.mod(free, 2 * span) - span)


class MovingDigits:
    """Moving-digit videos (after Moving MNIST, Srivastava et al. 2015), generated on demand.

    Sequence ``i`` depends only on ``(seed, i)``: each of ``digits`` digit images (upscaled
    sklearn digits of the split) starts at a random position with a random direction and
    speed, bounces off the edges, and overlapping digits combine with a pixel-wise max.
    Nothing is stored, so ``n`` can be large.

    Args:
        n: Number of sequences (indices 0..n-1).
        frames: Frames per sequence T.
        size: Frame height and width.
        digits: Digits per sequence.
        digit_size: Height and width of each digit.
        seed: Seed of the whole set.
        split: Which digit images to draw from ("train", "test" or "all").

    Shape:
        ``self[i]``: (T, 1, size, size) float32 tensor in [0, 1];
        ``batch(step, batch_size)``: (B, T, 1, size, size).
    """

    def __init__(self, n: int, frames: int = 20, size: int = 64, digits: int = 2,
                 digit_size: int = 28, seed: int = 0, split: str = "train"):
        _check_positive(n=n, frames=frames, digits=digits)
        _check_fits(digit_size, size)
        _check_split(split)
        self.n, self.frames, self.size, self.digits = n, frames, size, digits
        self.digit_size, self.seed, self.split = digit_size, seed, split

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} sequences")
        return torch.from_numpy(self.sequence(index % self.n))

    def positions(self, index: int) -> np.ndarray:
        """Top-left corners of the digits in sequence ``index``: (digits, T, 2) int (row, col)."""
        rng = np.random.default_rng([self.seed, index])
        span = self.size - self.digit_size
        angle = rng.uniform(0, 2 * np.pi, size=self.digits)
        speed = rng.uniform(*SPEED, size=self.digits) * self.size / 64
        velocity = speed[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        start = rng.uniform(0, span, size=(self.digits, 2))
        path = bounce(start, velocity, self.frames, span)  # (digits, 2, T)
        # rounding a value in [0, span] stays in [0, span]: the digit never leaves the frame
        return np.rint(path).astype(np.int64).transpose(0, 2, 1)

    def _chosen_digits(self, index: int) -> np.ndarray:
        pool, _ = _digit_pool(self.split, self.digit_size)
        # a second stream, so the choice of images does not shift the motion of earlier draws
        rng = np.random.default_rng([self.seed, index, 1])
        return pool[rng.integers(len(pool), size=self.digits)]

    def sequence(self, index: int) -> np.ndarray:
        """Sequence ``index`` as a (T, 1, size, size) float32 array."""
        out = np.zeros((self.frames, 1, self.size, self.size), np.float32)
        d = self.digit_size
        for image, track in zip(self._chosen_digits(index), self.positions(index)):
            for t, (r, c) in enumerate(track):
                view = out[t, 0, r:r + d, c:c + d]
                np.maximum(view, image, out=view)  # max, not sum: overlaps stay in [0, 1]
        return out

    def batch(self, step: int, batch_size: int = 16) -> torch.Tensor:
        """Batch ``step``: sequences ``step * B .. step * B + B - 1`` (mod n), in order.

        A pure function of (seed, step), so a resumed run sees the same batches.
        """
        first = step * batch_size
        rows = [self.sequence((first + j) % self.n) for j in range(batch_size)]
        return torch.from_numpy(np.stack(rows))


def moving_digits(n: int, frames: int = 20, size: int = 64, digits: int = 2,
                  digit_size: int = 28, seed: int = 0, split: str = "train") -> np.ndarray:
    """``n`` moving-digit videos at once; row i equals ``MovingDigits(n, ..., seed)[i]``.

    See :class:`MovingDigits` for the arguments. 1,000 sequences of 20 frames at 64x64 take
    0.4-1.5 s on a laptop-class CPU; the output alone is 330 MB, so use
    ``MovingDigits.batch`` for larger sets.

    Returns:
        float32 array (n, frames, 1, size, size) in [0, 1].
    """
    data = MovingDigits(n, frames, size, digits, digit_size, seed, split)
    out = np.empty((n, frames, 1, size, size), np.float32)
    for i in range(n):
        out[i] = data.sequence(i)
    return out


# --- activity clips (many-to-one) ------------------------------------------------------------

def _torus_frames(bases: np.ndarray, tops: np.ndarray) -> np.ndarray:
    """Roll each (size, size) base image by its (T, 2) offsets: (N, T, size, size)."""
    n, size = len(bases), bases.shape[-1]
    grid = np.arange(size)
    rows = (grid - tops[..., 0, None]) % size  # (N, T, size): source row for each output row
    cols = (grid - tops[..., 1, None]) % size
    return bases[np.arange(n)[:, None, None, None], rows[..., :, None], cols[..., None, :]]


def activity_clips(n: int, frames: int = 10, size: int = 32, seed: int = 0,
                   split: str = "train", digit_size: int | None = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Clips of one digit moving in one of 8 directions; the label is the direction.

    The digit moves on a torus (leaving one edge, it re-enters at the opposite one): start
    positions are uniform over the whole frame, so every single frame has the same
    distribution whatever the class, and only the motion between frames tells the classes
    apart. Wrapping also means the motion never reverses, as a bounce would. Speed is 1 or 2
    pixels per frame along each moving axis, digit and start drawn independently of the class.

    Args:
        n: Number of clips.
        frames: Frames per clip T (>= 2 for the class to be visible).
        size: Frame height and width.
        seed: Seed of the set.
        split: Which digit images to draw from.
        digit_size: Digit height and width; default ``size // 2``.

    Returns:
        ``(clips, labels)``: (n, T, 1, size, size) float32 in [0, 1] and (n,) int64 indices
        into :data:`ACTIVITY_CLASSES`.
    """
    digit_size = size // 2 if digit_size is None else digit_size
    _check_positive(n=n, frames=frames)
    _check_fits(digit_size, size)
    pool, _ = _digit_pool(split, digit_size)
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(ACTIVITY_CLASSES), size=n)
    speed = rng.integers(1, 3, size=n)
    start = rng.integers(size, size=(n, 2))
    bases = np.zeros((n, size, size), np.float32)
    bases[:, :digit_size, :digit_size] = pool[rng.integers(len(pool), size=n)]
    step = DIRECTIONS[labels] * speed[:, None]  # (n, 2)
    tops = start[:, None, :] + step[:, None, :] * np.arange(frames)[None, :, None]
    return _torus_frames(bases, tops)[:, :, None], labels.astype(np.int64)


# --- captions (one-to-many) ------------------------------------------------------------------

def caption_images(n: int, seed: int = 0, split: str = "train", max_digits: int = 2,
                   digit_size: int = 16) -> tuple[np.ndarray, list[str]]:
    """Images of 1..max_digits digits side by side, captioned in words ("three then one").

    The canvas has ``max_digits`` slots of ``digit_size`` pixels; the k digits fill the first k
    slots from the left and the rest stay blank (0). The caption reads them left to right.

    Args:
        n: Number of images.
        seed: Seed of the set.
        split: Which digit images to draw from.
        max_digits: Most digits per image (the count is uniform in 1..max_digits).
        digit_size: Height and width of each slot (the 8x8 digits are upscaled to it).

    Returns:
        ``(images, captions)``: (n, 1, digit_size, digit_size * max_digits) float32 in [0, 1]
        and n strings of words from :data:`NUMBER_WORDS` joined by " then ".
    """
    _check_positive(n=n, max_digits=max_digits, digit_size=digit_size)
    pool, pool_labels = _digit_pool(split, digit_size)
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_digits + 1, size=n)
    picks = rng.integers(len(pool), size=(n, max_digits))
    used = np.arange(max_digits) < counts[:, None]  # (n, max_digits): slot holds a digit
    slots = pool[picks] * used[:, :, None, None]  # (n, max_digits, d, d)
    images = slots.transpose(0, 2, 1, 3).reshape(n, 1, digit_size, max_digits * digit_size)
    captions = [" then ".join(NUMBER_WORDS[k] for k in pool_labels[row[:c]])
                for row, c in zip(picks, counts)]
    return np.ascontiguousarray(images, dtype=np.float32), captions
