"""Hugging Face folders: GPT-2 read into rnnkit's GPT against transformers itself (logits,
tokens, greedy and beam continuations), the CLI on such a folder, bad folders refused in one
line, and ``rnnkit export --format hf`` read back by rnnkit and by transformers."""

from __future__ import annotations

import errno
import json
import shutil
import sys
from dataclasses import asdict

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data import tokenizers
from rnnkit.data.tokenizers import GPT2Vocab, TextStream
from rnnkit.errors import RnnkitError
from rnnkit.models.gpt import GPT, GPTConfig
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")
hf_tokenizers = pytest.importorskip("tokenizers")

SENTENCES = ["I think therefore I am", "I like machine learning",
             "I am not just a neural network", "héllo wörld, 日本語 and a unicorn 🦄"]
TEXTS = ["I think therefore I am", "  two  spaces\nand a line", "héllo 日本語 🦄",
         "a <|endoftext|> b", ""]
PROMPTS = ["I think", "machine", "héllo"]


def train_tokenizer():
    """A byte-level BPE like GPT-2's (same pre-tokenizer and decoder), 300 tokens."""
    hf = hf_tokenizers
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    tok.train_from_iterator(SENTENCES * 4, trainer)
    return tok


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(folder with tokenizer.json, folder with vocab.json + merges.txt, the transformers
    model, its tokenizer): a 2-layer GPT-2 with random weights, saved by save_pretrained."""
    tok = train_tokenizer()
    fast = transformers.GPT2TokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                          eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(fast), n_positions=64, n_embd=32,
                                     n_layer=2, n_head=4, initializer_range=0.2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and LayerNorms away from their 0 and 1, so they count
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    json_dir = tmp_path_factory.mktemp("gpt2_json")
    model.save_pretrained(json_dir)
    fast.save_pretrained(json_dir)
    files_dir = tmp_path_factory.mktemp("gpt2_files")
    model.save_pretrained(files_dir)
    tok.model.save(str(files_dir))  # GPT-2's own layout: vocab.json and merges.txt
    assert not (files_dir / "tokenizer.json").exists()
    return json_dir, files_dir, model, fast


@pytest.fixture(params=["tokenizer.json", "vocab.json+merges.txt"])
def folder(request, gpt2):
    return gpt2[0] if request.param == "tokenizer.json" else gpt2[1]


def copy_of(gpt2, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(gpt2[0], out)
    return out


# ---------------------------------------------------------------- GPT-2 in


def test_logits_equal_transformers(folder, gpt2):
    model, vocab, meta = rnnkit.load(folder)
    assert isinstance(model, GPT) and meta["config"]["train"]["model"] == "gpt"
    assert meta["kind"] == "rnnkit.char_lm" and vocab.kind == "gpt2"
    assert model.config.gelu == "tanh" and model.config.block_size == 64
    torch.manual_seed(1)
    tokens = torch.randint(0, len(vocab), (4, 40))
    with torch.no_grad():
        ours, theirs = model(tokens)[0], gpt2[2](tokens).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert ours.std() > 0.1  # not a degenerate model that any code would match


def test_the_layout_of_older_files_reads_the_same(gpt2, tmp_path):
    """openai-community/gpt2's own file: no ``transformer.`` prefix, each layer's causal mask
    stored as a buffer (skipped), no lm_head."""
    import safetensors.torch
    folder = copy_of(gpt2, tmp_path)
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    old = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    for i in range(2):
        old[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64, dtype=torch.uint8))
        old[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    safetensors.torch.save_file(old, folder / "model.safetensors", metadata={"format": "pt"})
    tokens = torch.arange(40)[None]
    with torch.no_grad():
        ours, theirs = rnnkit.load(folder)[0](tokens)[0], gpt2[2](tokens).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_the_exact_gelu_would_not_match(gpt2):
    """The check above can fail: the erf GELU of rnnkit's default GPT differs."""
    model, vocab, _ = rnnkit.load(gpt2[0])
    model.blocks[0].mlp.approximate = "none"
    tokens = torch.arange(30)[None]
    with torch.no_grad():
        diff = (model(tokens)[0] - gpt2[2](tokens).logits).abs().max()
    assert diff > 1e-5


