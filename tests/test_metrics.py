"""Metrics against hand-computed values and naive references (pure Python, fast)."""

import math
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.metrics import (
    bleu,
    cer,
    classification_report,
    edit_distance,
    exact_match,
    span_f1,
    spans,
    tag_accuracy,
    wer,
)

SHORT = st.text(alphabet="abc", max_size=6)


def naive_edit_distance(a: str, b: str) -> int:
    """The textbook recursion, memoised: an independent check on the rolling-row version."""
    @cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


# --- exact match, edit distance, CER --------------------------------------------------------

def test_exact_match_counts_equal_strings():
    assert exact_match(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5


@pytest.mark.parametrize("fn", [exact_match, cer, bleu, classification_report])
def test_length_mismatch_names_both_counts(fn):
    with pytest.raises(ValueError, match="got 2 and 1"):
        fn(["a", "b"], ["a"])


@pytest.mark.parametrize("a, b, expected", [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3),
    ("flaw", "lawn", 2), (["the", "cat"], ["a", "cat", "sat"], 2),
])
def test_edit_distance_known_values(a, b, expected):
    assert edit_distance(a, b) == expected


@settings(max_examples=200, deadline=None)
@given(SHORT, SHORT)
def test_edit_distance_matches_naive_recursion_and_is_symmetric(a, b):
    assert edit_distance(a, b) == naive_edit_distance(a, b) == edit_distance(b, a)


@settings(max_examples=200, deadline=None)
@given(SHORT, SHORT, SHORT)
def test_edit_distance_triangle_inequality(a, b, c):
    assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)


def test_cer_pools_over_corpus():
    # 1 deletion in "hello" (5 chars) + 2 substitutions in "ab" (2 chars) = 3 / 7, not the
    # mean of per-sentence rates (0.2 + 1.0) / 2
    assert cer(["helo", "xy"], ["hello", "ab"]) == pytest.approx(3 / 7)


def test_cer_can_exceed_one_and_handles_empty_references():
    assert cer(["abcd"], ["a"]) == 3.0
    assert cer(["", ""], ["", ""]) == 0.0
    assert cer(["x"], [""]) == math.inf


def test_wer_counts_word_edits_pooled_over_the_corpus():
    # "the cat sat" vs "the cat sat down": 1 deletion of 4 words; "a b" vs "c": 1
    # substitution + 1 insertion of 1 word: (1 + 2) / 5
    assert wer(["the cat sat", "a b"], ["the cat sat down", "c"]) == pytest.approx(3 / 5)
    assert wer(["  spaced   out "], ["spaced out"]) == 0.0
    assert wer(["", ""], ["", ""]) == 0.0 and wer(["x"], [""]) == math.inf


# --- BLEU -----------------------------------------------------------------------------------

def test_bleu_of_identical_corpus_is_100():
    corpus = ["the cat sat on the mat", "a quick brown fox jumps over it"]
    assert bleu(corpus, corpus) == pytest.approx(100.0)


def test_bleu_worked_example_with_clipping_and_brevity_penalty():
    preds = ["the cat sat on the mat", "the the the the"]
    refs = ["the cat sat on the soft mat", "the cat is on the mat"]
    # Sentence 1 (6 hyp tokens, 7 ref): all 6 unigrams match; bigrams 4 of 5 ("the mat" is
    # missing); trigrams 3 of 4; 4-grams 2 of 3.
    # Sentence 2 (4 hyp tokens, 6 ref): "the" x4 is clipped to the ref's 2; "the the" never
    # occurs, so bigrams 0 of 3, trigrams 0 of 2, 4-grams 0 of 1.
    precisions = [(6 + 2) / (6 + 4), (4 + 0) / (5 + 3), (3 + 0) / (4 + 2), (2 + 0) / (3 + 1)]
    c, r = 6 + 4, 7 + 6
    expected = 100 * math.exp(1 - r / c) * math.prod(precisions) ** (1 / 4)
    assert bleu(preds, refs) == pytest.approx(expected)
    assert expected == pytest.approx(100 * math.exp(-0.3) * (0.8 * 0.5 ** 3) ** 0.25)


def test_bleu_is_zero_without_a_matching_4gram():
    # 1-, 2- and 3-grams match, but no 4-gram does: no smoothing, so the score is exactly 0
    assert bleu(["a b c d e"], ["a b c x d e"]) == 0.0
    assert bleu(["a b c d e"], ["a b c x d e"], max_n=3) > 0.0


def test_bleu_is_zero_for_hypotheses_shorter_than_max_n():
    assert bleu(["a b c"], ["a b c"]) == 0.0
    assert bleu(["a b c"], ["a b c"], max_n=3) == pytest.approx(100.0)


def test_bleu_has_no_penalty_for_long_hypotheses():
    # c = 4 > r = 2, so the score is just the geometric mean of p1 = 2/4 and p2 = 1/3
    assert bleu(["a b x y"], ["a b"], max_n=2) == pytest.approx(100 * (2 / 4 * 1 / 3) ** 0.5)


def test_bleu_rejects_bad_max_n():
    with pytest.raises(ValueError, match="max_n"):
        bleu(["a"], ["a"], max_n=0)


# --- classification report ------------------------------------------------------------------

