"""FramePredictor: an encoder-forecaster for video (Shi et al. 2015), ConvLSTM or FC-LSTM.

The encoder stack reads the input frames; the forecaster stack starts from the encoder's final
states and writes the future frames one at a time, reading the previous frame: the true one
under teacher forcing, its own prediction when free-running (or, with scheduled sampling,
either, per frame). As in the paper, frames are cut into P x P patches first (space to depth:
a 64 x 64 frame becomes a 16 x 16 grid of 16 channels for P = 4), which keeps the recurrent
state small; a 1 x 1 convolution maps the forecaster's last hidden state back to patches.

``arch="fclstm"`` flattens each frame into one vector and uses the ordinary (fully connected)
LSTM instead: the paper's baseline, which knows nothing of space.
"""

from __future__ import annotations

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

    def __post_init__(self):
        check_config(self, ("in_channels", "frame_size", "patch_size", "hidden_size",
                            "num_layers", "input_frames", "output_frames"))
        if self.frame_size % self.patch_size:
            raise ValueError(f"frame_size {self.frame_size} must be a multiple of patch_size "
                             f"{self.patch_size}")


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
            self.head = nn.Conv2d(c.hidden_size, depth, 1)
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
        if self.config.arch == "convlstm":
            B, T = out.shape[:2]
            patches = self.head(out.flatten(0, 1)).view(B, T, -1, *out.shape[3:])
        else:
            patches = self.head(out)
        return self._frames(patches), state

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
