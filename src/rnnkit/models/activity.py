"""ActivityRecognizer (many-to-one over video): per-frame CNN -> RNN -> label.

The lecture's activity recognition: a convolutional encoder reads each frame, the recurrent
layers read the sequence of frame features, and the last state is classified. With
``single_frame`` the RNN is skipped and the CNN sees only the middle frame: the baseline that
shows whether the label needs motion (time) at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..layers.mlp import MLPHead
from ..layers.recurrent import Recurrent
from ..layers.time_distributed import SmallCNN, TimeDistributed
from .checks import cell_field, check_config


@dataclass
class ClipConfig:
    """The settings of a per-frame CNN -> RNN model of clips (activity, segment)."""
    num_classes: int = 0
    """Classes, filled in from the data."""
    in_channels: int = 1
    """C, channels per frame."""
    cnn_width: int = 8
    """Vision: channels of the first conv block of the per-frame CNN (doubled per block)."""
    cnn_blocks: int = 1
    """Vision: conv3x3-ReLU-maxpool blocks in the per-frame CNN."""
    cell: str = cell_field()
    """Recurrent cell type."""
    hidden_size: int = 64
    """H, units per recurrent layer (and direction)."""
    num_layers: int = 1
    """L, stacked recurrent layers."""
    dropout: float = 0.0
    """Dropout between recurrent layers and before the output layers."""


@dataclass
class ActivityConfig(ClipConfig):
    single_frame: bool = False
    """No RNN, the no-motion baseline: activity classifies the middle frame alone with the
    CNN, segment labels each frame from its own CNN features."""
    frames: int = 10
    """Activity, segment: frames per generated clip."""
    frame_size: int = 32
    """Activity, segment, frames: height and width of the (square) generated frames."""

    def __post_init__(self):
        check_config(self, ("in_channels", "cnn_width", "cnn_blocks", "hidden_size",
                            "num_layers", "frames", "frame_size"))


def frame_encoder(in_channels: int, width: int, blocks: int, grid: int) -> SmallCNN:
    return SmallCNN(in_channels, tuple(width * 2 ** k for k in range(blocks)), grid=grid)


def motion_grid(frame_size: int, blocks: int) -> int:
    """Cells per side of the CNN's feature grid: 2 x 2 cells of its last map each. Motion of a
    pixel or two per frame is a change of place that coarser pooling averages away (a 4 x 4
    grid left 32 x 32 clips at chance after 300 steps, this one reached 93%)."""
    return max(1, frame_size // 2 ** blocks // 2)


class ActivityRecognizer(nn.Module):
    """``logits = model(clips)``: clips (B, T, C, H, W) in [0, 1] -> logits (B, K)."""

    def __init__(self, config: ActivityConfig):
        super().__init__()
        assert config.num_classes > 0, "num_classes comes from the data"
        self.config = c = config
        cnn = frame_encoder(c.in_channels, c.cnn_width, c.cnn_blocks,
                            motion_grid(c.frame_size, c.cnn_blocks))
        self.frames = TimeDistributed(cnn)
        features = cnn.out_features
        self.rnn = None if c.single_frame else Recurrent(c.cell, features, c.hidden_size,
                                                         c.num_layers, c.dropout)
        self.head = MLPHead(features if c.single_frame else c.hidden_size, c.num_classes,
                            dropout=c.dropout)

    def forward(self, clips: Tensor) -> Tensor:
        if self.rnn is None:
            middle = clips[:, clips.shape[1] // 2: clips.shape[1] // 2 + 1]
            return self.head(self.frames(middle)[:, 0])
        out, _ = self.rnn(self.frames(clips))  # (B, T, H): features of every frame, in order
        return self.head(out[:, -1])
