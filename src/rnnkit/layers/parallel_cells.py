"""Cells whose recurrence is linear in h, so a whole sequence trains with a parallel scan:
minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?") and the Linear Recurrent
Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences").

Their gates read the input alone, never h, so each layer is h_t = a_t * h_{t-1} + b_t with a_t
and b_t known for every step at once: ``sequence`` computes them in one matrix product and
runs the scan of scan.py over time (``Recurrent`` calls it for the whole layer), while
``forward`` computes one step of the same function (the cells.py protocol) and
``single_step`` the decoding step.

Each cell is a residual block, as in both papers' deep models, so ``--num-layers 4`` stacks
into a sensible deep model:

    x' = x, or W_in x + b_in when D != H (a stack's first layer, a bidirectional layer's 2H)
    y  = x' + cell(LayerNorm(x'))
    y  = y + MLP(LayerNorm(y)),   MLP = Linear(H, 4H) -> GELU -> Linear(4H, H)

The state is the recurrence's h alone; y, the block's output, is not fed back.

Registered in cells.CELLS as "mingru", "minlstm" and "lru" (the last lines of this module).

Shapes: B batch, T time, D input features, H hidden units (and the LRU's state size).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .affine import product
from .cells import CELLS, LayerStep, State
from .scan import at_least_fp32, linear_scan


def g(x: Tensor) -> Tensor:
    """The papers' positive activation for the candidate state: x + 0.5 for x >= 0, sigmoid(x)
    below (continuous at 0, always > 0)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


