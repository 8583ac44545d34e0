"""Generated clips for temporal action segmentation: one digit moving, a label for every frame.

A clip shows one scikit-learn digit (data/vision.py's images, and its train/test split of them)
moving inside the frame. Its motion is a sequence of 2-4 segments, each at least 3 frames
long, each governed by one action of :data:`ACTION_CLASSES`:

    move       constant speed and direction
    stop       no motion: the frames of the segment are identical
    turn       the direction rotates by 30 degrees every frame, one way (90 degrees over the
               shortest segment), at constant speed
    speed-up   the speed grows by the same amount every frame, 2 pixels per frame in all
    slow-down  the speed falls the same way, by 2 pixels per frame over the segment

Speeds stay within 1.5 to 5.5 pixels per frame (at a 32-pixel frame; they scale with the
frame), so a segment speeds up only from 3.5 or less and slows down only from 3.5 or more.
Two neighbouring segments never share an action (they would be one segment). The digit
(3/8 of the frame) reflects off the walls, the direction flipping along the axis it hit, so
it never leaves the frame. A bounce can land the digit on the pixel it left: 0.6% of moving
frames look like their successor.

Label convention: frame t's label is the action that moves the digit from frame t to frame
t + 1, and the last frame keeps the last action. An action's first frame therefore looks like
the frames before it; only the next frame shows the new motion. A model that reads frames in
order (a unidirectional RNN) names it a frame late, one that also reads backwards (a
bidirectional RNN) can name it on time, and a model of single frames, which sees no motion at
all, cannot beat the class prior.

    clips, labels = action_clips(100)      # (100, 16, 1, 32, 32) float32, (100, 16) int64
    positions, velocities, labels = action_tracks(100)   # the motion behind the same clips

Shape legend: N clips, T frames. Every function is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np

from .vision import _check_fits, _check_positive, _check_split, _digit_pool

ACTION_CLASSES = ("move", "stop", "turn", "speed-up", "slow-down")
MOVE, STOP, TURN, SPEED_UP, SLOW_DOWN = range(len(ACTION_CLASSES))
MIN_SEGMENT = 3  # frames
MAX_SEGMENTS = 4
# pixels per frame at a 32-pixel frame; above 1.41 a step moves the digit by more than a pixel
# along some axis, so a moving frame differs from the next one (but for some bounces)
SPEEDS = (1.5, 5.5)
START_SPEEDS = (2.0, 5.0)
SPEED_CHANGE = 2.0  # pixels per frame gained (or lost) over a whole speed-up (slow-down)
TURN_RATE = np.pi / 6
REFERENCE_SIZE = 32


def _segment_lengths(rng: np.random.Generator, frames: int) -> np.ndarray:
    """2 to 4 lengths >= MIN_SEGMENT that sum to ``frames``: the spare frames are cut at
    uniform random places."""
    count = rng.integers(2, min(MAX_SEGMENTS, frames // MIN_SEGMENT) + 1)
    spare = frames - MIN_SEGMENT * count
    cuts = np.sort(rng.integers(0, spare + 1, size=count - 1))
    return MIN_SEGMENT + np.diff(np.concatenate([[0], cuts, [spare]]))


def _possible(action: int, speed: float, unit: float) -> bool:
    """Whether ``action`` keeps the speed within SPEEDS."""
    change = {SPEED_UP: 1, SLOW_DOWN: -1}.get(action, 0) * SPEED_CHANGE
    return SPEEDS[0] * unit - 1e-9 <= speed + change * unit <= SPEEDS[1] * unit + 1e-9


def _reflect(position: np.ndarray, heading: float, span: float) -> tuple[np.ndarray, float]:
    """The position folded back into [0, span] on both axes, and the heading mirrored along
    each axis that was crossed (a step is shorter than span, so one fold is enough)."""
    for axis in (0, 1):
        if not 0 <= position[axis] <= span:
            position[axis] = -position[axis] if position[axis] < 0 else 2 * span - position[axis]
            # heading is the angle of (dy, dx) = (sin, cos): flip dy -> -h, flip dx -> pi - h
            heading = -heading if axis == 0 else np.pi - heading
    return position, heading


def _clip_track(rng: np.random.Generator, frames: int, span: float, unit: float):
    """One clip's top-left corners (T, 2), velocities (T, 2) and labels (T,)."""
    positions, velocities = np.zeros((frames, 2)), np.zeros((frames, 2))
    labels = np.zeros(frames, np.int64)
    position = rng.uniform(0, span, size=2)
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*START_SPEEDS) * unit
    t, previous = 0, -1
    for length in _segment_lengths(rng, frames):
        steps = min(length, frames - 1 - t)  # the last frame has no step of its own
        choices = [a for a in range(len(ACTION_CLASSES))
                   if a != previous and _possible(a, speed, unit)]
        action = choices[rng.integers(len(choices))]
        turn = TURN_RATE * (1 if rng.integers(2) else -1)
        change = {SPEED_UP: 1, SLOW_DOWN: -1}.get(action, 0) * SPEED_CHANGE * unit / steps
        labels[t:t + length] = previous = action
        for _ in range(steps):
            speed += change
            heading += turn if action == TURN else 0.0
            step = 0.0 if action == STOP else speed
            velocities[t] = step * np.array([np.sin(heading), np.cos(heading)])
            positions[t] = position
            position, heading = _reflect(position + velocities[t], heading, span)
            t += 1
    positions[t] = position
    velocities[t] = velocities[t - 1]
    return positions, velocities, labels


