"""Reusable recurrent layers (torch only: no I/O, no data, no optimisers)."""

from .cells import CELLS, GRUCell, LSTMCell, RNNCell
from .recurrent import Recurrent, detach_state

__all__ = ["CELLS", "GRUCell", "LSTMCell", "RNNCell", "Recurrent", "detach_state"]
