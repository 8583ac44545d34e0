"""The python_code example: its function extractor, corpus builder and scoring (exact outputs
on hand-written inputs), and a tiny end-to-end run."""

import json
from collections import Counter

import numpy as np
import pytest

from rnnkit.data.corpus import encode_file
from rnnkit.data.vocab import CharVocab

from .test_examples import load

pc = load("python_code")


def extract(text, start=0):
    fn = pc.extract_function(text, start)
    return None if fn is None else (fn.source, fn.complete)


# -- the extractor -----------------------------------------------------------------------------

def test_function_ends_at_the_first_line_back_at_its_indentation():
    text = "\ndef f(x):\n    y = x + 1\n    return y\nz = f(2)\n"
    assert extract(text) == ("def f(x):\n    y = x + 1\n    return y\n", True)


def test_blank_lines_inside_the_body_stay_and_trailing_ones_go():
    text = "def f():\n    a = 1\n\n    \n    return a\n\n\nprint(f())\n"
    assert extract(text) == ("def f():\n    a = 1\n\n\n    return a\n", True)


def test_a_nested_def_belongs_to_its_outer_function():
    text = ("def outer():\n    def inner():\n        return 1\n\n    return inner\n"
            "def next_one():\n    pass\n")
    source, complete = extract(text)
    assert complete and source == ("def outer():\n    def inner():\n        return 1\n\n"
                                   "    return inner\n")
    inner = text.index("    def inner")  # from there, the nested def alone, dedented
    assert extract(text, inner) == ("def inner():\n    return 1\n", True)


def test_decorators_are_not_part_of_the_function():
    text = "@functools.cache\n@other(1)\ndef f():\n    return 1\n"
    assert extract(text) == ("def f():\n    return 1\n", False)  # runs to the end of the text
    assert extract(text + "x = 1\n") == ("def f():\n    return 1\n", True)


def test_a_method_is_dedented_and_ends_at_the_next_method():
    text = ("class A:\n    def m(self):\n        return 1\n\n    def n(self):\n"
            "        return 2\n")
    assert extract(text) == ("def m(self):\n    return 1\n", True)
    assert extract(text, text.index("    def n")) == ("def n(self):\n    return 2\n", False)


def test_an_unfinished_last_line_is_dropped_and_the_function_is_incomplete():
    text = "\ndef f(x):\n    y = x\n    ret"
    assert extract(text) == ("def f(x):\n    y = x\n", False)
    assert extract("\n    def m(self):\n        return 1\n        ") == (
        "def m(self):\n    return 1\n", False)  # blank tail: cannot tell, so incomplete


def test_an_unfinished_last_line_back_at_the_def_indentation_closes_it():
    assert extract("\ndef f():\n    pass\nx = ") == ("def f():\n    pass\n", True)


def test_a_def_line_with_nothing_after_it():
    assert extract("\ndef f(): return 1\nx = 2\n") == ("def f(): return 1\n", True)
    assert extract("def f():\nx = 2\n") == ("def f():\n", True)  # no body: a SyntaxError later


def test_no_function_found():
    assert pc.extract_function("x = 1\ndefault = 2\n") is None  # "default" is no def
    assert pc.extract_function("x = 1\ndef f(") is None  # only an unfinished def line
    assert pc.extract_function("x.def f():\n    pass\n") is None
    assert pc.extract_function("undef f():\n    pass\n", 2) is None  # not at a line start


def test_async_def_and_tab_indentation():
    assert extract("async def f():\n\tawait g()\nx = 1\n") == ("async def f():\n\tawait g()\n",
                                                                  True)


def test_all_functions_cuts_every_def_nested_ones_too_and_skips_the_first_line():
    text = ("def cut_off_at_split():\n    pass\n"  # the first line: skipped
            "def a():\n    def b():\n        pass\n    return b\n"
            "class C:\n    async def m(self):\n        pass\n"
            "def unfinished():\n    pass\n")  # runs to the end: incomplete, left out
    assert [f.source for f in pc.all_functions(text)] == [
        "def a():\n    def b():\n        pass\n    return b\n", "def b():\n    pass\n",
        "async def m(self):\n    pass\n"]


# -- scoring -----------------------------------------------------------------------------------

