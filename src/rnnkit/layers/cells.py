"""Recurrent cells: one time step each, with torch's parameter names and gate order.

Every cell has the same protocol (``Cell`` below), ``y_t, state = cell(x_t, state)``, where
``state`` is a tuple of (B, H) tensors: ``(h,)`` for RNNCell and GRUCell, ``(h, c)`` for
LSTMCell. The parameters ``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H), ``bias_ih`` and
``bias_hh`` (G*H) copy one-to-one into ``nn.RNNCell/GRUCell/LSTMCell`` or into layer k of
``nn.RNN/GRU/LSTM``.

A cell here is two parts: ``gates(x, h)``, the linear products ``gi = W_ih x + b_ih`` and
``gh = W_hh h + b_hh``, and ``update(gi, gh, state)``, the elementwise rest; ``forward`` runs
one after the other. ``single_step`` makes the cell's step for decoding (recurrent_step.py):
from any cell's weights and ``update`` in every precision, and for the three cells below a
faster in-place version of their own update.

Adding a cell: subclass ``BaseCell``, set ``num_gates`` (and ``state_names``/``state_count``
if it carries more than h), write ``update``, and register it in one line,
``CELLS["name"] = NewCell``; every model config then accepts ``cell="name"`` (and the CLI
``--cell name``). tests/test_custom_cell.py is the worked example. parallel_cells.py registers
three more this way: minGRU, minLSTM and the LRU, trained with a parallel scan.

Shapes: B batch, D input features, H hidden units, G gates (1 rnn, 3 gru, 4 lstm), V
vocabulary entries.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from .affine import Affine, Diagonal, linear, product

State = tuple[Tensor, ...]


class LayerStep(Protocol):
    """One layer of a ``RecurrentStep``: ``y = step(x, old, new)``, without gradient.

    x: the layer's input, (B,) token ids for a step made with an embedding, else (B, D)
    features. old: the layer's state, a tuple of (B, H) float32 tensors. new: (B, H) float32
    tensors the step writes the new state into. Returns y (B, H) float32, possibly a view of
    ``new[0]``.
    """

    def __call__(self, x: Tensor, old: State, new: State) -> Tensor: ...


class Cell(Protocol):
    """What ``Recurrent`` (and so every model) needs of a cell, as Keras's cell protocol.

    Made as ``cls(input_size, hidden_size, bias)``; ``y_t, state = cell(x_t, state)`` with
    ``state`` a tuple of ``state_count`` (B, H) tensors named ``state_names`` (None: zeros).
    A cell without ``single_step`` is still decoded, by calling it (in fp32 only). A cell
    may also compute a whole layer at once, ``y, state = cell.sequence(x, state, mask)``
    (x (B, T, D), mask (B, T) bool or None), which ``Recurrent`` then calls instead of
    stepping (parallel_cells.py).
    """

    state_names: tuple[str, ...]
    state_count: int

    def init_state(self, batch_size: int, like: Tensor) -> State: ...

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]: ...


class SteppingCell(Cell, Protocol):
    """A cell that makes its own single step for ``RecurrentStep``."""

    def single_step(self, precision: str, embedding: nn.Embedding | None = None,
                    upper: bool = False) -> LayerStep:
        """This cell's ``LayerStep`` in ``precision`` ("fp32", "bf16", "int8").

        Args:
            precision: the precision of the linear products (affine.py).
            embedding: the embedding in front of the layer, if any: x is then token ids.
            upper: the layer reads the float32 outputs of the layer below (not the stack's
                own inputs), so x and h may be multiplied by the weights at once.
        """
        ...


class BaseCell(nn.Module):
    """Parameters, initialisation, ``forward`` and the general single step of the cells.

    A subclass sets ``num_gates`` and writes ``update``. A (H,) ``weight_hh`` (a parameter
    assigned after ``__init__``) is a diagonal recurrent weight: ``gh = weight_hh * h +
    bias_hh``, in ``forward`` and in the single step alike.
    """

    num_gates = 1
    state_names: tuple[str, ...] = ("h",)
    state_count = 1  # tensors in a state tuple
    # which H-row block of the gates is a forget gate (init_forget_bias), None: there is none
    forget_gate: int | None = None

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gh = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gh)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(gh)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's own init (uniform in +-1/sqrt(H)), so fresh models match nn.LSTM statistics.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch_size: int, like: Tensor) -> State:
        """Zero state for ``batch_size`` rows, on ``like``'s device and dtype."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return tuple(zeros for _ in range(self.state_count))

    def gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(gi, gh) = (W_ih x + b_ih, W_hh h + b_hh), each (B, G*H)."""
        return linear(x, self.weight_ih, self.bias_ih), linear(h, self.weight_hh, self.bias_hh)

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        """(y, new state) from the gates of ``gates`` and the old state."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        state = state if state is not None else self.init_state(x.shape[0], x)
        return self.update(*self.gates(x, state[0]), state)

    def single_step(self, precision: str, embedding: nn.Embedding | None = None,
                    upper: bool = False) -> LayerStep:
        """The general step (``SteppingCell.single_step``): the products of ``gates`` in
        ``precision``, then ``update``. A subclass with its own ``gates`` or ``forward`` is
        called as it is (fp32 only): only that code knows what it computes."""
        if _overrides(self, BaseCell, "gates", "forward"):
            return plain_step(self, precision, embedding)
        return _GeneralStep(self, precision, embedding)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(BaseCell):
    """Elman cell: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        h = torch.tanh(gi + gh)
        return h, (h,)

    def single_step(self, precision: str, embedding: nn.Embedding | None = None,
                    upper: bool = False) -> LayerStep:
        if _overrides(self, RNNCell, "gates", "update", "forward"):
            return super().single_step(precision, embedding, upper)
        return _RNNStep(self, precision, embedding, upper)


class GRUCell(BaseCell):
    """GRU (Cho et al. 2014) in torch's variant: the reset gate multiplies W_hh h + b_hn.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
    """

    num_gates = 3

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        h = gru_update(gi, gh, state[0])
        return h, (h,)

    def single_step(self, precision: str, embedding: nn.Embedding | None = None,
                    upper: bool = False) -> LayerStep:
        if _overrides(self, GRUCell, "gates", "update", "forward"):
            return super().single_step(precision, embedding, upper)
        return _GRUStep(self, precision, embedding)


def gru_update(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """A GRU's h' from its input-side and hidden-side gates (r, z, n along dim 1, each side
    with its own bias): the one home of the GRU arithmetic, for GRUCell and ConvGRUCell."""
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class LSTMCell(BaseCell):
    """LSTM (Hochreiter & Schmidhuber 1997, with forget gate), gate order i, f, g, o as in torch.

    i, f, o = sigmoid(.), g = tanh(.) of W_ih x + b_ih + W_hh h + b_hh (split in four)
    c' = f * c + i * g;  h' = o * tanh(c')
    """

    num_gates = 4
    state_names = ("h", "c")
    state_count = 2
    forget_gate = 1

    def update(self, gi: Tensor, gh: Tensor, state: State) -> tuple[Tensor, State]:
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def single_step(self, precision: str, embedding: nn.Embedding | None = None,
                    upper: bool = False) -> LayerStep:
        if _overrides(self, LSTMCell, "gates", "update", "forward"):
            return super().single_step(precision, embedding, upper)
        return _LSTMStep(self, precision, embedding, upper)


CELLS: dict[str, type[Cell]] = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}


def cell_class(cell: str | type[Cell], table: dict[str, type] = CELLS) -> type:
    """The class of a cell given by name (a key of ``table``) or as a class."""
    if not isinstance(cell, str):
        return cell
    if cell not in table:
        raise ValueError(f"cell must be one of {tuple(table)}, got {cell!r}")
    return table[cell]


@torch.no_grad()
def init_forget_bias(module: nn.Module, value: float) -> None:
    """Start the forget gate of every cell in ``module`` that has one (``forget_gate``: the
    LSTMs) at bias ``value`` (1.0 as in Jozefowicz et al. 2015): the cells then keep their
    memory by default, and gradients reach far back from the first step instead of fading
    like 0.5**T. Cells without a forget gate are left as they are."""
    for cell in module.modules():
        gate = getattr(cell, "forget_gate", None)
        if gate is not None and cell.bias_ih is not None:
            rows = slice(gate * cell.hidden_size, (gate + 1) * cell.hidden_size)
            cell.bias_ih[rows].fill_(value)
            cell.bias_hh[rows].zero_()


def _overrides(cell: nn.Module, base: type, *names: str) -> bool:
    """Whether ``cell``'s class replaces any of ``base``'s methods ``names``: a fast step
    written for ``base``'s arithmetic would then compute something else."""
    return any(getattr(type(cell), n) is not getattr(base, n) for n in names)


# ---------------------------------------------------------------- single steps (decoding)


def plain_step(cell: nn.Module, precision: str, embedding: nn.Embedding | None) -> LayerStep:
    """The step of a cell known only by its protocol: the cell itself, called in fp32."""
    if precision != "fp32":
        raise ValueError(f"{type(cell).__name__} has no {precision} single step (it computes "
                         "its own products); decode it with precision fp32")

    def step(x: Tensor, old: State, new: State) -> Tensor:
        y, state = cell((x if embedding is None else embedding(x)).float(), old)
        for n, s in zip(new, state, strict=True):
            n.copy_(s)
        return y
    return step


def _scaled(weight: Tensor, bias: Tensor | None, rows: Tensor | None,
            precision: str) -> Affine | Diagonal:
    """``product`` of the weights with gate row r scaled by ``rows[r]`` (None: by 1)."""
    if rows is not None:
        weight, bias = weight * rows, None if bias is None else bias * rows[:, 0]
    return product(weight, bias, precision)


class _GeneralStep:
    """A cell's step from its weights and its own ``update``: the products in the precision,
    the update as the cell writes it.

    With an embedding in front, the input product of every vocabulary entry (embedding ->
    W_ih, plus the bias) is a (V, G*H) table built once, so reading a token is a row lookup.
    ``rows`` (G*H, 1) scales each gate row of the products (the LSTM step doubles its
    candidate's); ``summed`` folds b_hh into b_ih, for updates that read only gi + gh.
    """

    def __init__(self, cell: BaseCell, precision: str, embedding: nn.Embedding | None = None,
                 rows: Tensor | None = None, summed: bool = False):
        self.cell, self.hidden_size = cell, cell.hidden_size
        b_ih, b_hh = cell.bias_ih, cell.bias_hh
        if summed and b_ih is not None:
            b_ih, b_hh = b_ih + b_hh, None
        self.table = self.ih = None
        if embedding is not None:
            table = linear(embedding.weight, cell.weight_ih, b_ih)
            self.table = (table if rows is None else table * rows.T).float()
        else:
            self.ih = _scaled(cell.weight_ih, b_ih, rows, precision)
        self.hh = _scaled(cell.weight_hh, b_hh, rows, precision)

    def gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        """(gi, gh), both this step's own tensors (free to overwrite); gh None when it is
        already summed into gi."""
        gi = self.ih(x.float()) if self.table is None else nn.functional.embedding(x, self.table)
        return gi, self.hh(h)

    def __call__(self, x: Tensor, old: State, new: State) -> Tensor:
        y, state = self.cell.update(*self.gates(x, old[0]), old)
        for n, s in zip(new, state, strict=True):
            n.copy_(s)
        return y


# The steps of the standard cells overwrite their gates in place and write the state straight
# into ``new``: at batch 64 the allocations and extra passes of the plain update cost about a
# tenth of a step.


def tanh_(x: Tensor, doubled: bool = False) -> Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1, in place: torch's CPU tanh takes several times as long
    as its sigmoid on these sizes, so even four cheap ops beat it. ``doubled``: x already
    holds 2x."""
    return (x if doubled else x.mul_(2)).sigmoid_().mul_(2).sub_(1)


class _SummedStep(_GeneralStep):
    """Products of a cell whose update reads only gi + gh (RNN, LSTM): one bias, and an
    upper layer multiplies [x, h] by its stacked [W_ih; W_hh] at once."""

    def __init__(self, cell: BaseCell, precision: str, embedding: nn.Embedding | None,
                 upper: bool, rows: Tensor | None = None):
        self.both = None
        if not upper:
            super().__init__(cell, precision, embedding, rows, summed=True)
            return
        self.cell, self.hidden_size = cell, cell.hidden_size
        bias = None if cell.bias_ih is None else cell.bias_ih + cell.bias_hh
        self.both = _scaled(torch.cat([cell.weight_ih, cell.weight_hh], dim=1), bias, rows,
                            precision)

    def gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.both is not None:
            return self.both(torch.cat([x, h], dim=1)), None
        return super().gates(x, h)


class _RNNStep(_SummedStep):
    def __call__(self, x: Tensor, old: State, new: State) -> Tensor:
        gi, gh = self.gates(x, old[0])
        return tanh_(torch.add(gi, gh, out=new[0]) if gh is not None else new[0].copy_(gi))


class _LSTMStep(_SummedStep):
    """The candidate gate's rows are doubled when the step is made, so the one sigmoid over
    all gates gives sigmoid(2g), and tanh(g) = 2 sigmoid(2g) - 1 costs two cheap ops."""

    def __init__(self, cell: LSTMCell, precision: str, embedding: nn.Embedding | None,
                 upper: bool):
        H = cell.hidden_size
        rows = torch.ones(cell.weight_hh.shape[0], 1, device=cell.weight_hh.device)
        rows[2 * H:3 * H] = 2
        super().__init__(cell, precision, embedding, upper, rows)

    def __call__(self, x: Tensor, old: State, new: State) -> Tensor:
        H = self.hidden_size
        gi, gh = self.gates(x, old[0])
        act = (gi if gh is None else gi.add_(gh)).sigmoid_()  # i, f, g, o
        g = act[:, 2 * H:3 * H].mul_(2).sub_(1)  # tanh(g): its rows were doubled
        c = torch.mul(act[:, H:2 * H], old[1], out=new[1])
        c.addcmul_(act[:, :H], g)
        return torch.mul(act[:, 3 * H:], tanh_(c * 2, doubled=True), out=new[0])


class _GRUStep(_GeneralStep):
    """GRU's candidate gate scales only the hidden part by r, so its biases stay apart."""

    def __call__(self, x: Tensor, old: State, new: State) -> Tensor:
        H = self.hidden_size
        gi, gh = self.gates(x, old[0])  # r, z, n
        rz = gi[:, :2 * H].add_(gh[:, :2 * H]).sigmoid_()
        n = tanh_(gi[:, 2 * H:].addcmul_(rz[:, :H], gh[:, 2 * H:]))
        return torch.lerp(n, old[0], rz[:, H:], out=new[0])  # (1 - z) * n + z * h
