"""Training arithmetic: precision (autocast, fp16's gradient scaler), device copies, compiling.

Precision: fp32, bf16 autocast, or fp16 autocast with a gradient scaler (CUDA only). Under
fp16 a step whose scaled gradients overflow is the scaler's business, not a fault: it skips
that update and halves its scale, and the step counts in ``overflow_steps``, never toward the
--max-bad-steps streak. Only a non-finite loss (as in fp32 and bf16), or an overflow once the
scale is already below 1 (scaling down further cannot help), is a bad step. The scaler's
state is saved in last.pt, so resume stays exact.
"""

from __future__ import annotations

import enum
from contextlib import contextmanager

import torch

from ..errors import RnnkitError
from .distributed import SameOnEveryRank, first_line


class Update(enum.Enum):
    """What ``apply_update`` did with a step. True only when the weights were updated."""
    APPLIED = "applied"
    OVERFLOW = "overflow"  # fp16: the scaler skipped it and lowered its scale
    BAD = "bad"  # a non-finite loss or gradient: skipped, counts toward --max-bad-steps

    def __bool__(self) -> bool:
        return self is Update.APPLIED


# below this the fp16 scale is no longer what overflows: the gradients themselves do
MIN_SCALE = 1.0


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast: asked for, or "auto" on native bf16 hardware."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise SameOnEveryRank("--precision fp16 needs --device cuda (CPU float16 autocast has "
                              "no LSTM kernel); on the CPU use --precision bf16 or fp32")


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16's gradient scaler; a disabled one (a no-op, nothing saved) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def autocast(device: torch.device, bf16: bool, scaler=None):
    """The training forward's autocast: fp16 when a gradient scaler is active (it exists only
    for fp16), else bf16 or none."""
    fp16 = scaler is not None and scaler.is_enabled()
    return torch.autocast(device.type, dtype=torch.float16 if fp16 else torch.bfloat16,
                          enabled=fp16 or bf16)


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model's compiled forward, for training only. dynamic=True: the kernels do not
    depend on which batch shapes came first, so a resumed run compiles the same ones."""
    return torch.compile(model, dynamic=True)


@contextmanager
def compile_errors(compiled: bool):
    """A torch.compile failure inside turned into one error line (when ``compiled``)."""
    try:
        yield
    except RuntimeError as e:
        message = compile_failure(e) if compiled else None
        if message is None:
            raise
        raise RnnkitError(message) from None


def compile_failure(e: BaseException) -> str | None:
    """One error line for a torch.compile failure (no C++ compiler, no Triton), else None."""
    from torch._dynamo.exc import BackendCompilerFailed

    if not isinstance(e, BackendCompilerFailed):
        return None
    return (f"--compile failed: torch.compile could not build the model "
            f"({first_line(getattr(e, 'inner_exception', None) or e)}); install a C++ "
            "compiler (CPU) or Triton (CUDA), or go on without it: --resume --no-compile")


def scaled_update(model, optimizer, loss, max_norm: float, scaler) -> Update:
    """apply_update under fp16: backward through the scaled loss, then unscale before the clip
    so that the threshold is in true gradient units."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scale = scaler.get_scale()
    finite = bool(torch.isfinite(norm))
    if finite:
        scaler.step(optimizer)
    scaler.update()  # halves the scale after inf/nan gradients, grows it after a good streak
    if finite:
        return Update.APPLIED
    optimizer.zero_grad(set_to_none=True)
    # an overflow is one the scaler saw and answered by lowering its scale; a non-finite norm
    # of finite gradients, or an overflow at a scale already below 1, is a real fault
    lowered = scaler.get_scale() < scale
    return Update.OVERFLOW if lowered and scale >= MIN_SCALE else Update.BAD


DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_HELP = ("where to compute: cpu, cuda (an NVIDIA GPU) or mps (Apple silicon); auto picks "
               "cuda, then mps, then cpu")


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(name: str) -> torch.device:
    """--device as a torch.device: auto is cuda, else mps (Apple silicon), else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RnnkitError("--device cuda was asked for, but no CUDA GPU is available; "
                          "use --device cpu")
    if name == "mps" and not mps_available():
        raise RnnkitError("--device mps was asked for, but this machine has no Apple-silicon "
                          "GPU (or torch was built without MPS); use --device cpu")
    return torch.device(name)

