"""RecurrentConfig: the settings every embedding -> stacked RNN model shares (CharLM and the
pair tasks' SequenceEncoder), each written once here."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import cell_field, check_config


@dataclass
class RecurrentConfig:
    vocab_size: int = 0
    """V, the (input) vocabulary size, filled in from the data."""
    cell: str = cell_field()
    """Recurrent cell type."""
    embed_size: int = 64
    """E, size of the learned character (token) embedding."""
    hidden_size: int = 256
    """H, units per recurrent layer and direction (char-rnn's rnn_size)."""
    num_layers: int = 2
    """L, stacked recurrent layers."""
    dropout: float = 0.0
    """Dropout between recurrent layers and before the output layers."""
    forget_bias: float = 0.0
    """Cells with a forget gate (LSTM): start its bias at this value (1.0 as in Jozefowicz
    et al. 2015, so cells remember by default); 0 keeps torch's initialisation."""

    def __post_init__(self):
        check_config(self, ("embed_size", "hidden_size", "num_layers"))
