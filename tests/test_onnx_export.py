"""ONNX export: the single-step graph, run by onnxruntime with its state fed back, computes
what the model's own stepper computes; the JSON beside it says how to run it; models it cannot
export fail in one error line and leave no file behind."""

import json
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import rnnkit  # noqa: E402
from rnnkit.data import tokenizers  # noqa: E402
from rnnkit.data.vocab import CharVocab  # noqa: E402
from rnnkit.decoding import prompt_ids  # noqa: E402
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.models import GPT, CharLM, CharLMConfig, GPTConfig  # noqa: E402
from rnnkit.onnx_export import export_onnx  # noqa: E402
from rnnkit.tasks.lm import LanguageModelTask  # noqa: E402
from rnnkit.tasks.pairs import Seq2SeqTask  # noqa: E402
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

VOCAB = CharVocab(sorted(set("the quick brown fox jumps over the lazy dog.\n")))
STEPS = 24


def save_lm(folder, model, model_name="rnn"):
    """A checkpoint as training writes it, of ``model`` (CharLM or GPT) over VOCAB."""
    meta = {"kind": LanguageModelTask.kind,
            "config": {"model": asdict(model.config), "train": {"model": model_name}},
            "vocab": VOCAB.to_json(), "step": 7, "metrics": {"val_loss": 2.5}}
    path = folder / "model.pt"
    save_checkpoint(path, model.state_dict(), meta)
    return path


