"""Transcriber (many-to-many, unaligned): speech features -> characters, trained with CTC.

    features (B, T, D) -> conv front end (two stride-2 convolutions: T/4 steps)
                       -> stacked recurrent layers (bidirectional by default)
                       -> linear layer -> log-probs over the characters and the CTC blank

The lecture's case for bidirectional RNNs: what a sound is depends on what comes after it,
so each output step reads the whole utterance. With ``bidirectional = False`` the same stack
reads left to right only (the comparison in examples/speech_bidirectional.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..layers.bidirectional import BiRecurrent
from ..layers.cells import init_forget_bias
from ..layers.recurrent import Recurrent
from .checks import cell_field, check_config


@dataclass
class TranscriberConfig:
    vocab_size: int = 0
    """Output labels (the transcripts' characters plus the CTC blank), filled in from the
    data."""
    feature_size: int = 0
    """D, features per input frame (80 log-mel bins, or a .npz's own), filled in from the
    data."""
    conv_channels: int = 32
    """Speech: channels of the two stride-2 convolutions of the front end."""
    cell: str = cell_field()
    """Recurrent cell type."""
    hidden_size: int = 192
    """H, units per recurrent layer and direction."""
    num_layers: int = 3
    """L, stacked recurrent layers."""
    dropout: float = 0.1
    """Dropout between recurrent layers and before the output layers."""
    bidirectional: bool = True
    """Read the sequence in both directions, so every step sees the future (tag, transcribe:
    --no-bidirectional reads left to right only)."""
    spec_augment: bool = False
    """Speech: SpecAugment-style masking while training: two bands of up to 15 mel bins and
    two spans of up to 5% of the frames are set to zero in each utterance."""
    forget_bias: float = 1.0
    """Cells with a forget gate (LSTM): start its bias at this value (1.0 as in Jozefowicz
    et al. 2015, so cells remember by default); 0 keeps torch's initialisation."""

    def __post_init__(self):
        check_config(self, ("conv_channels", "hidden_size", "num_layers"))


def conv_lengths(lengths: Tensor) -> Tensor:
    """Steps after the front end for inputs of ``lengths`` frames: each 3-wide, stride-2,
    padding-1 convolution maps T steps to ceil(T / 2)."""
    return conv_lengths_once(conv_lengths_once(lengths))


def conv_lengths_once(lengths: Tensor) -> Tensor:
    return torch.div(lengths + 1, 2, rounding_mode="floor")


def mask_steps(x: Tensor, lengths: Tensor, dim: int) -> Tensor:
    """``x`` with the steps past each row's length (along ``dim``) set to zero, so padding
    reads the same as the zeros the convolution pads with: a padded batch computes what each
    utterance alone would."""
    steps = torch.arange(x.shape[dim], device=x.device)
    keep = steps[None, :] < lengths.to(x.device)[:, None]  # (B, T)
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = x.shape[dim]
    return x * keep.view(shape).to(x.dtype)


def spec_augment(features: Tensor, lengths: Tensor, bands: int = 2, band_width: int = 15,
                 spans: int = 2, span_frac: float = 0.05) -> Tensor:
    """Park et al. 2019's frequency and time masks, drawn per utterance from torch's global
    generator (so a seeded run repeats them)."""
    b, t, d = features.shape
    keep = torch.ones(b, t, d, device=features.device, dtype=features.dtype)
    bins = torch.arange(d, device=features.device)
    frames = torch.arange(t, device=features.device)
    for _ in range(bands):
        width = torch.randint(0, min(band_width, d) + 1, (b, 1), device=features.device)
        start = (torch.rand(b, 1, device=features.device) * (d - width + 1)).long()
        keep *= ~((bins >= start) & (bins < start + width))[:, None, :]
    for _ in range(spans):
        longest = (lengths.to(features.device) * span_frac).long().clamp(min=1)[:, None]
        width = (torch.rand(b, 1, device=features.device) * (longest + 1)).long()
        start = (torch.rand(b, 1, device=features.device)
                 * (lengths.to(features.device)[:, None] - width + 1).clamp(min=1)).long()
        keep *= ~((frames >= start) & (frames < start + width))[:, :, None]
    return features * keep


class Transcriber(nn.Module):
    """``log_probs, out_lengths = model(features, lengths)``.

    Shape:
        features (B, T, D) float, zero past each row's length; lengths (B,) int64 frames.
        log_probs (B, ceil(ceil(T / 2) / 2), V) float32 log-softmax over the labels (id 0 is
        the CTC blank); out_lengths (B,) = conv_lengths(lengths).
    """

    def __init__(self, config: TranscriberConfig):
        super().__init__()
        assert config.vocab_size > 1 and config.feature_size > 0, "sizes come from the data"
        self.config = c = config
        self.conv1 = nn.Conv2d(1, c.conv_channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c.conv_channels, c.conv_channels, 3, stride=2, padding=1)
        freq = (c.feature_size + 1) // 2
        freq = (freq + 1) // 2
        rnn_cls = BiRecurrent if c.bidirectional else Recurrent
        self.rnn = rnn_cls(c.cell, c.conv_channels * freq, c.hidden_size, c.num_layers,
                           c.dropout)
        if c.forget_bias:
            init_forget_bias(self.rnn, c.forget_bias)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size * (2 if c.bidirectional else 1), c.vocab_size)

    def front_end(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, D) -> (B, T', C * D') features per step, and the (B,) lengths T'."""
        x = features[:, None]  # (B, 1, T, D): time and frequency as an image
        half = conv_lengths_once(lengths)
        x = mask_steps(torch.relu(self.conv1(x)), half, dim=2)
        quarter = conv_lengths_once(half)
        x = mask_steps(torch.relu(self.conv2(x)), quarter, dim=2)
        b, c, t, d = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * d), quarter

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and self.config.spec_augment:
            features = spec_augment(features, lengths)
        x, out_lengths = self.front_end(features, lengths)
        out, _ = self.rnn(x, None, out_lengths.clamp(min=1))
        logits = self.head(self.drop(out)).float()
        return torch.log_softmax(logits, dim=-1), out_lengths
