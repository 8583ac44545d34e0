"""--tokenizer char|byte|word|bpe: exact round trips, encoding in pieces, bits per character,
and the whole pipeline (train, checkpoint, sample, eval) with each."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit
from rnnkit.cli import main
from rnnkit.data import corpus as corpus_module
from rnnkit.data import tokenizers
from rnnkit.data.corpus import build_vocab, prepare_corpus
from rnnkit.data.tokenizers import TextSplitter, TextStream, build_tokenizer, from_json, safe_cut
from rnnkit.data.vocab import BOS, EOS
from rnnkit.errors import RnnkitError

pytest.importorskip("tokenizers")

KINDS = ("char", "byte", "word", "bpe")
TEXT = ("Ber. Who's there?\nFran. Nay, answer me: stand, and unfold yourself.\n"
        "Café — naïve “quotes” and 日本語, twice: café naïve 日本語.\n") * 20


def vocab_for(kind, text=TEXT, specials=(), size=0):
    if kind == "char":
        return build_vocab(text.encode(), "text", "lines" if specials else "stream")
    return build_tokenizer(kind, size or {"word": 64, "bpe": 300}.get(kind, 0), [text], specials)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_and_character_counts_are_exact(kind):
    vocab = vocab_for(kind)
    ids = vocab.encode(TEXT)
    assert vocab.decode(ids) == TEXT
    assert int(vocab.char_counts()[ids].sum()) == len(TEXT)  # multi-byte characters count once
    again = from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab and list(again.encode(TEXT)) == list(ids)


def test_subword_tokenizers_shorten_the_text_and_bytes_lengthen_it():
    lengths = {k: len(vocab_for(k).encode(TEXT)) for k in KINDS}
    assert lengths["byte"] == len(TEXT.encode()) > lengths["char"] == len(TEXT)
    assert lengths["bpe"] < 0.7 * len(TEXT) and lengths["word"] < 0.7 * len(TEXT)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab \n.é", max_size=60))
def test_text_cut_at_safe_cut_encodes_as_if_whole(text):
    for vocab in (WORD, BPE):
        cut = safe_cut(text)
        pieces = np.concatenate([vocab.encode(text[:cut]), vocab.encode(text[cut:])])
        assert list(pieces) == list(vocab.encode(text))


WORD = build_tokenizer("word", 20, ["ab ab ba. ab\n\né ab"])
BPE = build_tokenizer("bpe", 270, ["ab ab ba. ab\n\né ab " * 5])


@pytest.mark.parametrize("kind", ["byte", "word", "bpe"])
@pytest.mark.parametrize("mode", ["stream", "lines"])
def test_corpus_encoded_in_small_chunks_equals_the_whole_text(tmp_path, monkeypatch, kind, mode):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    specials = (BOS, EOS) if mode == "lines" else ()
    vocab = vocab_for(kind, specials=specials)
    monkeypatch.setattr(corpus_module, "CHUNK", 37)  # every chunk ends mid-line, mid-word
    corpus = prepare_corpus(path, "t", mode, tmp_path / "cache", vocab)
    if mode == "stream":
        expected = list(vocab.encode(TEXT))
    else:
        expected = [i for line in TEXT.splitlines() for i in [*vocab.encode(line), 1]]
    assert list(corpus.tokens) == expected


def test_special_tokens_never_come_from_the_text():
    text = "a line that says <eos> and <bos>\n" * 5
    for kind in ("byte", "word", "bpe"):
        vocab = vocab_for(kind, text, specials=(BOS, EOS), size={"word": 30, "bpe": 280}.get(kind))
        assert min(vocab.encode("says <eos> and <bos>")) >= 2, kind


def test_word_tokenizer_spells_rare_words_and_refuses_unseen_characters():
    vocab = build_tokenizer("word", 40, ["the cat sat on the mat, the end. zebra\n" * 3])
    assert "the" in vocab.words and "zebra" in vocab.words
    ids = vocab.encode("the tam")  # "tam" is no word of the text: t, a, m
    assert [vocab.itos[i] for i in ids] == ["the", " ", "t", "a", "m"]
    assert vocab.unknown_in("the quick") == ["q", "u", "i", "k"]


def test_bpe_needs_more_than_the_byte_alphabet():
    with pytest.raises(RnnkitError, match="exceed the 256"):
        build_tokenizer("bpe", 256, ["some text"])


def test_text_stream_prints_a_split_character_once_it_is_whole():
    vocab = vocab_for("byte")
    stream = TextStream(vocab)
    pieces = [stream.feed(int(i)) for i in vocab.encode("né日")]
    assert pieces == ["n", "", "é", "", "", "日"]


def test_bits_per_character_use_the_characters_not_the_tokens(tmp_path, hamlet):
    run = tmp_path / "bpe"
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={
        "data": str(hamlet), "tokenizer": "bpe", "tokenizer_size": 400, "max_steps": 6,
        "eval_every": 6, "seed": 3})
    rnnkit.train(model_cfg, cfg, out=run)
    report = rnnkit.evaluate(run, split="val")
    model, vocab, _ = rnnkit.load(run)
    ids = torch.tensor(vocab.encode(hamlet.read_text()))
    assert report["chars"] > report["tokens"] * 1.5  # BPE tokens hold several characters
    assert math.isclose(report["bpc"],
                        report["loss"] * report["tokens"] / report["chars"] / math.log(2))
    assert vocab.kind == "bpe" and len(vocab) == model.config.vocab_size == 400
    assert vocab.decode(ids.tolist()) == hamlet.read_text()


@pytest.mark.parametrize("kind", ["byte", "word", "bpe"])
@pytest.mark.parametrize("mode", ["stream", "lines"])
def test_train_sample_and_eval_with_each_tokenizer(tmp_path, hamlet, capsys, kind, mode):
    run = tmp_path / kind
    assert main(["train", "--preset", "tiny", "--data", str(hamlet), "--out", str(run),
                 "--tokenizer", kind, "--mode", mode, "--max-steps", "4", "--eval-every",
                 "4"]) == 0
    assert json.loads((run / "last.json").read_text())["vocab"]["type"] == kind
    capsys.readouterr()
    assert main(["sample", str(run), "--prime-text", "Who's there", "--length", "20"]) == 0
    assert capsys.readouterr().out.startswith("Who's there")
    assert main(["eval", str(run)]) == 0
    assert "bits/char" in capsys.readouterr().out


def test_the_cache_is_rebuilt_when_the_tokenizer_changes(tmp_path, hamlet):
    cache = tmp_path / "cache"
    first = prepare_corpus(hamlet, "h", "stream", cache)
    second = prepare_corpus(hamlet, "h", "stream", cache, tokenizer=("bpe", 300))
    assert first.vocab.kind == "char" and second.vocab.kind == "bpe"
    assert len(second.tokens) < len(first.tokens)


@pytest.mark.parametrize("flags, message", [
    (["--tokenizer", "char", "--tokenizer-size", "100"], "tokenizer_size applies to word"),
    (["--task", "tag", "--tokenizer", "bpe"], "tokenizer applies to the text tasks"),
    (["--tokenizer", "bpe", "--tokenizer-size", "100"], "exceed the 256 byte tokens")])
def test_bad_tokenizer_settings_are_one_line_errors(tmp_path, hamlet, capsys, flags, message):
    code = main(["train", "--preset", "tiny", "--data", str(hamlet), "--out",
                 str(tmp_path / "r"), "--max-steps", "2", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "last.pt").exists()


def test_old_vocab_files_without_a_type_read_as_characters():
    vocab = vocab_for("char")
    saved = {k: v for k, v in vocab.to_json().items() if k != "type"}
    assert tokenizers.from_json(saved) == vocab


# ---------------------------------------------------------------- pair tasks

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture
def reversal_tsv(tmp_path):
    """Word sequences and the same words reversed, with a non-ASCII word for the byte paths."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(400):
        words = [WORDS[k] for k in rng.integers(0, 9, rng.integers(1, 5))]
        lines.append(f"{' '.join(words)}\t{' '.join(reversed(words))} é")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_text_splitter_round_trips_any_text(kind):
    splitter = TextSplitter.build(kind, 300, [TEXT])
    for text in (TEXT, "naïve 日本語 — ok", ""):
        tokens = splitter.split(text)
        assert splitter.join(tokens) == text
        again = TextSplitter.from_json(json.loads(json.dumps(splitter.to_json())))
        assert again.split(text) == tokens
    if kind in ("word", "bpe"):
        assert len(splitter.split(TEXT)) < 0.7 * len(TEXT)


