import numpy as np
import pytest
import torch

from rnnkit.data import corpus
from rnnkit.data.batching import (
    IGNORE,
    LineBatches,
    StreamBatches,
    line_eval_batches,
    stream_eval_batches,
)
from rnnkit.data.corpus import build_vocab, code_points, prepare_corpus, tokenize
from rnnkit.data.vocab import BOS, EOS, CharVocab
from rnnkit.errors import RnnkitError

UNICODE = "héllo wörld\n你好，世界\nemoji 🙂🚀 ok\n"


def test_vocab_round_trips_unicode_characters_not_bytes():
    ids, vocab = tokenize(UNICODE, "stream")
    assert vocab.decode(ids) == UNICODE
    assert "你" in vocab.chars and "🙂" in vocab.chars  # whole characters, not UTF-8 bytes
    assert len(vocab) == len(set(UNICODE))
    again = CharVocab.from_json(vocab.to_json())
    assert again == vocab and again.decode(again.encode(UNICODE)) == UNICODE


def test_token_dtype_is_the_smallest_that_fits():
    assert tokenize("abc", "stream")[0].dtype == np.uint8
    wide = "".join(chr(0x4E00 + i) for i in range(300))
    assert tokenize(wide, "stream")[0].dtype == np.uint16


def test_lines_mode_maps_newlines_to_eos_and_drops_empty_lines():
    ids, vocab = tokenize("ab\n\n\ncd", "lines")
    assert vocab.specials == [BOS, EOS] and "\n" not in vocab.chars
    eos = vocab.id_of(EOS)
    assert ids.tolist() == [vocab.encode("a")[0], vocab.encode("b")[0], eos,
                            vocab.encode("c")[0], vocab.encode("d")[0], eos]


@pytest.mark.parametrize("raw, words", [(b"", "empty"), (b"  \n", "empty"),
                                        (b"ab\x00cd", "binary"), (b"caf\xe9", "UTF-8")])
def test_bad_text_is_refused_with_a_reason(raw, words):
    with pytest.raises(RnnkitError, match=words):
        build_vocab(raw, "x.txt", "stream")


def read_back(raw: bytes, mode: str = "stream") -> str:
    return "".join(chr(c) for part in code_points(raw, "x", mode) for c in part)


def test_crlf_and_bom_are_normalised():
    assert read_back("\ufeffa\r\nb\r\n".encode()) == "a\nb\n"
    assert read_back(b"a\n\n\r\nb", "lines") == "a\nb\n"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7])
def test_chunk_boundaries_change_nothing(monkeypatch, chunk):
    """Multi-byte characters, \\r\\n pairs and empty lines split across reads."""
    text = "\ufeffcaf\u00e9\r\n\r\n\u4f60\u597d \U0001f680\r\nend\r"
    whole = {m: read_back(text.encode(), m) for m in ("stream", "lines")}
    monkeypatch.setattr(corpus, "CHUNK", chunk)
    for mode in ("stream", "lines"):
        assert read_back(text.encode(), mode) == whole[mode]
    assert whole["stream"] == "caf\u00e9\n\n\u4f60\u597d \U0001f680\nend\r"


def test_corpus_is_cached_as_memmap_and_rebuilt_when_source_changes(tmp_path):
    cache = tmp_path / "cache"
    c1 = prepare_corpus(b"hello world\n", "src", "stream", cache)
    assert isinstance(c1.tokens, np.memmap) and c1.vocab.decode(c1.tokens) == "hello world\n"
    mtime = (cache / "tokens.bin").stat().st_mtime_ns
    c2 = prepare_corpus(b"hello world\n", "src", "stream", cache)
    assert (cache / "tokens.bin").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert c2.vocab == c1.vocab
    c3 = prepare_corpus(b"goodbye\n", "src", "stream", cache)
    assert c3.vocab.decode(c3.tokens) == "goodbye\n"


def test_split_is_contiguous_with_the_given_fractions():
    ids, vocab = tokenize("abcdefghij" * 100, "stream")
    from rnnkit.data.corpus import Corpus
    parts = Corpus(ids, vocab, "stream").split(0.1, 0.05)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [850, 100, 50]
    joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert np.array_equal(joined, ids)


def test_lines_split_cuts_only_after_a_line_end():
    from rnnkit.data.corpus import Corpus
    ids, vocab = tokenize("".join(f"line {i}\n" for i in range(100)), "lines")
    parts = Corpus(ids, vocab, "lines").split(0.1, 0.1)
    eos = vocab.id_of(EOS)
    for k in ("train", "val"):
        assert parts[k][-1] == eos
    assert len(parts["val"]) > 0 and len(parts["test"]) > 0


