"""ONNX export of a recurrent language model as one decoding step.

The graph is the model's single step, as ``CharLM.stepper`` computes it:

    logits, h_next, c_next = step(token, h, c)      # an LSTM; (h,) -> (h_next,) otherwise

token (batch,) int64; each state part (layers, batch, hidden) float32, zeros to start; logits
(batch, vocab) float32. The batch axis is dynamic. A caller reads a prompt token by token,
feeding each ``*_next`` back as the next step's state, then samples from the logits as it likes:
the loop, the sampling and the vocabulary stay outside the graph, so any ONNX runtime runs it.

``FILE.json`` beside ``FILE.onnx`` says how: the inputs and outputs (names, dtypes, shapes),
which output feeds which input, the vocabulary (the checkpoint's meta "vocab") and the rnnkit
meta (config, step, metrics).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import RnnkitError
from .fileio import atomic_write_bytes, atomic_write_json
from .layers.cells import CELLS, BaseCell
from .layers.parallel_cells import MinGRUCell, MinLSTMCell
from .models.char_lm import CharLM
from .tasks import task_of_kind
from .tasks.lm import LanguageModelTask
from .training.checkpoint import first_line, model_from_checkpoint

FORMAT_VERSION = 1
# cells whose one-step forward is plain tensor arithmetic ONNX has operators for; the LRU's
# recurrence is complex-valued, which ONNX has no type for
EXPORTABLE_CELLS = (BaseCell, MinGRUCell, MinLSTMCell)
# the example batch the graph is traced with: torch.export fixes axes of size 0 or 1, so the
# example must be larger for the batch axis to stay dynamic
TRACE_BATCH = 2


class SingleStep(nn.Module):
    """``logits, *state = step(token, state)``: one token through the embedding, each layer's
    cell (its own ``forward``: one step, no in-place writes) and the head. Eval mode only:
    no dropout.

    Shape: token (B,) int64; state a tuple of (L, B, H) tensors, the cells' ``state_names``;
    returns logits (B, V) and the new state, the same tensors in the same order.
    """

    def __init__(self, model: CharLM):
        super().__init__()
        self.embed, self.cells = model.embed, model.rnn.cells
        self.mlp, self.head = model.mlp, model.head

    def forward(self, token: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        x = self.embed(token)
        layers = []
        for k, cell in enumerate(self.cells):
            x, layer_state = cell(x, tuple(s[k] for s in state))
            layers.append(layer_state)
        return (self.head(self.mlp(x)), *(torch.stack(parts) for parts in zip(*layers)))


def export_onnx(payload: dict, out: Path) -> None:
    """Write the checkpoint ``payload`` (``load_checkpoint``'s) as a single-step ONNX graph to
    ``out`` and its description to ``out`` with suffix .json, each atomically; nothing is
    written unless the whole export succeeds. A model this cannot export raises RnnkitError."""
    out = Path(out)
    check_onnx_installed()
    model = exportable_model(payload)
    names = state_names(model)
    graph = onnx_model(model, names)
    info = description(payload["meta"], model, names, graph)
    data = serialized(graph)
    atomic_write_bytes(out, data)
    try:
        atomic_write_json(out.with_suffix(".json"), info)
    except BaseException:
        out.unlink(missing_ok=True)  # a graph without its vocabulary is of no use
        raise


def check_onnx_installed() -> None:
    """torch's exporter translates with onnxscript and builds an onnx model."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RnnkitError(f"ONNX export needs the onnx and onnxscript packages ({e.name} is "
                          "missing); pip install onnx onnxscript") from None


