"""The built-in corpora behind --corpus: the table, tinyshakespeare, the python-stdlib corpus,
and a bad name."""

import json

import pytest

from rnnkit.data import shakespeare, stdlib
from rnnkit.errors import RnnkitError


def test_every_builtin_corpus_has_one_entry():
    assert list(shakespeare.CORPORA) == ["tinyshakespeare", "shakespeare", "python-stdlib"]
    assert all(callable(read) for read in shakespeare.CORPORA.values())


def test_unknown_corpus_is_one_line_listing_the_choices():
    with pytest.raises(RnnkitError) as info:
        shakespeare.corpus_bytes("milton")
    assert str(info.value) == ("unknown corpus 'milton'; choose one of tinyshakespeare, "
                               "shakespeare, python-stdlib")


# -- tinyshakespeare -----------------------------------------------------------------------------

def test_tinyshakespeare_is_the_standard_file():
    """The char-rnn benchmark text itself: its length, first and last lines, and its
    well-known SHA-256 (checked on every read)."""
    raw = shakespeare.corpus_bytes("tinyshakespeare")
    assert len(raw) == 1_115_394
    assert raw.startswith(b"First Citizen:\nBefore we proceed any further, hear me speak.")
    assert raw.endswith(b"Whiles thou art waking.\n")
    assert len(set(raw.decode("utf-8"))) == 65  # char-rnn's 65-character vocabulary


def test_a_damaged_tinyshakespeare_is_refused(monkeypatch):
    monkeypatch.setattr(shakespeare, "TINY_SHA256", "0" * 64)
    with pytest.raises(RnnkitError, match="damaged; reinstall rnnkit"):
        shakespeare.corpus_bytes("tinyshakespeare")


# -- python-stdlib -------------------------------------------------------------------------------

def test_stdlib_files_are_sorted_py_files_under_the_stdlib():
    files = stdlib.stdlib_files()
    assert files == sorted(files) and len(files) > 100
    assert files == stdlib.stdlib_files()
    root = stdlib.stdlib_dir()
    assert all(p.suffix == ".py" and p.is_file() and p.is_relative_to(root) for p in files)


def test_stdlib_files_leave_out_tests_and_site_packages():
    root = stdlib.stdlib_dir()
    folders = {part for p in stdlib.stdlib_files() for part in p.relative_to(root).parts[:-1]}
    assert not folders & {"test", "tests", "idle_test", "site-packages", "dist-packages",
                          "__pycache__"}
    assert "json" in folders  # packages of the library itself stay


def test_skipped_folders_count_only_below_the_root(tmp_path):
    root = tmp_path / "tests" / "lib"  # a "tests" above the root does not matter
    for name in ("b.py", "a.py", "pkg/c.py", "pkg/tests/d.py", "test/e.py", "notes.txt",
                 "site-packages/f.py", "idlelib/idle_test/g.py", "pkg/__pycache__/h.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x = 1\n")
    assert stdlib.stdlib_files(root) == [root / "a.py", root / "b.py", root / "pkg" / "c.py"]


def test_read_utf8_gives_newline_ended_text_or_none(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(b"\xef\xbb\xbfx = 1\r\ny = 2\rz = 3")
    assert stdlib.read_utf8(path) == "x = 1\ny = 2\nz = 3\n"
    path.write_bytes(b"s = '\xe9'\n")  # latin-1
    assert stdlib.read_utf8(path) is None


def test_corpus_joins_the_usable_files_in_order(tmp_path, monkeypatch):
    texts = {"a.py": b"a = 1\n", "b.py": b"s = '\xe9'\n", "c.py": b"c = '\x00'\n",
             "d.py": b"", "e.py": b"def e():\n    return 5"}
    for name, data in texts.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setattr(stdlib, "stdlib_dir", lambda: tmp_path)
    assert stdlib.stdlib_bytes() == b"a = 1\ndef e():\n    return 5\n"


def test_no_stdlib_sources_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(stdlib, "stdlib_dir", lambda: tmp_path)
    with pytest.raises(RnnkitError, match="no .py files under"):
        stdlib.stdlib_bytes()


def test_python_stdlib_corpus_is_the_standard_library_as_utf8():
    raw = shakespeare.corpus_bytes("python-stdlib")
    text = raw.decode("utf-8")
    assert len(raw) > 1_000_000 and "\r" not in text and "\x00" not in text
    assert "def " in text and "class " in text and "import " in text
    first = stdlib.read_utf8(stdlib.stdlib_files()[0])
    assert text.startswith(first)


@pytest.mark.slow
def test_train_on_the_python_stdlib_corpus(tmp_path, capsys):
    from rnnkit.cli import main

    out = tmp_path / "run"
    assert main(["train", "--corpus", "python-stdlib", "--out", str(out), "--preset", "tiny",
                 "--max-steps", "2", "--eval-every", "2", "--seq-length", "16"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["corpus"] == "python-stdlib"
    assert "step 2" in capsys.readouterr().out
