"""Segmenter (synchronized many-to-many over video): per-frame CNN -> RNN -> a label per frame.

Temporal action segmentation: the convolutional encoder of the activity recognizer reads each
frame, a recurrent layer reads the frame features in order (or, bidirectional, in both
orders) and a head labels every frame from the recurrent output at its step. With
``single_frame`` there is no RNN: each frame is labelled from its own CNN features, the
baseline that sees no motion at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..layers.bidirectional import BiRecurrent
from ..layers.mlp import MLPHead
from ..layers.recurrent import Recurrent
from ..layers.time_distributed import TimeDistributed
from .activity import ClipConfig, frame_encoder, motion_grid
from .checks import check_config


@dataclass
class SegmenterConfig(ClipConfig):
    bidirectional: bool = True
    """Read the input in both directions (a frame's label also sees the frames after it)."""
    single_frame: bool = False
    """Segment: no RNN, label each frame from its own CNN features (the no-motion baseline)."""
    mlp_layers: int = 0
    """Extra hidden layers (GELU) between the RNN and the output layer."""
    frames: int = 16
    """Segment: frames per generated clip (at least 6: two segments of 3 frames)."""
    frame_size: int = 32
    """Segment: height and width of the (square) generated frames."""

    def __post_init__(self):
        check_config(self, ("in_channels", "cnn_width", "cnn_blocks", "hidden_size",
                            "num_layers", "frames", "frame_size"))
        if self.mlp_layers < 0:
            raise ValueError(f"mlp_layers must be >= 0, got {self.mlp_layers}")
        if self.frames < 6:
            raise ValueError(f"frames must be >= 6 (two segments of 3 frames), got {self.frames}")


class Segmenter(nn.Module):
    """``logits = model(clips)``: clips (B, T, C, H, W) in [0, 1] -> logits (B, T, K).

    Unidirectional, frame t's logits read frames <= t; bidirectional, the whole clip;
    single-frame, frame t alone.
    """

    def __init__(self, config: SegmenterConfig):
        super().__init__()
        assert config.num_classes > 0, "num_classes comes from the data"
        self.config = c = config
        cnn = frame_encoder(c.in_channels, c.cnn_width, c.cnn_blocks,
                            motion_grid(c.frame_size, c.cnn_blocks))
        # at initialisation most of a frame's features are the CNN's constant response to the
        # empty background (frame-to-frame change is ~15% of their norm): standardising each
        # feature over the batch lets the RNN see the motion. Without it a BiLSTM stayed at the
        # class prior for 1,500 steps on the generated clips; with it, 42% at 250 (prior 25%)
        self.frames = TimeDistributed(nn.Sequential(cnn, nn.BatchNorm1d(cnn.out_features)))
        if c.single_frame:
            self.rnn, width = None, cnn.out_features
        else:
            rnn_cls = BiRecurrent if c.bidirectional else Recurrent
            self.rnn = rnn_cls(c.cell, cnn.out_features, c.hidden_size, c.num_layers, c.dropout)
            width = c.hidden_size * (2 if c.bidirectional else 1)
        self.head = MLPHead(width, c.num_classes, c.mlp_layers, dropout=c.dropout)

    def forward(self, clips: Tensor) -> Tensor:
        features = self.frames(clips)  # (B, T, F): every frame on its own
        if self.rnn is not None:
            features, _ = self.rnn(features)  # (B, T, H or 2H)
        return self.head(features)
