"""The python_tagging and long_range examples: their data builders, and tiny end-to-end runs."""

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pt = load("python_tagging")
lr = load("long_range")


def tags_of(source):
    return [tags for _, tags in pt.tag_source(source)]


def test_tokenize_tags_of_a_known_line():
    [tags, last] = tags_of("if x in items:  # hi\n")
    assert tags == (["B-KEYWORD", "I-KEYWORD", "O", "B-NAME", "O", "B-KEYWORD", "I-KEYWORD", "O"]
                    + ["B-NAME"] + ["I-NAME"] * 4 + ["B-OP", "O", "O"]
                    + ["B-COMMENT"] + ["I-COMMENT"] * 3)
    assert last == []  # the empty line after the final newline


def test_string_prefixes_numbers_and_adjacent_operators():
    [tags, _] = tags_of('y = f"{a}" + .5**2 or rb"x"()\n')
    assert tags == (["B-NAME", "O", "B-OP", "O"] + ["B-STRING"] + ["I-STRING"] * 5
                    + ["O", "B-OP", "O", "B-NUMBER", "I-NUMBER", "B-OP", "I-OP", "B-NUMBER", "O",
                       "B-KEYWORD", "I-KEYWORD", "O", "B-STRING"] + ["I-STRING"] * 4
                    + ["B-OP", "B-OP"])  # "()" is two tokens, so two spans


def test_soft_keywords_stay_names():
    [tags, _] = tags_of("match = 1\n")
    assert tags[:5] == ["B-NAME"] + ["I-NAME"] * 4


def test_multiline_string_is_cut_per_line():
    rows = pt.tag_source('s = """doc\nmore"""\n')
    assert rows[0] == ('s = """doc', ["B-NAME", "O", "B-OP", "O", "B-STRING"] + ["I-STRING"] * 5)
    assert rows[1] == ('more"""', ["I-STRING"] * 7)  # inside the string: no B-


def test_labels_count_equals_characters_on_real_files(tmp_path):
    files = pt.stdlib_files()[:20]
    rows = [r for p in files for r in pt.file_examples(p, 80, 50, seed=0)]
    assert rows
    for text, tags in rows:
        assert len(tags) == len(text) and pt.keep_line(text, 80)
        assert all(t == "O" or t[2:] in pt.TYPES for t in tags)
    pt.write_tsv(rows, tmp_path / "x.tsv")
    assert pt.read_tsv(tmp_path / "x.tsv") == rows


def test_lines_the_tsv_cannot_hold_are_skipped():
    assert pt.keep_line("x = 1", 80)
    assert not pt.keep_line("\tx = 1", 80) and not pt.keep_line("\x0c", 80)
    assert not pt.keep_line("    ", 80) and not pt.keep_line("", 80)
    assert not pt.keep_line("x" * 81, 80)


def test_files_python_rejects_give_no_examples(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('x = """never closed\n')
    assert pt.file_examples(bad, 80, 10, seed=0) == []


def test_train_and_test_files_are_disjoint_and_seeded():
    files = pt.stdlib_files()
    train, test = pt.split_files(files, 30, 10, seed=1)
    assert len(train) == 30 and len(test) == 10 and not set(train) & set(test)
    assert (train, test) == pt.split_files(files, 30, 10, seed=1)
    assert train != pt.split_files(files, 30, 10, seed=2)[0]
    assert not any("site-packages" in p.parts for p in files)


def test_wide_tagger_has_the_parameters_of_the_bidirectional_one():
    h = pt.wide_hidden(64)
    assert h > 64 and pt.wide_hidden(64) == h


def test_long_range_labels_are_the_first_character_and_seeded():
    rows = lr.first_char_examples(200, seed=3, min_len=100, max_len=150, alphabet="abc")
    assert rows == lr.first_char_examples(200, seed=3, min_len=100, max_len=150, alphabet="abc")
    assert all(label == text[0] and 100 <= len(text) <= 150 and set(text) <= set("abc")
               for text, label in rows)
    assert {label for _, label in rows} == set("abc")
    assert rows != lr.first_char_examples(200, seed=4, alphabet="abc")


def test_mixed_lengths_are_log_uniform_from_one():
    rows = lr.first_char_examples(2000, seed=0, min_len=1, max_len=150, log_uniform=True)
    lengths = sorted(len(text) for text, _ in rows)
    assert lengths[0] == 1 and lengths[-1] <= 150 and lengths[-1] >= 140
    assert 8 <= lengths[len(lengths) // 2] <= 18  # the median of log-uniform on [1, 151) is ~12
    assert all(label == text[0] for text, label in rows)


@pytest.mark.slow
def test_python_tagging_example_runs(tmp_path):
    summary = pt.main(["--out", str(tmp_path), "--train-files", "8", "--test-files", "6",
                       "--lines-per-file", "20", "--steps", "5", "--hidden", "8", "--quiet"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == summary
    assert set(summary["results"]) == {"unidirectional", "bidirectional", "unidirectional_wide"}
    assert summary["data"]["train_lines"] > 0 and summary["data"]["test_lines"] > 0
    for r in summary["results"].values():
        for key in ("accuracy", "span_f1", "type_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        assert set(r["type_accuracy_by_position"]) <= {"token_start", "token_rest", "O"}
    results = summary["results"]
    assert results["bidirectional"]["parameters"] > results["unidirectional"]["parameters"]


@pytest.mark.slow
def test_long_range_example_runs(tmp_path):
    summary = lr.main(["--out", str(tmp_path), "--train", "200", "--test", "50", "--steps", "5",
                       "--hidden", "8", "--min-len", "20", "--max-len", "30", "--quiet"])
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    assert set(summary["results"]) == {"long", "mixed"}
    assert summary["chance"] == 0.25 and 0.25 <= summary["test_majority_share"] <= 1.0
    for regime in summary["results"].values():
        assert set(regime) == {"rnn", "gru", "lstm"}
        for r in regime.values():
            assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["val_accuracy"] <= 1.0
    cells = summary["results"]["long"]
    assert cells["rnn"]["parameters"] < cells["gru"]["parameters"] < cells["lstm"]["parameters"]