def test_tokens_equal_the_hf_tokenizer(folder, gpt2):
    vocab = rnnkit.load(folder)[1]
    fast = gpt2[3]
    assert len(vocab) == len(fast)
    counts = vocab.char_counts()
    for text in TEXTS:
        ids = vocab.encode(text)
        assert ids.tolist() == fast(text)["input_ids"]
        assert vocab.decode(ids) == text == fast.decode(ids.tolist())
        assert counts[ids].sum() == len(text)  # bits per character count each character once
        stream = TextStream(vocab)
        assert "".join(stream.feed(int(i)) for i in ids) == text  # split UTF-8 waits
        assert not vocab.unknown_in(text)
    again = tokenizers.from_json(json.loads(json.dumps(vocab.to_json())))
    assert isinstance(again, GPT2Vocab) and again == vocab
    assert vocab.token_dtype().__name__ == "uint16"


def test_a_multibyte_character_split_over_tokens_streams_once(gpt2):
    vocab = rnnkit.load(gpt2[0])[1]
    ids = vocab.encode("🦄")
    assert len(ids) > 1  # four bytes the tokenizer never merged
    stream = TextStream(vocab)
    assert [stream.feed(int(i)) for i in ids] == [""] * (len(ids) - 1) + ["🦄"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_sample_continues_as_transformers_generate(gpt2, prompt):
    _, _, model, fast = gpt2
    ids = fast(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, do_sample=False, max_new_tokens=12, eos_token_id=None,
                         pad_token_id=0)
    expected = fast.decode(out[0])
    assert rnnkit.sample(gpt2[0], prime_text=prompt, length=12, argmax=True) == [expected]


def test_with_no_prompt_a_sample_starts_after_endoftext(gpt2):
    """As GPT-2 starts a new document: from <|endoftext|>, which is not printed."""
    from rnnkit.decoding import SamplingConfig, generate
    _, _, model, fast = gpt2
    start = torch.tensor([[fast.convert_tokens_to_ids("<|endoftext|>")]])
    out = model.generate(start, attention_mask=torch.ones_like(start), do_sample=False,
                         max_new_tokens=10, eos_token_id=None, pad_token_id=0)
    ours, vocab, _ = rnnkit.load(gpt2[0])
    rows = generate(ours, vocab, "", 10, SamplingConfig(argmax=True), torch.Generator())
    assert rows == [out[0, 1:].tolist()]


@pytest.mark.parametrize("beam", [2, 3])
def test_beam_search_continues_as_transformers_beam_search(gpt2, beam):
    _, _, model, fast = gpt2
    ids = fast("I like", return_tensors="pt")["input_ids"]
    out = model.generate(ids, do_sample=False, num_beams=beam, max_new_tokens=8,
                         eos_token_id=None, pad_token_id=0, early_stopping=False)
    ours = rnnkit.sample(gpt2[0], prime_text="I like", length=8, beam=beam)
    assert ours == [fast.decode(out[0])]


def test_cli_sample_and_eval(gpt2, tmp_path, capsys):
    folder, _, model, fast = gpt2
    assert main(["sample", str(folder), "--prime-text", "I think", "--length", "6",
                 "--argmax"]) == 0
    expected = rnnkit.sample(folder, prime_text="I think", length=6, argmax=True)[0]
    assert capsys.readouterr().out == expected + "\n"
    assert main(["sample", str(folder), "--prime-text", "I am", "--length", "6",
                 "--beam", "2", "--temperature", "1.0"]) == 0
    assert capsys.readouterr().out.startswith("I am")
    text = tmp_path / "eval.txt"
    text.write_text("I think therefore I am not a network")
    assert main(["eval", str(folder), "--data", str(text), "--split", "all", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ids = torch.tensor([fast(text.read_text())["input_ids"]])  # under 64 tokens: one window
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert report["loss"] == pytest.approx(loss, abs=1e-5)
    assert report["chars"] == len(text.read_text()) - 1  # every character but the first


def test_serve_refuses_a_transformer_in_one_line(gpt2, capsys):
    """The playground reads recurrent states: it sends a GPT-2 to rnnkit sample."""
    assert main(["serve", str(gpt2[0]), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "sample it with rnnkit sample" in err and err.count("\n") == 1


# ---------------------------------------------------------------- bad folders


def break_folder(folder, how):
    config = json.loads((folder / "config.json").read_text())
    if how == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    elif how == "bert":
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    elif how == "pickle only":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif how.startswith("config "):
        key, value = how.split()[1:]
        (folder / "config.json").write_text(json.dumps({**config, key: json.loads(value)}))
    elif how == "not json":
        (folder / "config.json").write_text("{nope")
    elif how == "corrupt weights":
        (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    elif how == "nan":
        import safetensors.torch
        tensors = safetensors.torch.load_file(folder / "model.safetensors")
        tensors["transformer.h.1.mlp.c_fc.weight"][0, 0] = float("nan")
        safetensors.torch.save_file(tensors, folder / "model.safetensors",
                                    metadata={"format": "pt"})
    elif how == "small tokenizer":
        tok = json.loads((folder / "tokenizer.json").read_text())
        tok["model"]["vocab"] = dict(list(tok["model"]["vocab"].items())[:280])
        tok["model"]["merges"] = []
        (folder / "tokenizer.json").write_text(json.dumps(tok))


@pytest.mark.parametrize("how, message", [
    ("no tokenizer", "no tokenizer: add tokenizer.json, or vocab.json and merges.txt"),
    ("bert", "holds a 'bert' model"),
    ("pickle only", "pytorch_model.bin only.*convert it to safetensors"),
    ("config n_embd 64", r"does not fit its config.json \(wte.weight: config.json wants "
                         r"\(300, 64\), the file holds \(300, 32\)"),
    ("config n_layer 1000000", "n_layer 1000000 exceeds"),
    ("config n_head 5", "n_embd .* must be divisible by n_head"),
    ("config n_layer 2.5", "n_layer is 2.5, not a whole number"),
    ("config activation_function \"relu\"", "activation_function 'relu'"),
    ("config n_inner 7", "n_inner 7 is not 4 x n_embd"),
    ("not json", "not valid JSON"),
    ("corrupt weights", "is corrupt or no safetensors file"),
    ("nan", r"non-finite weights \(NaN or inf in blocks.1.mlp.fc.weight\)"),
    ("small tokenizer", "has 280 tokens, config.json's vocab_size is 300"),
])
def test_a_bad_folder_is_one_line(gpt2, tmp_path, capsys, how, message):
    folder = copy_of(gpt2, tmp_path)
    break_folder(folder, how)
    with pytest.raises(RnnkitError, match=message) as e:
        rnnkit.load(folder)
    assert "\n" not in str(e.value)
    assert main(["sample", str(folder), "--length", "3"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_without_tokenizers_the_fix_is_named(gpt2, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers fails
    with pytest.raises(RnnkitError, match="pip install tokenizers"):
        rnnkit.load(gpt2[0])


def test_a_folder_with_no_weights_is_no_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RnnkitError, match="holds no checkpoint"):
        rnnkit.load(tmp_path)


# ---------------------------------------------------------------- export


def tiny_run(data, out, **train):
    settings = {"data": str(data), "seq_length": 16, "batch_size": 4, "max_steps": 4,
                "eval_every": 2, "log_every": 2, "sample_length": 5, "seed": 7,
                "val_frac": 0.1, **train}
    gpt = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}
    rnn = {"hidden_size": 16, "embed_size": 8, "num_layers": 1}
    model = gpt if train.get("model") == "gpt" else rnn
    rnnkit.train(*rnnkit.configs(model=model, train=settings), out=out)
    return out


def same_logits(a, b, text="Ber. Who's there?"):
    (m1, v1, _), (m2, v2, _) = rnnkit.load(a), rnnkit.load(b)
    x = torch.tensor(v1.encode(text))[None, :16]
    assert v2.encode(text).tolist() == v1.encode(text).tolist()
    with torch.no_grad():
        torch.testing.assert_close(m1(x)[0], m2(x)[0], rtol=0, atol=1e-6)
    return m2, v2


def test_export_hf_of_a_recurrent_run_round_trips(tmp_path, hamlet, capsys):
    run = tiny_run(hamlet, tmp_path / "rnn")
    out = tmp_path / "rnn-hf"
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "rnnkit" and config["rnnkit"]["kind"] == "rnnkit.char_lm"
    same_logits(run, out)
    card = (out / "README.md").read_text()
    val_loss = load_checkpoint(run)["meta"]["metrics"]["val_loss"]
    assert f"{val_loss:.4f} nats per token" in card and str(hamlet) in card
    assert "rnnkit sample" in card
    capsys.readouterr()
    assert main(["sample", str(out), "--prime-text", "Ber", "--length", "5"]) == 0
    assert capsys.readouterr().out.startswith("Ber")


def test_export_hf_of_a_gpt_run_is_a_gpt2_transformers_loads(tmp_path, hamlet):
    run = tiny_run(hamlet, tmp_path / "gpt", model="gpt", tokenizer="bpe", tokenizer_size=300)
    out = tmp_path / "gpt-hf"
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and (out / "tokenizer.json").is_file()
    assert "GPT2LMHeadModel" in (out / "README.md").read_text()
    model, vocab = same_logits(run, out)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    text = "Ber. Who's there?"
    ids = fast(text)["input_ids"]
    assert ids == vocab.encode(text).tolist()
    x = torch.tensor(ids)[None]
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, model(x)[0], rtol=0, atol=1e-5)
    # the run's meta comes back with the folder: its steps and metrics
    assert rnnkit.load(out)[2]["metrics"] == load_checkpoint(run)["meta"]["metrics"]


def test_export_hf_of_a_gpt2_folder_is_the_same_gpt2(gpt2, tmp_path):
    out = tmp_path / "again"
    assert main(["export", str(gpt2[0]), "--format", "hf", "--out", str(out)]) == 0
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    tokens = torch.randint(0, 300, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, gpt2[2](tokens).logits, rtol=0,
                                   atol=1e-5)


def test_export_hf_refuses_to_overwrite(tmp_path, hamlet, capsys):
    run = tiny_run(hamlet, tmp_path / "rnn")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    # --force replaces an earlier export only, never another folder (a run, say)
    assert main(["export", str(run), "--format", "hf", "--out", str(out), "--force"]) == 2
    assert main(["export", str(run), "--format", "hf", "--out", str(run), "--force"]) == 2
    assert (out / "mine.txt").read_text() == "keep me" and (run / "last.pt").is_file()
    export = tmp_path / "export"
    assert main(["export", str(run), "--format", "hf", "--out", str(export)]) == 0
    assert main(["export", str(run), "--format", "hf", "--out", str(export)]) == 2
    assert main(["export", str(run), "--format", "hf", "--out", str(export), "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "rnn", "taken"]
    # an earlier export with a user's own files in it is no longer only an export
    (export / "NOTES.md").write_text("mine")
    (export / "sub").mkdir()
    capsys.readouterr()
    assert main(["export", str(run), "--format", "hf", "--out", str(export), "--force"]) == 2
    assert "holds something other than an exported model (NOTES.md, sub)" in (
        capsys.readouterr().err)
    assert (export / "NOTES.md").read_text() == "mine" and (export / "sub").is_dir()


def test_a_safetensors_export_writes_both_files_or_neither(tmp_path, hamlet, capsys):
    run = tiny_run(hamlet, tmp_path / "rnn")
    out = tmp_path / "m.safetensors"
    (tmp_path / "m.json").mkdir()  # the metadata's place is taken by a folder
    assert main(["export", str(run), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert "m.json' is a folder; choose another name" in err and ".tmp" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "rnn"]


def test_a_failed_export_leaves_nothing(tmp_path, hamlet, monkeypatch, capsys):
    run = tiny_run(hamlet, tmp_path / "rnn")
    from rnnkit.training import hf_export

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(hf_export, "model_card", fail)
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "x")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn"]

    def full(*_):
        raise OSError(errno.EFBIG, "File too large")  # as write() says it: no file named

    monkeypatch.setattr(hf_export, "model_card", full)
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert f"File too large: {tmp_path / 'x'}" in err and ".tmp" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn"]


def test_export_formats_check_out(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", "m.safetensors"]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    for fmt, name in (("hf", "folder"), ("safetensors", "m.safetensors")):
        out = tmp_path / "missing" / "sub" / name
        assert main(["export", str(tmp_path), "--format", fmt, "--out", str(out)]) == 2
        assert "does not exist; create it first" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_gpt_over_characters(tmp_path, hamlet):
    """Not a GPT-2 (characters are no BPE): an rnnkit folder, and a safetensors file, whose
    tied head and embedding are stored twice and tied again on loading."""
    run = tiny_run(hamlet, tmp_path / "gpt", model="gpt")
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "rnnkit"
    model = same_logits(run, tmp_path / "hf")[0]
    assert model.head.weight is model.wte.weight
    out = tmp_path / "gpt.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    same_logits(run, out)


def test_a_checkpoint_saved_before_gelu_and_eps_loads(tmp_path, hamlet):
    """Checkpoints whose config lacks the GPT settings added for GPT-2 load as before."""
    run = tiny_run(hamlet, tmp_path / "gpt", model="gpt")
    payload = load_checkpoint(run)
    old = {k: v for k, v in payload["meta"]["config"]["model"].items()
           if k not in ("gelu", "layer_norm_eps")}
    assert old != payload["meta"]["config"]["model"]
    payload["meta"]["config"]["model"] = old
    save_checkpoint(tmp_path / "old.pt", payload["model"], payload["meta"])
    model = rnnkit.load(tmp_path / "old.pt")[0]
    assert asdict(model.config) == asdict(GPTConfig(**old))
    assert model.config.gelu == "none" and model.config.layer_norm_eps == 1e-5
    same_logits(run, tmp_path / "old.pt")
