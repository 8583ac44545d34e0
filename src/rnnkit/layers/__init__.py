"""Reusable recurrent layers (torch only: no I/O, no data, no optimisers)."""

from .bidirectional import Bidirectional, BiRecurrent, reverse_padded
from .cells import CELLS, BaseCell, Cell, GRUCell, LSTMCell, RNNCell
from .conv_rnn import CONV_CELLS, ConvGRUCell, ConvLSTMCell, ConvRecurrent
from .parallel_cells import LRUCell, MinGRUCell, MinLSTMCell  # registers mingru, minlstm, lru
from .recurrent import Recurrent, detach_state
from .time_distributed import SmallCNN, TimeDistributed

__all__ = ["CELLS", "CONV_CELLS", "BaseCell", "BiRecurrent", "Bidirectional", "Cell", "ConvGRUCell",
           "ConvLSTMCell", "ConvRecurrent", "GRUCell", "LRUCell", "LSTMCell", "MinGRUCell",
           "MinLSTMCell", "RNNCell", "Recurrent", "SmallCNN", "TimeDistributed", "detach_state",
           "reverse_padded"]
