"""Data a user brings: the built-in tinyshakespeare and its usual split, the shared cache of
prepared corpora, and texts in other encodings (--encoding)."""

import json
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.data import corpus
from rnnkit.training.config import build_configs

from .test_cli import error_of

TINY = ["--preset", "tiny", "--max-steps", "4", "--eval-every", "4", "--seq-length", "16"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("RNNKIT_CACHE", str(folder))
    return folder


def prepared(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if (p / "meta.json").is_file())


# -- tinyshakespeare, the default corpus --------------------------------------------------------

def test_tinyshakespeare_is_the_default_with_char_rnns_split():
    _, cfg = build_configs({})
    assert (cfg.corpus, cfg.val_frac, cfg.test_frac) == ("tinyshakespeare", 0.1, 0.0)
    _, cfg = build_configs({"train": {"val_frac": 0.2}})
    assert (cfg.val_frac, cfg.test_frac) == (0.2, 0.0)
    _, cfg = build_configs({"train": {"corpus": "python-stdlib"}})
    assert (cfg.val_frac, cfg.test_frac) == (0.05, 0.05)
    _, cfg = build_configs({"train": {"data": "mine.txt"}})
    assert (cfg.val_frac, cfg.test_frac) == (0.05, 0.05)


def test_a_run_on_tinyshakespeare_holds_out_its_last_tenth(tmp_path, cache, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY]) == 0
    saved = json.loads((run / "config.json").read_text())["train"]
    assert (saved["corpus"], saved["val_frac"], saved["test_frac"]) == ("tinyshakespeare", 0.1,
                                                                         0.0)
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # val is the last 111,539 of 1,115,394 characters (the cut rounds 90%); every one of
    # them after the first is a target
    assert report["chars"] == 111_538


# -- the shared cache ---------------------------------------------------------------------------

def test_runs_on_one_text_prepare_it_once(tmp_path, cache, hamlet, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--data", str(hamlet), "--out", str(first), *TINY]) == 0
    [folder] = prepared(cache)
    tokens = folder / "tokens.bin"
    built = tokens.stat().st_mtime_ns
    assert main(["train", "--data", str(hamlet), "--out", str(second), *TINY]) == 0
    assert prepared(cache) == [folder] and tokens.stat().st_mtime_ns == built
    assert not (first / "data").exists() and not (second / "data").exists()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sha256"] == corpus.digest(hamlet) and folder.name.startswith(meta["sha256"][:32])
    # another tokenizer is another prepared form of the same text
    assert main(["train", "--data", str(hamlet), "--out", str(tmp_path / "c"), *TINY,
                 "--tokenizer", "byte"]) == 0
    assert len(prepared(cache)) == 2


def test_resume_reads_the_prepared_text_again(tmp_path, cache, hamlet):
    run = tmp_path / "run"
    assert main(["train", "--data", str(hamlet), "--out", str(run), *TINY]) == 0
    [folder] = prepared(cache)
    built = (folder / "tokens.bin").stat().st_mtime_ns
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "8"]) == 0
    assert prepared(cache) == [folder] and (folder / "tokens.bin").stat().st_mtime_ns == built
    assert json.loads((run / "last.json").read_text())["step"] == 8


def test_an_imposed_vocabulary_gets_a_folder_of_its_own(cache, hamlet):
    own = corpus.shared_corpus(hamlet, "hamlet", "stream")
    wider = corpus.build_vocab("".join(map(chr, range(32, 127))).encode() + b"\n\xc3\xa9",
                               "w", "stream")
    imposed = corpus.shared_corpus(hamlet, "hamlet", "stream", wider)
    again = corpus.shared_corpus(hamlet, "hamlet", "stream", own.vocab)  # the text's own
    assert own.vocab != wider and imposed.vocab == wider and again.vocab == own.vocab
    assert len(prepared(cache)) == 2
    assert own.vocab.decode(own.tokens) == wider.decode(imposed.tokens)


def test_a_folder_another_process_finished_first_is_kept(tmp_path):
    final = tmp_path / "cache" / "key"

    def build(tmp: Path):  # meanwhile, another process renamed its folder into place
        (tmp / "meta.json").write_text("{}")
        final.mkdir(parents=True)
        (final / "meta.json").write_text('{"theirs": 1}')
        (final / "tokens.bin").write_bytes(b"x")

    corpus.build_in_place(final, build)
    assert json.loads((final / "meta.json").read_text()) == {"theirs": 1}
    assert [p.name for p in final.parent.iterdir()] == ["key"]  # our temporary folder is gone


