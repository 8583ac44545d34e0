"""Hugging Face GPT-2 <-> rnnkit's GPT: the config, the weight names and their layout.

GPT-2 (transformers' GPT2LMHeadModel) is models/gpt.py's GPT with biases, the tanh GELU and
LayerNorm eps 1e-5. Its attention and MLP matrices are Conv1D weights, stored (in, out) where
nn.Linear stores (out, in), so they are transposed on the way in and out; its names:

    [transformer.]wte, wpe, h.{i}.ln_1, h.{i}.attn.c_attn (q, k, v side by side),
    h.{i}.attn.c_proj, h.{i}.ln_2, h.{i}.mlp.c_fc, h.{i}.mlp.c_proj, ln_f; lm_head (untied)

Files written by older transformers also hold each layer's causal mask (h.{i}.attn.bias,
h.{i}.attn.masked_bias): buffers, not weights, and skipped. Reading checks every tensor's
shape in the file's header against config.json before any tensor is read.
"""

from __future__ import annotations

from pathlib import Path

import safetensors
import torch
from torch import Tensor

from ..data.tokenizers import ENDOFTEXT, BPEVocab, GPT2Vocab
from ..errors import RnnkitError
from .gpt import GPTConfig

MODEL_TYPE = "gpt2"
# GPT-2 config's activation_function -> GPTConfig.gelu (gelu_new and gelu_fast are the tanh
# approximation in other words)
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh",
               "gelu": "none"}
# settings of GPT2Config that change the computation, and the value GPT-2 (and GPT) has
REQUIRED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "add_cross_attention": False}
# Conv1D weights: (in, out) in the file
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# per-layer names: Hugging Face -> rnnkit
LAYER_NAMES = {"ln_1": "ln_1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj",
               "ln_2": "ln_2", "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}
SKIPPED = (".attn.bias", ".attn.masked_bias")
SIZES = ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd")


def gpt_config(hf: dict) -> GPTConfig:
    """The GPTConfig of a GPT-2 config.json (already parsed into ``hf``); RnnkitError naming
    the setting when it describes a model GPT is not."""
    sizes = {key: hf.get(key) for key in SIZES}
    bad = next((k for k, v in sizes.items() if type(v) is not int), None)
    if bad is not None:
        raise RnnkitError(f"config.json's {bad} is {sizes[bad]!r}, not a whole number; use "
                          "the config.json saved with the model")
    act = hf.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise RnnkitError(f"config.json's activation_function {act!r} is not one rnnkit's GPT "
                          f"has (it has {', '.join(ACTIVATIONS)})")
    for key, value in REQUIRED.items():
        if hf.get(key, value) != value:
            raise RnnkitError(f"config.json sets {key} to {hf[key]!r}; rnnkit's GPT reads "
                              f"GPT-2 models with {key} {value}")
    if hf.get("n_inner") not in (None, 4 * sizes["n_embd"]):
        raise RnnkitError(f"config.json's n_inner {hf['n_inner']} is not 4 x n_embd; rnnkit's "
                          "GPT has an MLP of 4 x n_embd units")
    try:
        return GPTConfig(vocab_size=sizes["vocab_size"], block_size=sizes["n_positions"],
                         n_layer=sizes["n_layer"], n_head=sizes["n_head"],
                         n_embd=sizes["n_embd"], dropout=0.0, bias=True,
                         tie_weights=bool(hf.get("tie_word_embeddings", True)),
                         gelu=ACTIVATIONS[act],
                         layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)))
    except (TypeError, ValueError) as e:
        raise RnnkitError(f"config.json describes no valid GPT-2 ({e}); use the config.json "
                          "saved with the model") from None


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a GPT-2 file of ``config`` holds (names without ``transformer.``), with
    its shape as stored."""
    c, C = config, config.n_embd
    shapes = {"wte.weight": (c.vocab_size, C), "wpe.weight": (c.block_size, C),
              "ln_f.weight": (C,), "ln_f.bias": (C,)}
    if not c.tie_weights:
        shapes["lm_head.weight"] = (c.vocab_size, C)
    layer = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C),
             "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C),
             "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
             "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,),
             "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,)}
    for i in range(c.n_layer):
        shapes.update({f"h.{i}.{k}": v for k, v in layer.items()})
    return shapes


def hf_name(stored: str) -> str:
    """A stored name without GPT2LMHeadModel's ``transformer.`` prefix."""
    return stored.removeprefix("transformer.")