def test_seq2seq_over_word_tokens_learns_to_reverse_words(tmp_path, reversal_tsv, capsys):
    run = tmp_path / "words"
    assert main(["train", "--task", "seq2seq", "--data", str(reversal_tsv), "--out", str(run),
                 "--tokenizer", "word", "--max-steps", "150", "--eval-every", "150",
                 "--batch-size", "32", "--rnn-size", "64", "--embed-size", "32",
                 "--learning-rate", "0.01", "--seed", "1"]) == 0
    report = rnnkit.evaluate(run)
    assert report["exact_match"] >= 0.9, report
    model, vocabs, _ = rnnkit.load(run)
    assert "three" in vocabs["target"].itos  # whole words are the output tokens
    capsys.readouterr()
    assert rnnkit.predict(run, ["one two three"])[0][0] == "three two one é"


@pytest.mark.parametrize("task", ["seq2seq", "classify"])
def test_pair_tasks_train_predict_and_resume_on_bpe(tmp_path, reversal_tsv, task):
    data = reversal_tsv
    if task == "classify":  # label: the number of words
        rows = [line.split("\t")[0] for line in reversal_tsv.read_text().splitlines()]
        data = tmp_path / "cls.tsv"
        data.write_text("".join(f"{r}\t{len(r.split())}\n" for r in rows))
    run = tmp_path / task
    model_cfg, cfg = rnnkit.configs(train={"task": task, "data": str(data), "tokenizer": "bpe",
                                           "tokenizer_size": 280, "max_steps": 4,
                                           "eval_every": 2, "batch_size": 8})
    rnnkit.train(model_cfg, cfg, out=run)
    _, vocabs, meta = rnnkit.load(run)
    assert meta["vocabs"]["source"]["splitter"]["kind"] == "bpe"
    assert vocabs["source"].splitter.join(vocabs["source"].splitter.split("nine é")) == "nine é"
    out = rnnkit.predict(run, ["nine é", ""])
    assert len(out) == 2 and isinstance(out[0], list if task == "seq2seq" else str)
    cfg.max_steps = 6
    assert rnnkit.train(model_cfg, cfg, out=run, resume=True)["step"] == 6