def char_lm(cell="lstm", layers=2, **config):
    torch.manual_seed(0)
    return CharLM(CharLMConfig(vocab_size=len(VOCAB), cell=cell, embed_size=8, hidden_size=16,
                               num_layers=layers, **config)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(cell, layers)`` -> (model, checkpoint, FILE.onnx), each exported once."""
    done = {}

    def get(cell, layers):
        if (cell, layers) not in done:
            folder = tmp_path_factory.mktemp(f"onnx-{cell}-{layers}")
            # a second layer gets an MLP decoder too, so the head's layers are covered
            model = char_lm(cell, layers, mlp_layers=layers - 1, forget_bias=1.0)
            ckpt = save_lm(folder, model)
            out = folder / "step.onnx"
            export_onnx(load_checkpoint(ckpt), out)
            done[cell, layers] = model, ckpt, out
        return done[cell, layers]
    return get


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # tiny graphs
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxStep:
    """The exported graph as a step function, run by onnxruntime and driven by FILE.json
    alone: ``logits, state = step(tokens, state)``, tokens (B,) int64, state None for zeros
    or a dict of the state inputs' arrays."""

    def __init__(self, path):
        self.info = json.loads(path.with_suffix(".json").read_text())
        self.sess = session(path)

    def zeros(self, batch: int) -> dict:
        return {i["name"]: np.zeros([batch if d == "batch" else d for d in i["shape"]],
                                    np.float32)
                for i in self.info["inputs"] if i["name"] != "token"}

    def __call__(self, tokens: np.ndarray, state: dict | None = None):
        state = self.zeros(len(tokens)) if state is None else state
        names = [o.name for o in self.sess.get_outputs()]
        outs = dict(zip(names, self.sess.run(None, {"token": tokens, **state})))
        back = self.info["state"]["feed_back"]
        return outs["logits"], {back[n]: outs[n] for n in back}


@pytest.mark.parametrize("cell, layers", [
    *((cell, layers) for cell in ("lstm", "gru", "rnn") for layers in (1, 2)),
    ("mingru", 1), ("minlstm", 1)])
def test_onnx_steps_match_the_models_stepper(exported, cell, layers):
    model, _, path = exported(cell, layers)
    onnx_step = OnnxStep(path)
    for batch in (1, 3):  # the batch axis is dynamic: one graph serves both
        gen = torch.Generator().manual_seed(batch)
        tokens = torch.randint(len(VOCAB), (batch, STEPS), generator=gen)
        step, want_state, state = model.stepper(), None, None
        for t in range(STEPS):
            want, want_state = step(tokens[:, t], want_state)
            logits, state = onnx_step(tokens[:, t].numpy(), state)
            np.testing.assert_allclose(logits, want.numpy(), atol=1e-4, rtol=0)
        for name, want_part in zip(model.rnn.cells[0].state_names, want_state, strict=True):
            np.testing.assert_allclose(state[name], want_part.numpy(), atol=1e-4, rtol=0)


def test_greedy_decoding_with_onnxruntime_writes_rnnkits_text(exported):
    _, ckpt, path = exported("lstm", 2)
    prime, length = "the ", 40
    want = rnnkit.sample(ckpt, prime_text=prime, length=length, argmax=True)[0]
    step = OnnxStep(path)
    vocab = tokenizers.from_json(step.info["vocab"])
    state = None
    for token in prompt_ids(vocab, prime):
        logits, state = step(np.array([token]), state)
    out = []
    for _ in range(length):
        out.append(int(logits.argmax(-1)[0]))
        logits, state = step(np.array(out[-1:]), state)
    assert prime + vocab.decode(out) == want


def test_the_json_beside_it_says_how_to_run_it(exported):
    _, ckpt, path = exported("lstm", 2)
    info = json.loads(path.with_suffix(".json").read_text())
    assert tokenizers.from_json(info["vocab"]) == VOCAB
    sess = session(path)
    assert [i["name"] for i in info["inputs"]] == [i.name for i in sess.get_inputs()] == [
        "token", "h", "c"]
    assert [o["name"] for o in info["outputs"]] == [o.name for o in sess.get_outputs()] == [
        "logits", "h_next", "c_next"]
    assert info["inputs"][1]["shape"] == [2, "batch", 16]
    assert info["outputs"][0]["shape"] == ["batch", len(VOCAB)]
    assert info["state"]["feed_back"] == {"h_next": "h", "c_next": "c"}
    meta = load_checkpoint(ckpt)["meta"]
    assert {k: info["rnnkit"][k] for k in ("config", "step", "metrics")} == {
        k: meta[k] for k in ("config", "step", "metrics")}
    # the graph's own shapes: batch is its one dynamic axis
    assert sess.get_inputs()[1].shape == [2, "batch", 16]
    assert sess.get_outputs()[0].shape == ["batch", len(VOCAB)]
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert info["opset"] == next(o.version for o in graph.opset_import if o.domain == "")


def test_export_prints_nothing(tmp_path, capfd):
    export_onnx(load_checkpoint(save_lm(tmp_path, char_lm("rnn", 1))), tmp_path / "g.onnx")
    assert capfd.readouterr() == ("", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g.json", "g.onnx", "model.json", "model.pt"]


def seq2seq_checkpoint(folder):
    meta = {"kind": Seq2SeqTask().kind, "config": {"model": {}, "train": {}}, "vocabs": {},
            "step": 0, "metrics": {}}
    save_checkpoint(folder / "model.pt", {}, meta)
    return folder / "model.pt"


@pytest.mark.parametrize("make, reason", [
    (lambda d: save_lm(d, GPT(GPTConfig(vocab_size=len(VOCAB), block_size=8, n_layer=1,
                                        n_head=1, n_embd=8)), "gpt"), "GPT"),
    (lambda d: save_lm(d, char_lm("lru", 1)), "cell is lru"),
    (lambda d: save_lm(d, char_lm("gru", 1, feedback=False)), "feedback=False"),
    (seq2seq_checkpoint, "seq2seq model"),
], ids=["gpt", "lru", "no-feedback", "seq2seq"])
def test_models_it_cannot_export_fail_in_one_line_and_write_nothing(tmp_path, make, reason):
    payload = load_checkpoint(make(tmp_path))
    before = sorted(tmp_path.iterdir())
    with pytest.raises(RnnkitError, match=reason) as e:
        export_onnx(payload, tmp_path / "out.onnx")
    message = str(e.value)
    assert "\n" not in message
    supported = message.split(" with cells ")[1].split(";")[0].split(", ")
    assert {"lstm", "gru", "rnn", "mingru", "minlstm"} <= set(supported)
    assert "lru" not in supported
    assert sorted(tmp_path.iterdir()) == before


def test_without_onnxscript_it_says_what_to_install(tmp_path, monkeypatch):
    payload = load_checkpoint(save_lm(tmp_path, char_lm("rnn", 1)))
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now fails
    with pytest.raises(RnnkitError, match="pip install onnx onnxscript"):
        export_onnx(payload, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
