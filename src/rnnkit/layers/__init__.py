"""Reusable recurrent layers (torch only: no I/O, no data, no optimisers)."""

from .bidirectional import Bidirectional, BiRecurrent, reverse_padded
from .cells import CELLS, GRUCell, LSTMCell, RNNCell
from .recurrent import Recurrent, detach_state

__all__ = ["CELLS", "BiRecurrent", "Bidirectional", "GRUCell", "LSTMCell", "RNNCell",
           "Recurrent", "detach_state", "reverse_padded"]