def test_classification_report_confusion_matrix_rows_gold_cols_pred():
    golds = ["cat", "cat", "dog", "dog", "dog", "eel"]
    preds = ["cat", "dog", "dog", "dog", "cat", "cat"]
    report = classification_report(preds, golds)
    assert report["labels"] == ["cat", "dog", "eel"]
    assert report["confusion"] == [[1, 1, 0],
                                   [1, 2, 0],
                                   [1, 0, 0]]
    assert report["accuracy"] == pytest.approx(3 / 6)
    cat = report["per_class"]["cat"]
    assert (cat["precision"], cat["recall"], cat["support"]) == (pytest.approx(1 / 3), 0.5, 2)
    assert cat["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    # eel is never predicted: precision 0 by convention, not a division error
    assert report["per_class"]["eel"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                          "support": 1}


def test_macro_f1_on_imbalanced_classes_weighs_classes_equally():
    golds = ["a"] * 8 + ["b"] * 2
    preds = ["a"] * 7 + ["b"] + ["a", "b"]
    report = classification_report(preds, golds)
    assert report["confusion"] == [[7, 1], [1, 1]]
    # a: P = R = 7/8; b: P = R = 1/2. Macro F1 = (7/8 + 1/2) / 2, while accuracy is 8/10.
    assert report["macro_f1"] == pytest.approx((7 / 8 + 1 / 2) / 2)
    assert report["accuracy"] == pytest.approx(0.8)


def test_predicted_only_label_gets_zero_recall_and_joins_the_macro_average():
    report = classification_report(["a", "z"], ["a", "a"])
    assert report["labels"] == ["a", "z"]
    assert report["per_class"]["z"]["recall"] == 0.0
    assert report["per_class"]["z"]["support"] == 0
    # a: P = 1, R = 1/2, F1 = 2/3; z: F1 = 0
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_given_labels_fix_order_and_macro_average():
    report = classification_report(["b", "a"], ["b", "a"], labels=["b", "a", "c"])
    assert report["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert report["macro_f1"] == pytest.approx(2 / 3)  # c has F1 0 and still counts


def test_classification_report_rejects_empty_input():
    with pytest.raises(ValueError, match="at least one"):
        classification_report([], [])


# --- spans ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], {(0, 2, "PER"), (3, 4, "LOC")}),
    (["O", "I-PER", "I-PER", "O"], {(1, 3, "PER")}),                       # I- after O opens
    (["B-PER", "O", "I-PER"], {(0, 1, "PER"), (2, 3, "PER")}),             # even of one type
    (["B-PER", "I-LOC", "I-LOC"], {(0, 1, "PER"), (1, 3, "LOC")}),         # type change opens
    (["B-PER", "B-PER", "I-PER"], {(0, 1, "PER"), (1, 3, "PER")}),         # B- after B- opens
    (["I-ORG"], {(0, 1, "ORG")}),
    (["B-PER", "I-PER"], {(0, 2, "PER")}),                                 # span to the end
    (["O", "O"], set()),
    ([], set()),
])
def test_bio_spans_follow_conlleval(tags, expected):
    assert spans(tags) == expected


def test_plain_spans_are_maximal_runs_of_equal_labels():
    tags = ["PER", "PER", "LOC", "O", "O", "PER", "LOC", "LOC"]
    assert spans(tags) == {(0, 2, "PER"), (2, 3, "LOC"), (5, 6, "PER"), (6, 8, "LOC")}


def test_custom_outside_tags():
    assert spans(["_", "NP", "NP", "-"], outside=("_", "-")) == {(1, 3, "NP")}


def test_mixing_bio_and_bare_tags_is_rejected():
    with pytest.raises(ValueError, match="'PER' has no B-/I- prefix"):
        spans(["B-LOC", "PER"])


# --- span F1 and tag accuracy ---------------------------------------------------------------

def test_span_f1_counts_partial_overlap_as_wrong():
    gold = [["B-PER", "I-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O", "B-LOC"]]  # PER span cut short: a miss and a false hit
    scores = span_f1(pred, gold)
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(1 / 2)


def test_span_f1_wrong_type_is_wrong_and_counts_pool_over_sequences():
    gold = [["B-PER", "O"], ["B-LOC", "I-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "O"], ["B-ORG", "I-ORG"], ["O", "O"]]
    scores = span_f1(pred, gold)  # 1 correct of 2 predicted, 1 of 3 gold
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_span_f1_is_one_when_nothing_to_find_and_nothing_found():
    assert span_f1([["O", "O"]], [["O", "O"]]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_span_f1_is_zero_when_spans_missed_or_invented():
    assert span_f1([["O"]], [["B-X"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert span_f1([["B-X"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_tag_accuracy_pools_over_steps():
    assert tag_accuracy([["a", "b", "c"], ["a"]], [["a", "x", "c"], ["y"]]) == 0.5


@pytest.mark.parametrize("fn", [tag_accuracy, span_f1])
def test_sequence_metrics_reject_misaligned_sequences(fn):
    with pytest.raises(ValueError, match="sequence 1: prediction has 1 tags, gold has 2"):
        fn([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="got 1 and 2"):
        fn([["O"]], [["O"], ["O"]])


def test_tag_accuracy_rejects_no_steps():
    with pytest.raises(ValueError, match="at least one step"):
        tag_accuracy([[]], [[]])