def misshapen(config: GPTConfig, stored: dict[str, tuple[int, ...]]) -> str | None:
    """The first tensor where the file (``stored``: name -> shape, from its header) and the
    model config.json describes disagree, said as a reason; None when they agree. The layers
    are compared one at a time, so an absurd n_layer stops at the first missing tensor."""
    have = {hf_name(k): tuple(v) for k, v in stored.items() if not k.endswith(SKIPPED)}
    if config.tie_weights:  # some files repeat the tied head; it is the embedding
        have.pop("lm_head.weight", None)
    if config.n_layer > len(have):
        return f"config.json's n_layer {config.n_layer} exceeds the file's {len(have)} tensors"
    wanted = expected_shapes(config)
    for key, shape in wanted.items():
        if key not in have:
            return f"{key}: config.json wants {shape}, the file has no such tensor"
        if have[key] != shape:
            return f"{key}: config.json wants {shape}, the file holds {have[key]}"
    extra = next((k for k in have if k not in wanted), None)
    return None if extra is None else f"{extra}: in the file, not in a GPT-2 of config.json"


def to_rnnkit(config: GPTConfig, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """GPT-2 weights (as stored, shapes already checked) -> GPT's state_dict, float32."""
    hf = {hf_name(k): v for k, v in tensors.items() if not k.endswith(SKIPPED)}
    out = {"wte.weight": hf["wte.weight"], "wpe.weight": hf["wpe.weight"],
           "ln_f.weight": hf["ln_f.weight"], "ln_f.bias": hf["ln_f.bias"]}
    for i in range(config.n_layer):
        for theirs, ours in LAYER_NAMES.items():
            for part in ("weight", "bias"):
                t = hf[f"h.{i}.{theirs}.{part}"]
                out[f"blocks.{i}.{ours}.{part}"] = t.t() if f"{theirs}.{part}" in CONV1D else t
    out["head.weight"] = hf["wte.weight"] if config.tie_weights else hf["lm_head.weight"]
    return {k: v.float().contiguous() for k, v in out.items()}


def from_rnnkit(config: GPTConfig, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """GPT's state_dict -> GPT-2's tensors, named as save_pretrained names them. A GPT
    without biases gets zero ones (the same function), as GPT-2 always has them."""
    def get(key: str, shape: tuple[int, ...]) -> Tensor:
        return state[key] if key in state else torch.zeros(shape)

    C = config.n_embd
    out = {"wte.weight": state["wte.weight"], "wpe.weight": state["wpe.weight"],
           "ln_f.weight": state["ln_f.weight"], "ln_f.bias": get("ln_f.bias", (C,))}
    for i in range(config.n_layer):
        for theirs, ours in LAYER_NAMES.items():
            w = state[f"blocks.{i}.{ours}.weight"]
            out[f"h.{i}.{theirs}.weight"] = w.t() if f"{theirs}.weight" in CONV1D else w
            width = w.shape[0]  # nn.Linear: (out, in); LayerNorm: (C,)
            out[f"h.{i}.{theirs}.bias"] = get(f"blocks.{i}.{ours}.bias", (width,))
    tensors = {f"transformer.{k}": v for k, v in out.items()}
    if not config.tie_weights:
        tensors["lm_head.weight"] = state["head.weight"]
    return {k: v.detach().float().contiguous() for k, v in tensors.items()}


def hf_config(config: GPTConfig, vocab_size: int) -> dict:
    """config.json of the GPT-2 that ``config`` is (transformers reads it as GPT2Config)."""
    act = "gelu_new" if config.gelu == "tanh" else "gelu"
    drop = config.dropout
    return {"architectures": ["GPT2LMHeadModel"], "model_type": MODEL_TYPE,
            "vocab_size": vocab_size, "n_positions": config.block_size,
            "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head,
            "n_inner": None, "activation_function": act,
            "layer_norm_epsilon": config.layer_norm_eps,
            "tie_word_embeddings": config.tie_weights, "resid_pdrop": drop,
            "embd_pdrop": drop, "attn_pdrop": drop, "initializer_range": 0.02,
            "scale_attn_weights": True, "use_cache": True}


def read_folder(folder: Path, hf: dict) -> tuple[GPTConfig, dict[str, Tensor], GPT2Vocab]:
    """The GPT config, GPT state_dict (float32, on the CPU) and tokenizer of a GPT-2 folder
    whose config.json is ``hf``. The cheap checks come first (config, tokenizer files, the
    weights' shapes in the file's header); tensors are read only once all pass."""
    config = gpt_config(hf)
    if not (folder / "tokenizer.json").is_file() and not all(
            (folder / n).is_file() for n in ("vocab.json", "merges.txt")):
        raise RnnkitError(f"{str(folder)!r} has no tokenizer: add tokenizer.json, or vocab.json "
                          "and merges.txt (the tokenizer's save_pretrained writes them)")
    weights = folder / "model.safetensors"
    try:
        with safetensors.safe_open(weights, framework="pt", device="cpu") as f:
            reason = misshapen(config, {k: f.get_slice(k).get_shape() for k in f.keys()})
            if reason is None:
                reason = not_float(f)
            if reason is not None:
                raise RnnkitError(f"{str(weights)!r} does not fit its config.json ({reason}); "
                                  "use the config.json saved with these weights")
            vocab = read_tokenizer(folder, config)
            tensors = {k: f.get_tensor(k) for k in f.keys() if not k.endswith(SKIPPED)}
    except (safetensors.SafetensorError, OSError) as e:
        raise RnnkitError(f"{str(weights)!r} is corrupt or no safetensors file ({first_line(e)}); "
                          "save the model again with save_pretrained") from None
    return config, to_rnnkit(config, tensors), vocab


def not_float(f) -> str | None:
    """The first tensor of an open safetensors file that holds no floating-point numbers."""
    for k in f.keys():
        dtype = f.get_slice(k).get_dtype()
        if dtype not in ("F64", "F32", "F16", "BF16") and not k.endswith(SKIPPED):
            return f"{k} holds {dtype}, not floating-point weights"
    return None


def read_tokenizer(folder: Path, config: GPTConfig) -> GPT2Vocab:
    try:
        vocab = GPT2Vocab.from_files(folder)
    except (RnnkitError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # the tokenizers library's errors (a Rust panic is no Exception)
        raise RnnkitError(f"the tokenizer files of {str(folder)!r} are not a tokenizer the "
                          f"tokenizers library reads ({first_line(e)}); save them again with "
                          "the tokenizer's save_pretrained") from None
    if len(vocab) != config.vocab_size:
        raise RnnkitError(f"the tokenizer of {str(folder)!r} has {len(vocab)} tokens, "
                          f"config.json's vocab_size is {config.vocab_size}; use the "
                          "tokenizer saved with these weights")
    return vocab


def first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__


def special_ids(vocab: BPEVocab) -> dict:
    """config.json's bos/eos token ids: <|endoftext|> where the tokenizer has it, else none
    (transformers would assume GPT-2's 50256)."""
    i = vocab.tok.token_to_id(ENDOFTEXT)
    return {"bos_token_id": i, "eos_token_id": i}