def default_digit_size(size: int) -> int:
    """Digits are 3/8 of the frame: 12 pixels in a 32-pixel frame, room to move and bounce."""
    return max(size * 3 // 8, 4)


def action_tracks(n: int, frames: int = 16, size: int = 32, seed: int = 0,
                  digit_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The motion of ``n`` clips, before any digit is drawn.

    Args:
        n: Number of clips.
        frames: Frames per clip T (>= 6: two segments of 3 frames).
        size: Frame height and width.
        seed: Seed of the set (the same as :func:`action_clips`'s for the same clips).
        digit_size: Digit height and width; default 3/8 of ``size``.

    Returns:
        ``(positions, velocities, labels)``: (n, T, 2) float64 top-left corners (row, col) in
        [0, size - digit_size]; (n, T, 2) float64 step t -> t + 1 before any reflection (the
        last frame repeats the one before); (n, T) int64 indices into :data:`ACTION_CLASSES`.
    """
    digit_size = default_digit_size(size) if digit_size is None else digit_size
    _check_positive(n=n)
    _check_fits(digit_size, size)
    if frames < 2 * MIN_SEGMENT:
        raise ValueError(f"frames must be >= {2 * MIN_SEGMENT} (two segments of "
                         f"{MIN_SEGMENT} frames), got {frames}")
    rng = np.random.default_rng(seed)
    tracks = [_clip_track(rng, frames, size - digit_size, size / REFERENCE_SIZE)
              for _ in range(n)]
    return tuple(np.stack(parts) for parts in zip(*tracks))


def action_clips(n: int, frames: int = 16, size: int = 32, seed: int = 0,
                 split: str = "train", digit_size: int | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Clips of one digit moving through 2-4 actions, with every frame's action.

    Args:
        n: Number of clips.
        frames: Frames per clip T (>= 6).
        size: Frame height and width.
        seed: Seed of the set: the motion (:func:`action_tracks`) and, from a second stream,
            the digit images.
        split: Which digit images to draw from ("train", "test" or "all"; see
            :func:`rnnkit.data.vision.digit_images`).
        digit_size: Digit height and width; default 3/8 of ``size``.

    Returns:
        ``(clips, labels)``: (n, T, 1, size, size) float32 in [0, 1] and (n, T) int64
        indices into :data:`ACTION_CLASSES`.
    """
    _check_split(split)
    digit_size = default_digit_size(size) if digit_size is None else digit_size
    positions, _, labels = action_tracks(n, frames, size, seed, digit_size)
    pool, _ = _digit_pool(split, digit_size)
    # a second stream, so the choice of images does not shift the motion
    digits = pool[np.random.default_rng([seed, 1]).integers(len(pool), size=n)]
    corners = np.rint(positions).astype(np.int64)  # a value in [0, span] rounds into it
    clips = np.zeros((n, frames, 1, size, size), np.float32)
    for i, (digit, track) in enumerate(zip(digits, corners)):
        for t, (r, c) in enumerate(track):
            clips[i, t, 0, r:r + digit_size, c:c + digit_size] = digit
    return clips, labels
