"""Per-frame modules for sequences: TimeDistributed (as in Keras) and a small CNN encoder.

Shapes: B batch, T time, N = B*T frames, C/H/W a frame's channels, height and width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .recurrent import check_lengths, step_mask


class TimeDistributed(nn.Module):
    """Apply ``module`` to every frame of a batch-first sequence by folding time into the batch.

    One call of ``module`` on all B*T frames, so it runs as fast as a plain batch. With
    ``lengths`` the module still sees the padded frames (the fold keeps every slot), but they
    are zeroed first, so inf/nan padding cannot reach the outputs or the gradients, and
    their outputs are zeroed, as ``Recurrent`` does. Modules with batch statistics
    (``BatchNorm`` in training mode) do count those zero frames.

    Args:
        module: any module mapping (N, *frame) to (N, *out).

    Shape:
        x: (B, T, *frame). lengths: optional (B,) integers in [1, T]. Returns (B, T, *out),
        zero at steps t >= lengths[b].
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        B, T = x.shape[:2]
        mask = None
        if lengths is not None:
            mask = step_mask(check_lengths(lengths, B, T), T, x.device)
            x = _where_steps(mask, x, 0)
        out = self.module(x.flatten(0, 1)).unflatten(0, (B, T))
        return out if mask is None else _where_steps(mask, out, 0)


def _where_steps(mask: Tensor, x: Tensor, other: float) -> Tensor:
    """x at the steps where the (B, T) ``mask`` is True, ``other`` elsewhere."""
    return torch.where(mask.view(*mask.shape, *(1,) * (x.dim() - 2)), x, other)


class SmallCNN(nn.Module):
    """A small conv encoder for one frame: [conv3x3 - ReLU - maxpool2] blocks, then pooling.

    Meant as the default per-frame encoder in ``TimeDistributed(SmallCNN(...))``: each block
    halves the frame (rounding up, so any frame size works), the pooling makes the output
    independent of the frame size, and an optional linear layer sets its width.

    The pooling is a global mean (``grid=None``: what is in the frame, not where) or an
    average over a ``grid`` x ``grid`` partition of the frame, flattened (where things are:
    needed to read motion between frames, or the left-to-right order of digits).

    Args:
        in_channels: C, channels of an input frame.
        channels: output channels of each block, in order.
        out_features: width of a final linear layer; None for no linear layer.
        grid: cells per side of the pooling grid; None for the global mean.

    Shape:
        x: (N, C, H, W). Returns (N, out_features), where the attribute ``out_features`` is
        the argument or, without a linear layer, ``channels[-1] * grid**2``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (16, 32),
                 out_features: int | None = None, grid: int | None = None):
        super().__init__()
        if not channels:
            raise ValueError("channels must name at least one block")
        blocks = []
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*blocks)
        self.grid = grid
        last = channels[-1] * (grid * grid if grid else 1)
        self.head = nn.Identity() if out_features is None else nn.Linear(last, out_features)
        self.out_features = last if out_features is None else out_features

    def forward(self, x: Tensor) -> Tensor:
        maps = self.features(x)
        if self.grid is None:
            return self.head(maps.mean(dim=(-2, -1)))
        return self.head(nn.functional.adaptive_avg_pool2d(maps, self.grid).flatten(1))
