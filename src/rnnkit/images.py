"""PNG strips and animated GIFs of frame sequences, to look at video predictions.

    save_strip([("input", x), ("truth", y), ("prediction", p)], "strip.png")
    save_gif([y, p], "truth_vs_prediction.gif", fps=4)      # two panels side by side

Frames are (T, H, W) or (T, 1, H, W) numpy arrays or torch tensors with values in [0, 1]
(values outside are clipped). Files are written atomically: a reader never sees half a file.
Needs Pillow (``pip install pillow``), imported only when a file is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import RnnkitError
from .fileio import atomic_write

GAP = 2  # pixels of white between frames, rows and panels
WHITE = 255


def _pil():
    try:
        from PIL import Image, ImageDraw  # lazy: only image output needs Pillow
    except ImportError as e:
        raise RnnkitError("writing PNG or GIF files needs Pillow; run: pip install pillow") from e
    return Image, ImageDraw


def _frames_uint8(frames, name: str) -> np.ndarray:
    """(T, H, W) or (T, 1, H, W) values in [0, 1] -> (T, H, W) uint8 grey levels."""
    if hasattr(frames, "detach"):  # a torch tensor, maybe on a GPU or requiring grad
        frames = frames.detach().cpu().numpy()
    a = np.asarray(frames, dtype=np.float64)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"{name}: frames must have shape (T, H, W) or (T, 1, H, W), "
                         f"got {np.shape(frames)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: frames contain NaN or infinite values")
    return np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def _same_frame_size(arrays: list[np.ndarray], what: str) -> tuple[int, int]:
    sizes = {a.shape[1:] for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"all {what} must have frames of one size, got {sorted(sizes)}")
    return sizes.pop()


def _label_width(draw, labels: list[str]) -> int:
    return int(max(draw.textlength(label) for label in labels)) + 2 * GAP


def save_strip(rows: list[tuple[str, object]], path: str | Path, scale: int = 2) -> Path:
    """Write a PNG grid: one row per entry, its label on the left, then its frames in order.

    Args:
        rows: ``[(label, frames), ...]``, e.g. input | truth | prediction. Rows may differ in
            length T but not in frame size.
        path: Output file (written atomically).
        scale: Each frame pixel becomes a ``scale`` x ``scale`` block (nearest neighbour).

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: If ``rows`` is empty or frames have a bad shape, size or value.
        RnnkitError: If Pillow is not installed.
    """
    if not rows:
        raise ValueError("save_strip needs at least one row, got none")
    Image, ImageDraw = _pil()
    arrays = [_frames_uint8(frames, f"row {label!r}") for label, frames in rows]
    h, w = (scale * s for s in _same_frame_size(arrays, "rows"))
    label_w = _label_width(ImageDraw.Draw(Image.new("L", (1, 1))), [label for label, _ in rows])
    width = label_w + max(len(a) for a in arrays) * (w + GAP)
    canvas = Image.new("L", (width, GAP + len(rows) * (h + GAP)), WHITE)
    draw = ImageDraw.Draw(canvas)
    for i, ((label, _), frames) in enumerate(zip(rows, arrays)):
        top = GAP + i * (h + GAP)
        _, y0, _, y1 = draw.textbbox((0, 0), label)  # no anchor=: bitmap fonts lack it
        draw.text((GAP, top + (h - (y1 - y0)) // 2 - y0), label, fill=0)
        for t, frame in enumerate(frames):
            tile = Image.fromarray(frame).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_w + t * (w + GAP), top))
    return _save(path, lambda f: canvas.save(f, format="PNG"))


def _save(path: str | Path, write) -> Path:
    path = Path(path)
    atomic_write(path, write)
    return path


def _side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of (T, H, W) -> (T, H, total W) with white gaps between them."""
    t, h = len(panels[0]), panels[0].shape[1]
    gap = np.full((t, h, GAP), WHITE, np.uint8)
    pieces = [p for panel in panels for p in (panel, gap)][:-1]
    return np.concatenate(pieces, axis=2)


def save_gif(frames, path: str | Path, fps: float = 4, scale: int = 2) -> Path:
    """Write an animated GIF that loops forever.

    Pillow merges consecutive identical frames into one longer frame, so a clip that stands
    still for a while has fewer frames in the file (the timing is kept).

    Args:
        frames: One clip, (T, H, W) or (T, 1, H, W), or a list of clips of equal T and H
            shown as panels side by side (e.g. ``[truth, prediction]``).
        path: Output file (written atomically).
        fps: Frames per second.
        scale: Each frame pixel becomes a ``scale`` x ``scale`` block.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: If the clips have bad or unequal shapes, or ``fps <= 0``.
        RnnkitError: If Pillow is not installed.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    Image, _ = _pil()
    clips = list(frames) if isinstance(frames, (list, tuple)) else [frames]
    panels = [_frames_uint8(clip, f"panel {k}") for k, clip in enumerate(clips)]
    if len({(len(p), p.shape[1]) for p in panels}) != 1:
        raise ValueError("save_gif panels must have the same number of frames and height, got "
                         f"{[p.shape for p in panels]}")
    strip = _side_by_side(panels) if len(panels) > 1 else panels[0]
    size = (strip.shape[2] * scale, strip.shape[1] * scale)
    images = [Image.fromarray(f).resize(size, Image.NEAREST) for f in strip]
    return _save(path, lambda f: images[0].save(
        f, format="GIF", save_all=True, append_images=images[1:], loop=0,
        duration=round(1000 / fps)))