def test_stream_windows_are_contiguous_per_stream_and_reset_each_epoch():
    tokens = np.arange(4 * 25, dtype=np.int64)  # 4 streams of 25
    b = StreamBatches(tokens, batch_size=4, seq_length=6)
    assert b.windows_per_epoch == 4  # (25 - 1) // 6
    x0, y0, reset0 = b.batch(0)
    x1, y1, reset1 = b.batch(1)
    assert reset0 and not reset1
    assert torch.equal(x0[:, 1:], y0[:, :-1])  # targets are inputs shifted by one
    assert torch.equal(x1[:, 0], y0[:, -1])  # the next window continues each stream
    assert torch.equal(x0[:, 0], torch.tensor([0, 25, 50, 75]))
    assert b.batch(4)[2] and torch.equal(b.batch(4)[0], x0)  # epoch 2 starts over


def test_too_short_corpus_names_the_fix():
    with pytest.raises(RnnkitError, match="--batch-size or --seq-length"):
        StreamBatches(np.arange(50), batch_size=8, seq_length=10)


def test_stream_eval_covers_every_target_once():
    tokens = np.arange(103, dtype=np.int64)
    ys = torch.cat([y.flatten() for _, y in stream_eval_batches(tokens, 4, 10)])
    kept = ys[ys != IGNORE]
    assert sorted(kept.tolist()) == list(range(1, 103))


def test_line_batches_are_bos_shifted_with_masked_padding():
    ids, vocab = tokenize("ab\nlonger\nxyz\n", "lines")
    bos, eos = vocab.id_of(BOS), vocab.id_of(EOS)
    b = LineBatches(ids, bos, eos, batch_size=3, seq_length=50, seed=0)
    x, y, reset = b.batch(0)
    assert reset and x.shape == y.shape == (3, 7)
    for row in range(3):
        n = int((y[row] != IGNORE).sum())
        assert x[row, 0] == bos and y[row, n - 1] == eos
        assert torch.equal(x[row, 1:n], y[row, :n - 1])
    texts = sorted(vocab.decode(r[r != IGNORE].tolist()) for r in y)
    assert texts == ["ab", "longer", "xyz"]


def test_line_order_is_a_seeded_shuffle_per_epoch():
    ids, vocab = tokenize("".join(f"{i}\n" for i in range(40)), "lines")
    args = (ids, vocab.id_of(BOS), vocab.id_of(EOS), 4, 10)
    a, b = LineBatches(*args, seed=1), LineBatches(*args, seed=1)
    assert all(torch.equal(a.batch(s)[0], b.batch(s)[0]) for s in range(25))
    epoch0 = torch.cat([a.batch(s)[1][:, 0] for s in range(10)])
    epoch1 = torch.cat([a.batch(s)[1][:, 0] for s in range(10, 20)])
    assert sorted(epoch0.tolist()) == sorted(epoch1.tolist())  # every line once per epoch
    assert not torch.equal(epoch0, epoch1)


def test_line_eval_batches_visit_every_line():
    ids, vocab = tokenize("".join(f"{i}\n" for i in range(10)), "lines")
    ys = [y for _, y in line_eval_batches(ids, vocab.id_of(BOS), vocab.id_of(EOS), 3)]
    assert sum(int((y == vocab.id_of(EOS)).sum()) for y in ys) == 10
    assert sum(int((y != IGNORE).sum()) for y in ys) == len(ids)  # every target, none cut


def test_text_is_read_lazily_one_chunk_at_a_time(monkeypatch):
    pulled = []

    def counting_chunks(source):
        for i in range(1000):
            pulled.append(i)
            yield b"abc\n"

    monkeypatch.setattr(corpus, "byte_chunks", counting_chunks)
    first = next(code_points(b"", "x", "stream"))
    assert "".join(map(chr, first)) == "abc\n" and len(pulled) == 1  # never the whole file


def test_utf8_error_offset_counts_from_the_file_start(monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK", 2)  # the bad sequence straddles two reads
    with pytest.raises(RnnkitError, match="offset 3"):
        build_vocab(b"abc\xe2\x82", "x.txt", "stream")


def test_eval_cap_ends_on_a_line_end_in_lines_mode():
    from rnnkit.tasks.lm import cap_split
    ids, vocab = tokenize("".join(f"line {i}\n" for i in range(50)), "lines")
    capped = cap_split(ids, 20, "lines", vocab)
    assert len(capped) >= 20 and capped[-1] == vocab.id_of(EOS)
    assert len(cap_split(ids, 20, "stream", vocab)) == 20 and cap_split(ids, 0, "lines",
                                                                        vocab) is ids