class ScanBlock(nn.Module):
    """The residual block around a scan cell (module docstring): the cells.py protocol plus
    ``sequence``. A subclass writes its recurrence, ``recur`` (one step) and ``scan`` (all
    steps), both from the block's normalised input u.

    Args:
        input_size: D. hidden_size: H.
        bias: biases in the input projection, the norms and the MLP.

    Shape: see ``forward`` and ``sequence``; a state is a tuple of ``state_count`` (B, H)
    tensors named ``state_names``.
    """

    state_names: tuple[str, ...] = ("h",)
    state_count = 1
    forget_gate = None  # no gate for init_forget_bias to set
    expansion = 4  # the MLP's hidden units per unit of H

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        H = hidden_size
        self.proj = nn.Linear(input_size, H, bias) if input_size != H else None
        self.norm = nn.LayerNorm(H, bias=bias)
        self.mlp_norm = nn.LayerNorm(H, bias=bias)
        self.fc1 = nn.Linear(H, self.expansion * H, bias)
        self.fc2 = nn.Linear(self.expansion * H, H, bias)

    def init_state(self, batch_size: int, like: Tensor) -> State:
        """Zero state for ``batch_size`` rows, on ``like``'s device and dtype."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return tuple(zeros for _ in range(self.state_count))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step: x (B, D) -> y (B, H) and the new state."""
        state = state if state is not None else self.init_state(x.shape[0], x)
        return self.block(self.widen(x), state)

    def sequence(self, x: Tensor, state: State | None = None,
                 mask: Tensor | None = None) -> tuple[Tensor, State]:
        """All steps at once: x (B, T, D) -> y (B, T, H) and the state after the last step.

        mask: (B, T) bool, False at padding: y is zero there and the state passes it
        unchanged, so each row's final state is the one after its last valid step.
        """
        state = state if state is not None else self.init_state(x.shape[0], x)
        if mask is not None:  # inf or nan in the padding would reach the gradients (0 * inf)
            x = torch.where(mask[..., None], x, 0)
        x = self.widen(x)
        c, state = self.scan(self.norm(x), state, mask)
        y = self.mlp(x + c)
        return (y if mask is None else torch.where(mask[..., None], y, 0)), state

    def block(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One step from the widened input x' (B, H)."""
        c, state = self.recur(self.norm(x), state)
        return self.mlp(x + c), state

    def widen(self, x: Tensor) -> Tensor:
        """x -> x' (..., H): the input projection, when D != H."""
        return x if self.proj is None else self.proj(x)

    def mlp(self, y: Tensor) -> Tensor:
        """y + MLP(LayerNorm(y)), over the last dimension."""
        return y + self.fc2(F.gelu(self.fc1(self.mlp_norm(y))))

    def recur(self, u: Tensor, state: State) -> tuple[Tensor, State]:
        """The cell's step: u (B, H) -> its output (B, H) and the new state."""
        raise NotImplementedError

    def scan(self, u: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """The cell over all steps: u (B, T, H) -> outputs (B, T, H) and the final state."""
        raise NotImplementedError

    def single_step(self, precision: str, embedding: nn.Embedding | None = None,
                    upper: bool = False) -> LayerStep:
        """The decoding step (cells.SteppingCell). ``upper`` changes nothing: no product
        here reads h together with x."""
        return _BlockStep(self, precision, embedding)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class MinGRUCell(ScanBlock):
    """minGRU (Feng et al. 2024): a GRU whose gates read only the input.

    z_t = sigmoid(W_z u_t + b_z),  h~_t = g(W_h u_t + b_h)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    with g the positive activation above; the scan (scan.linear_scan) takes a_t = 1 - z_t,
    computed as sigmoid(-k_z) so that it keeps its digits when z_t is near 1, and
    b_t = z_t * h~_t. The block (``ScanBlock``) adds h_t to its input and the MLP after.
    State ``(h,)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        self.linear = nn.Linear(hidden_size, 2 * hidden_size, bias)  # rows: z, h~

    def recur(self, u: Tensor, state: State) -> tuple[Tensor, State]:
        k_z, k_h = at_least_fp32(self.linear(u)).chunk(2, dim=-1)
        h = torch.lerp(at_least_fp32(state[0]), g(k_h), torch.sigmoid(k_z))
        return h, (h,)

    def scan(self, u: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        # float32 before the gates: bf16 autocast would round a and b to 3 digits, and the
        # scan multiplies up to T of them
        k_z, k_h = at_least_fp32(self.linear(u)).chunk(2, dim=-1)
        h = linear_scan(torch.sigmoid(-k_z), torch.sigmoid(k_z) * g(k_h), state[0], mask)
        return h, (h[:, -1],)


class MinLSTMCell(ScanBlock):
    """minLSTM (Feng et al. 2024): an LSTM whose gates read only the input, without output
    gate or separate cell state, its gates normalised to sum to one.

    f_t = sigmoid(W_f u_t + b_f),  i_t = sigmoid(W_i u_t + b_i),  h~_t = g(W_h u_t + b_h)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
    h_t = f'_t * h_{t-1} + i'_t * h~_t

    With d = log i_t - log f_t = softplus(-k_f) - softplus(-k_i), i'_t = sigmoid(d) and
    f'_t = sigmoid(-d): the normalised gates without a division. State ``(h,)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        self.linear = nn.Linear(hidden_size, 3 * hidden_size, bias)  # rows: f, i, h~

    def _gates(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(d, k_h): d = log i - log f, and the candidate's pre-activation."""
        k_f, k_i, k_h = at_least_fp32(self.linear(u)).chunk(3, dim=-1)
        return F.softplus(-k_f) - F.softplus(-k_i), k_h

    def recur(self, u: Tensor, state: State) -> tuple[Tensor, State]:
        d, k_h = self._gates(u)
        h = torch.lerp(at_least_fp32(state[0]), g(k_h), torch.sigmoid(d))
        return h, (h,)

    def scan(self, u: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        d, k_h = self._gates(u)
        h = linear_scan(torch.sigmoid(-d), torch.sigmoid(d) * g(k_h), state[0], mask)
        return h, (h[:, -1],)


class _NormalLinear(nn.Linear):
    """A Linear without bias whose weight starts N(0, std^2) (the LRU's B and C): its own
    ``reset_parameters``, so a reset (Bidirectional's fresh copy) keeps the LRU's init."""

    def __init__(self, in_features: int, out_features: int, std: float):
        self.std = std
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.std)


class LRUCell(ScanBlock):
    """Linear Recurrent Unit (Orvieto et al. 2023): a diagonal complex linear recurrence.

    lambda = exp(-exp(nu_log) + i exp(theta_log))    (|lambda| < 1 whatever the parameters)
    h_t = lambda * h_{t-1} + gamma * (B u_t),  gamma = exp(gamma_log)
    c_t = Re(C h_t) + D * u_t

    B (H x H complex) is ``in_proj`` (H, 2H): real parts, then imaginary. Re(C h) =
    C_re h_re - C_im h_im is ``out_proj`` (2H, H) applied to [h_re, h_im] (its weight is
    [C_re, -C_im]). D is ``skip``. The initialisation is the paper's: |lambda| uniform on
    the ring [r_min, r_max], phase uniform in [0, max_phase], gamma = sqrt(1 - |lambda|^2)
    (so the state's scale does not grow with its memory), B ~ N(0, 1/(2H)), C ~ N(0, 1/H),
    D ~ N(0, 1). The scan runs in linear space (scan.linear_scan, complex64). State
    ``(h_re, h_im)``, the real and imaginary parts of h.
    """

    state_names = ("h_re", "h_im")
    state_count = 2
    r_min, r_max, max_phase = 0.0, 0.999, 2 * math.pi

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        H = hidden_size
        self.in_proj = _NormalLinear(H, 2 * H, std=1 / math.sqrt(2 * H))
        self.out_proj = _NormalLinear(2 * H, H, std=1 / math.sqrt(H))
        self.nu_log = nn.Parameter(torch.empty(H))
        self.theta_log = nn.Parameter(torch.empty(H))
        self.gamma_log = nn.Parameter(torch.empty(H))
        self.skip = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The recurrence's own parameters (the Linear layers reset themselves)."""
        H = self.hidden_size
        # clamped: a radius or phase of exactly 0 has no log
        radius2 = torch.rand(H) * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2
        self.nu_log.copy_(torch.log(-0.5 * torch.log(radius2.clamp_min(1e-8))))
        self.theta_log.copy_(torch.log(self.max_phase * torch.rand(H).clamp_min(1e-8)))
        self.gamma_log.copy_(0.5 * torch.log1p(-radius2))
        nn.init.normal_(self.skip)

    def _lambda(self) -> Tensor:
        """(H,) complex lambda (complex64 for float32 parameters)."""
        return torch.exp(torch.complex(-self.nu_log.exp(), self.theta_log.exp()))

    def _input(self, u: Tensor) -> Tensor:
        """gamma * (B u), complex (..., H)."""
        bu = at_least_fp32(self.in_proj(u)) * self.gamma_log.exp().repeat(2)
        return torch.complex(*bu.chunk(2, dim=-1))

    def _output(self, h: Tensor, u: Tensor) -> Tensor:
        """Re(C h) + D u, real (..., H)."""
        return self.out_proj(torch.cat([h.real, h.imag], dim=-1)) + self.skip * u

    def recur(self, u: Tensor, state: State) -> tuple[Tensor, State]:
        h = self._lambda() * _complex(state) + self._input(u)
        return self._output(h, u), (h.real, h.imag)

    def scan(self, u: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        h = linear_scan(self._lambda(), self._input(u), _complex(state), mask)
        return self._output(h, u), (h[:, -1].real, h[:, -1].imag)


def _complex(state: State) -> Tensor:
    """(re, im) -> one complex tensor, complex64 at least."""
    re, im = state
    dtype = torch.promote_types(re.dtype, torch.float32)
    return torch.complex(re.to(dtype), im.to(dtype))


class _Product(nn.Module):
    """A Linear's map in a decoding precision (affine.product), in its place in a module."""

    def __init__(self, linear: nn.Linear, precision: str):
        super().__init__()
        self.product = product(linear.weight, linear.bias, precision)

    def forward(self, x: Tensor) -> Tensor:
        return self.product(x)


class _BlockStep:
    """A scan block's decoding step: the block's own ``block`` step, run on a float32 copy of
    it whose Linear layers are products in the precision (affine.py); the norms and the
    recurrence stay float32. A copy, not the block: training may go on while the step is
    in use.

    With an embedding in front, every vocabulary entry's x' (the embedding, through the input
    projection) is a (V, H) float32 table built once, so reading a token is a row lookup.
    """

    def __init__(self, block: ScanBlock, precision: str, embedding: nn.Embedding | None):
        self.block = copy.deepcopy(block).float().eval().requires_grad_(False)
        self.table = None
        if embedding is not None:
            self.table = self.block.widen(embedding.weight.float()).detach().clone()
        for name, module in list(self.block.named_modules()):
            if isinstance(module, nn.Linear):
                parent, _, attr = name.rpartition(".")
                setattr(self.block.get_submodule(parent), attr, _Product(module, precision))

    def __call__(self, x: Tensor, old: State, new: State) -> Tensor:
        x = self.block.widen(x.float()) if self.table is None else F.embedding(x, self.table)
        y, state = self.block.block(x, old)
        for n, s in zip(new, state, strict=True):
            n.copy_(s)
        return y


CELLS["mingru"] = MinGRUCell
CELLS["minlstm"] = MinLSTMCell
CELLS["lru"] = LRUCell
