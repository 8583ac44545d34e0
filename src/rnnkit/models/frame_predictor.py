"""FramePredictor: an encoder-forecaster for video (Shi et al. 2015), ConvLSTM or FC-LSTM.

The encoder stack reads the input frames; the forecaster stack starts from the encoder's final
states and writes the future frames one at a time, reading the previous frame: the true one
under teacher forcing, its own prediction when free-running (or, with scheduled sampling,
either, per frame). As in the paper, frames are cut into P x P patches first (space to depth:
a 64 x 64 frame becomes a 16 x 16 grid of 16 channels for P = 4), which keeps the recurrent
state small; a 1 x 1 convolution maps the forecaster's last hidden state back to patches.

``arch="fclstm"`` flattens each frame into one vector and uses the ordinary (fully connected)
LSTM instead: the paper's baseline, which knows nothing of space.

``head="warp"`` writes a frame by moving the previous one instead of drawing it: the ConvLSTM
state gives every pixel a K x K kernel, softmax-normalised, and the pixel becomes that
weighted mean of the previous frame's K x K neighbourhood (dynamic neural advection, Finn et
al. 2016). A kernel peaked off-centre shifts a sharp digit by whole pixels and keeps it sharp,
where pixel logits trained by a per-pixel loss hedge between the places it may go and blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..layers.cells import State
from ..layers.conv_rnn import CONV_CELLS, ConvRecurrent
from ..layers.recurrent import Recurrent
from .checks import cell_field, check_config


@dataclass
class FramePredictorConfig:
    arch: Literal["convlstm", "fclstm"] = "convlstm"
    """Frames: convlstm (convolutional recurrence over patches) or fclstm (flattened frames
    through an ordinary LSTM, the baseline)."""
    cell: str = cell_field(CONV_CELLS)
    """Recurrent cell type (ConvLSTM or ConvGRU for convlstm)."""
    in_channels: int = 1
    """C, channels per frame."""
    frame_size: int = 64
    """Frames: height and width of the (square) frames."""
    patch_size: int = 4
    """Frames: P, frames are cut into P x P patches (space to depth) before the RNN."""
    hidden_size: int = 64
    """Hidden channels per ConvLSTM layer, or units per FC-LSTM layer."""
    num_layers: int = 2
    """L, stacked recurrent layers, in the encoder and in the forecaster."""
    kernel_size: int = 3
    """Frames: odd convolution kernel size of the ConvLSTM (input-to-state and state-to-state)."""
    peephole: Literal["none", "channel", "full"] = "none"
    """Frames: ConvLSTM peepholes: none, one weight per channel, or the paper's full
    Hadamard weights (one per channel and position)."""
    input_frames: int = 10
    """Frames: frames read before forecasting."""
    output_frames: int = 10
    """Frames: frames forecast."""
    head: Literal["pixels", "warp"] = "pixels"
    """Frames: pixels (a 1 x 1 convolution gives each pixel's logit, the paper's) or warp (each
    pixel a softmax-weighted mean of the previous frame's --warp-size neighbourhood;
    convlstm only)."""
    warp_size: int = 7
    """Frames: K, odd side of the warp head's kernels (moves of up to K // 2 pixels a frame)."""
    digits: int = 2
    """Frames: digits moving in each generated sequence (a .npz is read as it is)."""

    def __post_init__(self):
        check_config(self, ("in_channels", "frame_size", "patch_size", "hidden_size",
                            "num_layers", "input_frames", "output_frames", "digits", "warp_size"))
        if self.frame_size % self.patch_size:
            raise ValueError(f"frame_size {self.frame_size} must be a multiple of patch_size "
                             f"{self.patch_size}")
        if self.head == "warp" and self.arch != "convlstm":
            raise ValueError("head warp needs arch convlstm (the FC-LSTM writes pixels)")
        if self.warp_size % 2 == 0:
            raise ValueError(f"warp_size must be odd, got {self.warp_size}")