def test_scores_count_incomplete_and_missing_functions_as_not_parsing():
    texts = ["\ndef f():\n    return 1\nx\n",  # parses
             "\ndef g(:\n    return 1\nx\n",  # syntax error
             "\ndef h():\nx\n",  # no body
             "\ndef k():\n    return [1,\n"]  # runs to the end: incomplete
    scores = pc.score_functions([pc.extract_function(t) for t in texts] + [None],
                                corpus="def f():\n    return 1\n")
    assert scores["n"] == 5 and scores["complete"] == 3
    assert scores["parse_fraction"] == 0.2 and scores["parse_fraction_of_complete"] == 0.3333
    assert scores["verbatim_in_corpus"] == 1
    assert [msg for msg, _ in scores["top_errors"]] == [
        "invalid syntax", "expected an indented block after function definition on line 1"]
    assert scores["mean_lines"] == 1.67 and scores["examples"] == []


def test_compile_is_stricter_than_parse():
    assert pc.syntax_error("def f():\n    await g()\n") is None
    assert pc.syntax_error("def f():\n    await g()\n", compiled=True) is not None
    assert pc.syntax_error("def f(:\n") == "invalid syntax"


# -- the corpus --------------------------------------------------------------------------------

def test_stdlib_files_leave_out_tests_and_site_packages():
    files = pc.stdlib_files()
    assert files == sorted(files) and len(files) > 100
    parts = {part for p in files for part in p.parts}
    assert not parts & {"test", "tests", "idle_test", "site-packages"}


def test_corpus_takes_whole_utf8_files_up_to_the_cap(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x = 1\r\n")
    (tmp_path / "b.py").write_bytes(b"s = '\xe9'\n")  # latin-1: skipped
    (tmp_path / "c.py").write_text("def f():\n    '''Doc.'''\n    return 2  # two\n")
    (tmp_path / "d.py").write_text("y = 2\n")
    files = sorted(tmp_path.glob("*.py"))
    text, n = pc.build_corpus(files, max_bytes=50)
    assert (text, n) == ("x = 1\ndef f():\n    '''Doc.'''\n    return 2  # two\n", 2)
    assert pc.build_corpus(files, max_bytes=1000)[1] == 3
    text, _ = pc.build_corpus(files, max_bytes=1000, keep_comments=False)
    assert text == "x = 1\ndef f():\n    return 2\ny = 2\n"


def test_held_out_text_is_rnnkit_val_split():
    text = "".join(f"def f{i}():\n    return {i}\n" for i in range(300))
    vocab = CharVocab.from_codepoints(np.array([ord(c) for c in text]))
    val = encode_file(text.encode(), "x", "stream", vocab).split(0.05, 0.0)["val"]
    assert vocab.decode(val.tolist()) == pc.held_out_text(text, 0.05)


def unigram_bits(text: str) -> float:
    """Bits per character of the best model that ignores context: the character frequencies."""
    counts = np.array(list(Counter(text).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.mark.slow
def test_python_code_lm_beats_the_character_frequencies(tmp_path):
    """100 steps on 100 kB of the standard library: the held-out text cost 3.7 bits/char with
    seeds 0, 1 and 2; its unigram entropy is 4.6 bits, and an untrained model pays
    log2(vocabulary), about 6.6."""
    summary = pc.main(["--out", str(tmp_path), "--max-bytes", "200000", "--steps", "100",
                       "--hidden", "64", "--layers", "1", "--seq-length", "64",
                       "--precision", "fp32", "--samples", "2", "--length", "100",
                       "--temperatures", "0.8", "1.0", "--quiet"])
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    corpus = (tmp_path / "corpus.txt").read_text(encoding="utf-8")
    assert len(corpus.encode("utf-8")) == summary["corpus"]["bytes"] <= 200_000
    assert summary["real_functions"]["held_out"]["n"] > 0
    assert set(summary["samples"]) == {"function", "method"}
    assert all(set(by_temp) == {"0.8", "1.0"} and all(r["n"] == 2 for r in by_temp.values())
               for by_temp in summary["samples"].values())
    assert summary["provenance"]["command"].startswith("python examples/python_code.py")
    assert summary["val_bpc"] < unigram_bits(corpus) - 0.5, summary["val_bpc"]
