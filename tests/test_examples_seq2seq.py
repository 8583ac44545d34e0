"""The seq2seq examples: their data generators, and end-to-end runs at tiny settings."""

import json

import pytest

from .test_examples import load


@pytest.fixture(scope="module")
def translate():
    pytest.importorskip("num2words")
    return load("translate_numbers")


@pytest.fixture(scope="module")
def reversal():
    return load("reversal")


# -- translate_numbers: data -----------------------------------------------------------------

def test_numbers_are_distinct_seeded_and_in_range(translate):
    a = translate.sample_numbers(500, 10 ** 6, seed=3)
    assert a == translate.sample_numbers(500, 10 ** 6, seed=3)
    assert a != translate.sample_numbers(500, 10 ** 6, seed=4)
    assert len(set(a)) == 500 and all(0 <= n < 10 ** 6 for n in a)
    with pytest.raises(ValueError):
        translate.sample_numbers(11, 10, seed=0)


@pytest.mark.parametrize("n, en, fr", [
    (0, "zero", "zéro"), (21, "twenty-one", "vingt et un"), (80, "eighty", "quatre-vingts"),
    (101, "one hundred and one", "cent un"), (200, "two hundred", "deux cents"),
    (4217, "four thousand, two hundred and seventeen", "quatre mille deux cent dix-sept")])
def test_num2words_gives_the_expected_words(translate, n, en, fr):
    assert translate.render(n, "digits") == str(n)
    assert translate.render(n, "en") == en and translate.render(n, "fr") == fr


def test_pair_lines_hold_both_sides(translate):
    assert translate.pair_lines([4217], "digits-en") == [
        "4217\tfour thousand, two hundred and seventeen"]
    assert translate.pair_lines([71], "en-fr") == ["seventy-one\tsoixante et onze"]


def test_train_and_test_files_share_no_number(translate, tmp_path):
    args = translate.parse_args(["--train", "300", "--test", "100", "--max-number", "1000"])
    train, test = translate.write_data(args, "digits-en", tmp_path)
    numbers = [{line.split("\t")[0] for line in p.read_text().splitlines()}
               for p in (train, test)]
    assert len(numbers[0]) == 300 and len(numbers[1]) == 100
    assert not numbers[0] & numbers[1]


# -- reversal: data and scores ---------------------------------------------------------------

def test_random_strings_are_distinct_seeded_and_in_bounds(reversal):
    a = reversal.random_strings(300, "abcd", 5, 9, seed=1)
    assert a == reversal.random_strings(300, "abcd", 5, 9, seed=1)
    assert len(set(a)) == 300
    assert all(5 <= len(s) <= 9 and set(s) <= set("abcd") for s in a)


def test_tagger_labels_are_the_reversed_string(reversal):
    assert reversal.seq2seq_line("abcde") == "abcde\tedcba"
    assert reversal.tag_line("abcde") == "abcde\te d c b a"
    text, labels = reversal.tag_line("hello").split("\t")
    assert labels.split() == list(reversed(text))


def test_train_and_test_strings_are_disjoint(reversal, tmp_path):
    args = reversal.parse_args(["--train", "200", "--test", "50", "--alphabet", "5"])
    paths = reversal.write_data(args, tmp_path)
    train = {line.split("\t")[0] for line in paths["tag_train"].read_text().splitlines()}
    test = {line.split("\t")[0] for line in paths["seq2seq_test"].read_text().splitlines()}
    assert len(train) == 200 and len(test) == 50 and not train & test


def test_reversal_scores_split_unread_and_read_positions(reversal):
    # "abcd" -> "dcba": output positions 0 and 1 copy inputs 3 and 2, not yet read
    scores = reversal.reversal_scores(["abcd", "abcd"], ["dcba", "xxba"])
    assert scores["exact_match"] == 0.5
    assert scores["char_accuracy"] == 0.75
    assert scores["char_accuracy_unread"] == 0.5 and scores["char_accuracy_read"] == 1.0
    short = reversal.reversal_scores(["abc"], ["c"])  # a short output misses the rest
    assert short["char_accuracy"] == pytest.approx(1 / 3, abs=1e-4)


def test_taggers_match_the_seq2seq_parameter_count(reversal):
    args = reversal.parse_args(["--hidden", "32", "--embed", "8"])
    settings = reversal.model_settings(args)
    assert not settings["tag-uni"]["bidirectional"] and settings["tag-bi"]["bidirectional"]
    assert settings["tag-uni"]["hidden_size"] > settings["tag-bi"]["hidden_size"] > 32


# -- end to end ------------------------------------------------------------------------------

@pytest.mark.slow
def test_translate_numbers_models_translate_held_out_numbers(translate, tmp_path):
    """Numbers below 1000, 200 steps: with seeds 0, 1 and 2 exact match on the 50 test
    numbers was 0.76-0.86 (digits-en) and 0.46-0.60 (en-fr) greedily, 0.82-0.88 and 0.42-0.60
    with a beam of 2; an untrained or unconditioned decoder gets none right and a CER near 1.
    (BLEU is no measure here: most outputs are shorter than its 4-grams.)"""
    summary = translate.main(["--out", str(tmp_path), "--train", "900", "--test", "50",
                              "--max-number", "1000", "--max-steps", "200",
                              "--learning-rate", "1e-2", "--hidden", "32", "--embed", "16",
                              "--beam", "2", "--show", "2", "--quiet"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == summary
    assert summary["results"].keys() == {"digits-en", "en-fr"}
    assert summary["provenance"]["command"].startswith("python examples/translate_numbers.py")
    bars = {"digits-en": 0.5, "en-fr": 0.25}
    for pair, r in summary["results"].items():
        assert r["steps"] == 200 and r["test_pairs"] == 50 and len(r["examples"]) == 2
        for name in ("greedy", "beam2"):
            assert r[name]["exact_match"] >= bars[pair], (pair, name, r[name])
            assert r[name]["cer"] < 0.5, (pair, name, r[name])


@pytest.mark.slow
def test_reversal_seq2seq_learns_to_reverse(reversal, tmp_path):
    """Short strings over 6 letters: the seq2seq reversed all 100 test strings with seeds 0, 1
    and 2; chance per character is 1/6, so a whole 3-6 letter string comes out right by
    chance under 0.5% of the time."""
    summary = reversal.main(["--out", str(tmp_path), "--train", "1000", "--test", "100",
                             "--alphabet", "6", "--min-len", "3", "--max-len", "6",
                             "--steps", "200", "--learning-rate", "1e-2", "--hidden", "32",
                             "--embed", "8", "--quiet"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == summary
    assert summary["results"].keys() == {"seq2seq", "tag-uni", "tag-bi"}
    assert summary["provenance"]["command"].startswith("python examples/reversal.py")
    counts = [r["parameters"] for r in summary["results"].values()]
    assert max(counts) < 1.1 * min(counts)  # an equal-size comparison
    assert summary["results"]["seq2seq"]["exact_match"] >= 0.8