class FramePredictor(nn.Module):
    """``logits = model(inputs, targets=None, eps=1.0)``.

    Shape: inputs (B, T_in, C, H, W) and targets (B, T_out, C, H, W) in [0, 1]; logits of every
    pixel of the T_out forecast frames, (B, T_out, C, H, W) (``torch.sigmoid`` gives the frames).
    eps is the probability that a forecast step reads the true previous frame (1: teacher
    forcing, needs targets; 0 or no targets: free-running).
    """

    def __init__(self, config: FramePredictorConfig):
        super().__init__()
        self.config = c = config
        depth = c.in_channels * c.patch_size ** 2
        grid = c.frame_size // c.patch_size
        if c.arch == "convlstm":
            peephole = {"none": None, "channel": "channel", "full": (grid, grid)}[c.peephole]
            self.encoder, self.forecaster = (
                ConvRecurrent(c.cell, depth, c.hidden_size, c.num_layers, c.kernel_size,
                              peephole=peephole) for _ in range(2))
            # warp: K * K kernel weights for each of a patch's P * P pixels
            out = c.patch_size ** 2 * c.warp_size ** 2 if c.head == "warp" else depth
            self.head = nn.Conv2d(c.hidden_size, out, 1)
            if c.head == "warp":
                self._start_still()
        else:
            self.encoder, self.forecaster = (
                Recurrent(c.cell, depth * grid * grid, c.hidden_size, c.num_layers)
                for _ in range(2))
            self.head = nn.Linear(c.hidden_size, depth * grid * grid)

    def _patches(self, frames: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, T, C*P*P, H/P, W/P), flattened for the FC-LSTM."""
        B, T = frames.shape[:2]
        x = nn.functional.pixel_unshuffle(frames.flatten(0, 1), self.config.patch_size)
        x = x.view(B, T, *x.shape[1:])
        return x.flatten(2) if self.config.arch == "fclstm" else x

    def _frames(self, patches: Tensor) -> Tensor:
        """The inverse of ``_patches``."""
        c = self.config
        B, T = patches.shape[:2]
        grid = c.frame_size // c.patch_size
        x = patches.reshape(B * T, c.in_channels * c.patch_size ** 2, grid, grid)
        x = nn.functional.pixel_shuffle(x, c.patch_size)
        return x.view(B, T, *x.shape[1:])

    def encode(self, inputs: Tensor) -> State:
        return self.encoder(self._patches(inputs))[1]

    def forecast(self, frames: Tensor, state: State) -> tuple[Tensor, State]:
        """Logits of the frames that follow each of ``frames`` (B, T, C, H, W)."""
        out, state = self.forecaster(self._patches(frames), state)
        if self.config.arch == "fclstm":
            return self._frames(self.head(out)), state
        B, T = out.shape[:2]
        patches = self.head(out.flatten(0, 1))
        if self.config.head == "warp":
            return self._warp(patches, frames.flatten(0, 1)).view(frames.shape), state
        return self._frames(patches.view(B, T, -1, *out.shape[3:])), state

    def _start_still(self) -> None:
        """Bias every kernel towards its centre (weight about 0.9 there), so that an
        untrained forecaster repeats the previous frame, sharp, and learns to move it, rather
        than starting from the mean of the neighbourhood, a blur of every frame it reads."""
        k, pp = self.config.warp_size, self.config.patch_size ** 2
        bias = torch.zeros(k * k, pp)  # pixel_shuffle's channel order: kernel entry, pixel
        bias[k * k // 2] = math.log(9 * (k * k - 1))
        with torch.no_grad():
            self.head.bias.copy_(bias.reshape(-1))

    def _warp(self, patches: Tensor, previous: Tensor) -> Tensor:
        """Logits of ``previous`` (N, C, H, W) moved by the kernels in ``patches`` (N,
        P*P*K*K, H/P, W/P); one kernel per pixel, shared by the channels."""
        k = self.config.warp_size
        N, C, H, W = previous.shape
        weights = nn.functional.pixel_shuffle(patches, self.config.patch_size).softmax(1)
        # beyond the border is background: zero padding
        around = nn.functional.unfold(previous, k, padding=k // 2).view(N, C, k * k, H, W)
        frame = (around * weights[:, None]).sum(2)
        # the interface is logits (BCE with logits, sigmoid at the output): squeeze into
        # (eps, 1 - eps) so that the logit is finite and its gradient never vanishes
        eps = 1e-4
        return torch.logit(eps + (1 - 2 * eps) * frame)

    def forward(self, inputs: Tensor, targets: Tensor | None = None,
                eps: float = 1.0) -> Tensor:
        state = self.encode(inputs)
        first = inputs[:, -1:]
        if targets is not None and eps >= 1.0:  # teacher forcing: all steps in one pass
            return self.forecast(torch.cat([first, targets[:, :-1]], dim=1), state)[0]
        frame, outs = first, []
        for t in range(self.config.output_frames):
            logits, state = self.forecast(frame, state)
            outs.append(logits)
            frame = self._next_input(logits, targets, t, eps)
        return torch.cat(outs, dim=1)

    @staticmethod
    def _next_input(logits: Tensor, targets: Tensor | None, t: int, eps: float) -> Tensor:
        # the own prediction is fed back without a gradient through it, as for tokens
        own = torch.sigmoid(logits).detach()
        if targets is None or eps <= 0.0:
            return own
        keep = torch.rand(own.shape[0], 1, 1, 1, 1, device=own.device) < eps
        return torch.where(keep, targets[:, t:t + 1], own)