def test_a_failed_build_leaves_no_folder(tmp_path, cache):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9 au lait\n" * 50)
    with pytest.raises(Exception, match="not valid UTF-8"):
        corpus.shared_corpus(bad, "latin1.txt", "stream")
    assert list(cache.iterdir()) == []


def test_an_unusable_cache_is_one_line_and_leaves_no_run(tmp_path, monkeypatch, hamlet, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RNNKIT_CACHE", str(blocker))
    run = tmp_path / "run"
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(run), *TINY])
    assert "a-file" in err and "set RNNKIT_CACHE to a folder you can write to" in err
    assert not run.exists()


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "mine"))
    assert corpus.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("RNNKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus.cache_root() == tmp_path / "xdg" / "rnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert corpus.cache_root() == Path.home() / ".cache" / "rnnkit"


# -- --encoding ---------------------------------------------------------------------------------

LATIN1 = "Où est le café? À la gare, près du théâtre. Ça va très bien, merci.\n" * 40


def test_a_latin1_text_trains_with_its_encoding(tmp_path, cache, capsys):
    text = tmp_path / "french.txt"
    text.write_bytes(LATIN1.encode("latin-1"))
    err = error_of(capsys, ["train", "--data", str(text), "--out", str(tmp_path / "no"), *TINY])
    assert "not valid UTF-8" in err and "--encoding latin-1" in err
    assert not (tmp_path / "no").exists()
    run = tmp_path / "run"
    assert main(["train", "--data", str(text), "--out", str(run), *TINY,
                 "--encoding", "latin-1"]) == 0
    chars = json.loads((run / "last.json").read_text())["vocab"]
    assert {"é", "À", "â", "Ç", "ù"} <= set(json.dumps(chars, ensure_ascii=False))
    capsys.readouterr()
    assert main(["sample", str(run), "--prime-text", "Où", "--length", "5"]) == 0
    assert capsys.readouterr().out.startswith("Où")
    # eval reads another file in the run's encoding unless told otherwise
    assert main(["eval", str(run), "--data", str(text), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chars"] == len(LATIN1) - 1
    utf8 = tmp_path / "french-utf8.txt"
    utf8.write_text(LATIN1, encoding="utf-8")
    assert main(["eval", str(run), "--data", str(utf8), "--split", "all", "--json",
                 "--encoding", "utf-8"]) == 0
    assert json.loads(capsys.readouterr().out)["chars"] == len(LATIN1) - 1


def test_a_utf16_text_with_its_byte_order_mark(tmp_path, cache):
    text = tmp_path / "utf16.txt"
    text.write_bytes(LATIN1.encode("utf-16"))  # a BOM, and NUL bytes in every character
    assert corpus.shared_corpus(text, "u", "stream", encoding="utf-16").vocab.decode(
        corpus.shared_corpus(text, "u", "stream", encoding="utf-16").tokens) == LATIN1
    with pytest.raises(Exception, match="looks binary"):
        corpus.shared_corpus(text, "u", "stream")


def test_a_cp1252_tsv_trains_a_classifier(tmp_path, cache, capsys):
    tsv = tmp_path / "labels.tsv"
    rows = ["très “bon” café\tpos", "mauvais thé – froid\tneg"] * 30
    tsv.write_bytes(("\n".join(rows) + "\n").encode("cp1252"))
    err = error_of(capsys, ["train", "--task", "classify", "--data", str(tsv), "--out",
                            str(tmp_path / "no"), "--max-steps", "2"])
    assert "line 1 is not valid UTF-8" in err and "--encoding" in err
    assert main(["train", "--task", "classify", "--data", str(tsv), "--out",
                 str(tmp_path / "run"), "--max-steps", "2", "--eval-every", "2",
                 "--encoding", "cp1252"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] > 0


@pytest.mark.parametrize("argv", [
    ["train", "--out", "{tmp}/run", "--encoding", "klingon"],
    ["train", "--out", "{tmp}/run", "--encoding", "rot13"],
    ["eval", "{tmp}/run", "--encoding", "base64"]])
def test_an_unknown_or_non_text_codec_is_one_line(tmp_path, capsys, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert "is not a text encoding" in error_of(capsys, argv)
    assert not (tmp_path / "run").exists()
