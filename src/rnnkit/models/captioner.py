"""Captioner (one-to-many): a CNN encodes an image into the decoder's initial state, and the
decoder writes the caption word by word, reading its own previous word."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..layers.cells import State
from ..layers.mlp import MLPHead
from ..layers.recurrent import Recurrent
from ..layers.recurrent_step import RecurrentStep
from .activity import frame_encoder
from .checks import cell_field, check_config


@dataclass
class CaptionerConfig:
    vocab_size: int = 0
    """V, caption words (and <pad>, <unk>, <bos>, <eos>), filled in from the data."""
    in_channels: int = 1
    """C, channels per image."""
    cnn_width: int = 16
    """Vision: channels of the first conv block of the image CNN (doubled per block)."""
    cnn_blocks: int = 2
    """Vision: conv3x3-ReLU-maxpool blocks of the image CNN."""
    cell: str = cell_field()
    """Recurrent cell type."""
    embed_size: int = 32
    """E, size of the learned word embedding."""
    hidden_size: int = 128
    """H, units per recurrent layer."""
    num_layers: int = 1
    """L, stacked recurrent layers."""
    dropout: float = 0.0
    """Dropout between recurrent layers and before the output layer."""
    max_digits: int = 2
    """Caption: generated images show 1 to this many digits side by side."""

    def __post_init__(self):
        check_config(self, ("in_channels", "cnn_width", "cnn_blocks", "embed_size",
                            "hidden_size", "num_layers", "max_digits"))


class Captioner(nn.Module):
    """``logits = model(images, tokens_in)``; step by step: ``encode`` then ``step`` or
    ``stepper()`` (the ``ConditionalDecoder`` protocol of models/protocols.py).

    Shape: images (B, C, H, W), tokens_in (B, T) = <bos> + caption words; logits (B, T, V).
    The image's features set every layer's initial state (h and, for LSTM, c) through a
    learned projection, as in Vinyals et al. 2015's "Show and Tell" (which fed the image as
    the first input instead).
    """

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        assert config.vocab_size > 0, "vocab_size comes from the data"
        self.config = c = config
        # a 4 x 4 grid of features keeps where each digit is: the caption reads left to right
        self.cnn = frame_encoder(c.in_channels, c.cnn_width, c.cnn_blocks, grid=4)
        self.embed = nn.Embedding(c.vocab_size, c.embed_size, padding_idx=0)
        self.rnn = Recurrent(c.cell, c.embed_size, c.hidden_size, c.num_layers, c.dropout)
        self.init = nn.Linear(self.cnn.out_features,
                              self.rnn.state_count * c.num_layers * c.hidden_size)
        self.head = MLPHead(c.hidden_size, c.vocab_size, dropout=c.dropout)

    def encode(self, images: Tensor) -> State:
        c = self.config
        init = torch.tanh(self.init(self.cnn(images)))  # (B, S*L*H)
        parts = init.view(images.shape[0], self.rnn.state_count, c.num_layers, c.hidden_size)
        return tuple(parts[:, k].transpose(0, 1).contiguous()
                     for k in range(self.rnn.state_count))

    def decode(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        out, state = self.rnn(self.embed(tokens), state)
        return self.head(out), state

    def forward(self, images: Tensor, tokens_in: Tensor) -> Tensor:
        return self.decode(tokens_in, self.encode(images))[0]

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One step through the sequence kernel: tokens (N,) -> log-probs (N, V)."""
        logits, state = self.decode(tokens[:, None], state)
        return logits[:, -1].float().log_softmax(-1), state

    def stepper(self, precision: str = "fp32") -> Callable[[Tensor, State],
                                                          tuple[Tensor, State]]:
        """``step`` without the sequence kernel's cost per call: the decoder runs through a
        RecurrentStep (layers/recurrent_step.py), made once per decoding, without dropout."""
        rnn = RecurrentStep(self.rnn, self.embed, precision)

        @torch.no_grad()
        def step(tokens: Tensor, state: State) -> tuple[Tensor, State]:
            out, state = rnn(tokens, state)
            return self.head(out).float().log_softmax(-1), state
        return step

    @staticmethod
    def reorder_state(state: State, index: Tensor) -> State:
        """Rows ``index`` (M,) int64 of the state, in that order (beam search keeps, drops and
        repeats hypotheses)."""
        return tuple(s.index_select(1, index) for s in state)