def exportable_model(payload: dict) -> CharLM:
    """The checkpoint's recurrent language model, float32 on the CPU in eval mode, or one
    RnnkitError naming what can be exported."""
    meta = payload["meta"]
    task = task_of_kind(meta.get("kind"))
    if not isinstance(task, LanguageModelTask):
        raise unsupported(f"this checkpoint holds a {getattr(task, 'name', '?')} model")
    model, _, _ = model_from_checkpoint(payload)
    if not isinstance(model, CharLM):
        raise unsupported(f"this checkpoint holds a {type(model).__name__} (--model "
                          f"{meta['config']['train'].get('model')})")
    cell = model.rnn.cells[0]
    if not isinstance(cell, EXPORTABLE_CELLS):
        raise unsupported(f"this model's cell is {model.config.cell}")
    if not model.config.feedback:
        # without feedback the input depends on whether a sequence starts at this step,
        # which one step of a graph cannot know
        raise unsupported("this model was trained with feedback=False")
    return model.float().cpu().eval()


def unsupported(reason: str) -> RnnkitError:
    cells = ", ".join(n for n, c in CELLS.items() if issubclass(c, EXPORTABLE_CELLS))
    return RnnkitError(f"ONNX export supports recurrent language models (--task lm --model "
                       f"rnn) with cells {cells}; {reason}. Export it with --format "
                       "safetensors instead")


def state_names(model: CharLM) -> tuple[str, ...]:
    """The graph's names of the state parts: the cell's own ("h", "c" for an LSTM)."""
    return tuple(model.rnn.cells[0].state_names)


def onnx_model(model: CharLM, names: tuple[str, ...]):
    """The single-step graph, an onnx ModelProto built in memory."""
    c = model.config
    token = torch.zeros(TRACE_BATCH, dtype=torch.int64)
    state = tuple(torch.zeros(c.num_layers, TRACE_BATCH, c.hidden_size) for _ in names)
    batch = torch.export.Dim("batch")
    try:
        with quiet_exporter():
            program = torch.onnx.export(
                SingleStep(model).eval(), (token, state), dynamo=True, verbose=False,
                input_names=["token", *names],
                output_names=["logits", *(next_name(n) for n in names)],
                dynamic_shapes=({0: batch}, tuple({1: batch} for _ in names)))
        return program.model_proto
    except Exception as e:
        # the innermost error says what failed; the exporter's own message is a how-to
        while e.__cause__ is not None:
            e = e.__cause__
        raise RnnkitError(f"torch could not export this model to ONNX ({first_line(e)}); "
                          "export it with --format safetensors instead") from None


def serialized(graph) -> bytes:
    try:
        return graph.SerializeToString()
    except ValueError:  # protobuf refuses a message over 2 GB
        raise RnnkitError(f"the model's weights ({graph.ByteSize():,} bytes) exceed the 2 GB an "
                          "ONNX file holds; export a smaller model") from None


def next_name(name: str) -> str:
    """The output that carries state part ``name`` to the next step."""
    return f"{name}_next"


@contextlib.contextmanager
def quiet_exporter():
    """Silence torch's exporter: its warnings (deprecations inside torch.export, renamed
    axes) and its log lines (operators of packages that are not installed) say nothing the
    user can act on."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def description(meta: dict, model: CharLM, names: tuple[str, ...], graph) -> dict:
    """FILE.json: what a program needs to run the graph without rnnkit."""
    c = model.config
    state_shape = [c.num_layers, "batch", c.hidden_size]
    return {
        "format_version": FORMAT_VERSION,
        "graph": "single step: " + ", ".join(["logits", *map(next_name, names)])
                 + " = step(" + ", ".join(["token", *names]) + ")",
        "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": [tensor_info("token", "int64", ["batch"]),
                   *(tensor_info(n, "float32", state_shape) for n in names)],
        "outputs": [tensor_info("logits", "float32", ["batch", c.vocab_size]),
                    *(tensor_info(next_name(n), "float32", state_shape) for n in names)],
        "state": {"feed_back": {next_name(n): n for n in names}, "initial": "zeros"},
        "vocab": meta["vocab"],
        "rnnkit": {k: v for k, v in meta.items() if k != "vocab"},
    }


def tensor_info(name: str, dtype: str, shape: list) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape}

