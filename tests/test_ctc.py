"""CTC decoding (rnnkit.ctc): collapse, best path, prefix beam search with an LM, CharLMScorer.

Prefix beam search is checked against exhaustive search: every one of the V^T paths of a short
utterance is enumerated and collapsed, giving the exact log P_ctc(y) of every label sequence,
itself checked against torch's ctc_loss. The test writes its own collapse and word count so it
does not trust the library's.
"""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.ctc import (
    CharLMScorer,
    PrefixLM,
    collapse,
    greedy_decode,
    prefix_beam_search,
)
from rnnkit.data.vocab import BOS, EOS, CharVocab
from rnnkit.models.char_lm import CharLM, CharLMConfig

TOL = 1e-5


def random_log_probs(T, V, seed, peak=2.0):
    g = torch.Generator().manual_seed(seed)
    return (peak * torch.randn(T, V, generator=g, dtype=torch.float64)).log_softmax(dim=-1)


def reference_collapse(path, blank):
    return tuple(k for k, _ in itertools.groupby(path) if k != blank)


def exhaustive_ctc(log_probs, blank=0):
    """{label sequence: exact log P_ctc(y)} for every y some path reaches."""
    T, V = log_probs.shape
    lp = log_probs.tolist()
    scores = {}
    for path in itertools.product(range(V), repeat=T):
        y = reference_collapse(path, blank)
        s = sum(lp[t][k] for t, k in enumerate(path))
        scores[y] = float(torch.logaddexp(torch.tensor(scores.get(y, -math.inf)),
                                          torch.tensor(s)))
    return scores


def reference_words(y, space):
    if space is None:
        return len(y)
    return sum(1 for is_space, _ in itertools.groupby(y, key=lambda c: c == space)
               if not is_space)


CASES = [(T, V, blank, seed) for seed, (T, V, blank) in enumerate(
    [(1, 3, 0), (2, 3, 0), (3, 4, 0), (4, 3, 0), (5, 3, 0), (5, 4, 0), (6, 3, 0), (6, 4, 0),
     (4, 4, 3), (6, 3, 2)])]


# collapse and best path


def test_collapse_merges_repeats_and_drops_blanks():
    assert collapse([1, 1, 0, 1, 2, 2]) == [1, 1, 2]
    assert collapse([0, 0, 0]) == []
    assert collapse([]) == []
    assert collapse([3, 3, 3]) == [3]
    assert collapse([2, 0, 2, 2, 0, 0, 2]) == [2, 2, 2]  # a blank between repeats keeps both
    assert collapse([1, 2, 2, 1], blank=2) == [1, 1]


def test_collapse_matches_reference_on_random_paths():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        path = torch.randint(0, 4, (12,), generator=g).tolist()
        for blank in (0, 3):
            assert tuple(collapse(path, blank)) == reference_collapse(path, blank)


def one_hot_log_probs(paths, V):
    return torch.stack([F.one_hot(torch.tensor(p), V).double().add(1e-3).log()
                        for p in paths])  # (B, T, V)


def test_greedy_decode_collapses_the_best_path_within_each_length():
    paths = [[1, 1, 0, 1, 2, 2], [2, 0, 2, 2, 1, 1], [0, 0, 0, 0, 0, 0]]
    log_probs = one_hot_log_probs(paths, V=3)
    assert greedy_decode(log_probs, torch.tensor([6, 6, 6])) == [[1, 1, 2], [2, 2, 1], []]
    # frames past a row's length are ignored
    assert greedy_decode(log_probs, torch.tensor([2, 4, 0])) == [[1], [2, 2], []]
    # another blank id
    assert greedy_decode(log_probs, torch.tensor([6, 6, 6]), blank=2) == [[1, 0, 1], [0, 1], [0]]


def test_greedy_decode_refuses_bad_shapes():
    with pytest.raises(ValueError):
        greedy_decode(torch.zeros(4, 3), torch.tensor([4]))
    with pytest.raises(ValueError):
        greedy_decode(torch.zeros(2, 4, 3), torch.tensor([4]))
    with pytest.raises(ValueError):
        greedy_decode(torch.zeros(1, 4, 3), torch.tensor([5]))


# the reference for the reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_log_prob_matches_ctc_loss(seed):
    T, V = 5, 4
    log_probs = random_log_probs(T, V, seed)
    exact = exhaustive_ctc(log_probs)
    for y in [(1,), (1, 2), (2, 2), (3, 1, 3), (1, 1, 1)]:
        loss = F.ctc_loss(log_probs[:, None], torch.tensor([y]), torch.tensor([T]),
                          torch.tensor([len(y)]), blank=0, reduction="sum")
        assert -loss.item() == pytest.approx(exact[y], abs=TOL)


# prefix beam search without an LM


@pytest.mark.parametrize("T,V,blank,seed", CASES)
def test_prefix_beam_search_equals_exhaustive_search(T, V, blank, seed):
    log_probs = random_log_probs(T, V, seed)
    exact = exhaustive_ctc(log_probs, blank)
    found = prefix_beam_search(log_probs, beam=2000, blank=blank)
    best = max(exact, key=exact.get)
    assert tuple(found[0][0]) == best
    assert found[0][1] == pytest.approx(exact[best], abs=TOL)
    # a beam that holds every prefix returns every label sequence, with its exact score
    assert {tuple(y) for y, _ in found} == set(exact)
    for y, s in found:
        assert s == pytest.approx(exact[tuple(y)], abs=TOL)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


def test_prefix_beam_search_sums_paths_where_best_path_does_not():
    # the best path is "_ _" -> [], but [1] has three paths (1 1, 1 _, _ 1) whose sum beats it
    probs = torch.tensor([[0.55, 0.45], [0.55, 0.45]], dtype=torch.float64)
    log_probs = probs.log()
    assert greedy_decode(log_probs[None], torch.tensor([2])) == [[]]
    (y, s), *_ = prefix_beam_search(log_probs, beam=4)
    assert y == [1]
    assert s == pytest.approx(math.log(1 - 0.55 ** 2), abs=TOL)


def test_label_pruning_is_exact_when_it_keeps_everything_and_a_bound_otherwise():
    log_probs = random_log_probs(6, 4, seed=7)
    exact = exhaustive_ctc(log_probs)
    full = prefix_beam_search(log_probs, beam=2000)
    assert prefix_beam_search(log_probs, beam=2000, label_top_k=3) == full
    assert prefix_beam_search(log_probs, beam=2000, label_margin=math.inf) == full
    for kwargs in ({"label_top_k": 1}, {"label_margin": 1.0}):
        pruned = prefix_beam_search(log_probs, beam=2000, **kwargs)
        assert len(pruned) < len(full)
        for y, s in pruned:
            assert s <= exact[tuple(y)] + TOL


@pytest.mark.parametrize("seed", range(6))
def test_small_beam_scores_are_lower_bounds(seed):
    log_probs = random_log_probs(6, 4, seed, peak=1.0)
    exact = exhaustive_ctc(log_probs)
    best = max(exact.values())
    for beam in (1, 2, 3):
        found = prefix_beam_search(log_probs, beam=beam)
        assert 1 <= len(found) <= beam
        assert len({tuple(y) for y, _ in found}) == len(found)
        for y, s in found:  # a pruned prefix loses paths, never gains any
            assert 0 not in y
            assert s <= exact[tuple(y)] + TOL
        assert found[0][1] <= best + TOL


def test_prefix_beam_search_with_no_frames_returns_the_empty_sequence():
    assert prefix_beam_search(torch.zeros(0, 3), beam=3) == [([], 0.0)]


@pytest.mark.parametrize("kwargs", [{"beam": 0}, {"beam": 2.0}, {"beam": 2, "blank": 3},
                                    {"beam": 2, "space": 0}, {"beam": 2, "space": 5},
                                    {"beam": 2, "label_top_k": 0},
                                    {"beam": 2, "label_margin": -1.0}])
def test_prefix_beam_search_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        prefix_beam_search(torch.zeros(4, 3).log_softmax(-1), **kwargs)


def test_prefix_beam_search_refuses_a_batch_nan_or_an_lm_of_other_labels():
    with pytest.raises(ValueError):
        prefix_beam_search(torch.zeros(1, 4, 3), beam=2)
    with pytest.raises(ValueError):
        prefix_beam_search(torch.zeros(4, 3), beam=2, lm=BigramLM(4, seed=0), lm_weight=1.0)
    with pytest.raises(ValueError):
        prefix_beam_search(torch.full((4, 3), math.nan), beam=2)


# prefix beam search with a language model


class BigramLM:
    """A fixed random bigram over the labels. The state is the whole prefix read so far (the
    bigram looks at its last label), so the test can see which prefixes the search reads."""

    def __init__(self, V, seed):
        g = torch.Generator().manual_seed(seed)
        self.first = torch.randn(V, generator=g, dtype=torch.float64).log_softmax(-1)
        self.next = torch.randn(V, V, generator=g, dtype=torch.float64).log_softmax(-1)
        self.ends = torch.randn(V + 1, generator=g, dtype=torch.float64).sigmoid().log()
        self.calls = []  # per extend call, the prefixes it read

    def start(self):
        return (), self.first

    def extend(self, states, tokens):
        self.calls.append([state + (t,) for state, t in zip(states, tokens, strict=True)])
        return [(state + (t,), self.next[t]) for state, t in zip(states, tokens, strict=True)]

    def end(self, state):
        return float(self.ends[state[-1] if state else -1])

    def log_prob(self, y):
        """log P_lm(y), end included, written out again."""
        total, dist = 0.0, self.first
        for c in y:
            total += float(dist[c])
            dist = self.next[c]
        return total + float(self.ends[y[-1] if y else -1])


@pytest.mark.parametrize("T,V,blank,seed", CASES)
def test_prefix_beam_search_with_lm_equals_exhaustive_search(T, V, blank, seed):
    log_probs = random_log_probs(T, V, seed)
    lm = BigramLM(V, seed)
    assert isinstance(lm, PrefixLM)
    space = (blank + 1) % V
    a, b = 0.7, 0.4
    exact = {y: s + a * lm.log_prob(y) + b * reference_words(y, space)
             for y, s in exhaustive_ctc(log_probs, blank).items()}
    found = prefix_beam_search(log_probs, beam=2000, blank=blank, lm=lm, lm_weight=a,
                               word_bonus=b, space=space)
    best = max(exact, key=exact.get)
    assert tuple(found[0][0]) == best
    assert found[0][1] == pytest.approx(exact[best], abs=TOL)
    assert {tuple(y) for y, _ in found} == set(exact)
    for y, s in found:
        assert s == pytest.approx(exact[tuple(y)], abs=TOL)
    # one batched call per frame at most, plus one for the end; no prefix read twice
    assert len(lm.calls) <= T + 1
    read = [y for call in lm.calls for y in call]
    assert len(set(read)) == len(read)


@pytest.mark.parametrize("seed", range(4))
def test_small_beam_with_lm_scores_are_lower_bounds(seed):
    T, V = 6, 4
    log_probs = random_log_probs(T, V, seed, peak=1.0)
    lm = BigramLM(V, seed)
    exact = {y: s + 0.5 * lm.log_prob(y) + 0.2 * reference_words(y, 1)
             for y, s in exhaustive_ctc(log_probs).items()}
    for beam in (1, 2, 3):
        lm.calls = []
        found = prefix_beam_search(log_probs, beam=beam, lm=lm, lm_weight=0.5, word_bonus=0.2,
                                   space=1)
        assert 1 <= len(found) <= beam
        for y, s in found:
            assert s <= exact[tuple(y)] + TOL
        assert len(lm.calls) <= T + 1
        assert all(len(call) <= beam for call in lm.calls)


def test_word_bonus_without_space_is_a_bonus_per_label():
    T, V = 5, 3
    log_probs = random_log_probs(T, V, seed=3)
    exact = {y: s + 1.5 * len(y) for y, s in exhaustive_ctc(log_probs).items()}
    found = prefix_beam_search(log_probs, beam=2000, word_bonus=1.5)
    best = max(exact, key=exact.get)
    assert tuple(found[0][0]) == best
    assert found[0][1] == pytest.approx(exact[best], abs=TOL)


def test_lm_weight_changes_the_best_hypothesis():
    """An LM that only likes label 2 turns a sequence of 1s into 2s when weighted enough."""
    log_probs = torch.tensor([[0.1, 0.5, 0.4]] * 3, dtype=torch.float64).log()
    lm = BigramLM(3, seed=0)
    lm.first = torch.tensor([-9.0, -9.0, 0.0], dtype=torch.float64)
    lm.next = torch.tensor([[-9.0, -9.0, 0.0]] * 3, dtype=torch.float64)
    plain = prefix_beam_search(log_probs, beam=8)[0][0]
    fused = prefix_beam_search(log_probs, beam=8, lm=lm, lm_weight=1.0)[0][0]
    assert 1 in plain and set(fused) == {2}


# CharLMScorer


def tiny_char_lm(vocab, seed=0):
    torch.manual_seed(seed)
    model = CharLM(CharLMConfig(vocab_size=len(vocab), hidden_size=16, num_layers=1,
                                embed_size=8))
    with torch.no_grad():  # larger weights than the init: distributions far from uniform
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def full_pass(model, vocab, text):
    """(len(text), V_lm) log-probs of the next character after each prefix of text."""
    tokens = torch.tensor(vocab.encode(text))[None]
    with torch.no_grad():
        logits, _ = model(tokens)
    return logits[0].log_softmax(dim=-1)


LABELS = ["", "a", "b", " ", "z", "\n"]  # blank, three chars the LM knows, one it does not, "\n"
FLOOR = math.log(1e-4)


def mapped(row, vocab):
    return torch.tensor([FLOOR if ch in ("", "z") else float(row[vocab.encode(ch)[0]])
                         for ch in LABELS])


def test_char_lm_scorer_matches_a_full_forward_pass():
    vocab = CharVocab(list("ab \n"))
    model = tiny_char_lm(vocab)
    scorer = CharLMScorer(model, vocab, LABELS, floor=FLOOR)
    assert isinstance(scorer, PrefixLM)
    reference = full_pass(model, vocab, "\nab a")  # start text, then the labels' characters
    state, log_probs = scorer.start()
    torch.testing.assert_close(log_probs, mapped(reference[0], vocab))
    assert scorer.end(state) == pytest.approx(float(reference[0][vocab.encode("\n")[0]]),
                                              abs=TOL)
    for k, label in enumerate([1, 2, 3, 1], start=1):  # "ab a"
        # a batch of three: the prefix, an unrelated one, and the same prefix again
        other, _ = scorer.start()
        (state, log_probs), _, (twin, twin_lp) = scorer.extend([state, other, state],
                                                               [label, 2, label])
        torch.testing.assert_close(log_probs, mapped(reference[k], vocab))
        torch.testing.assert_close(twin_lp, log_probs)
        assert scorer.end(state) == pytest.approx(
            float(reference[k][vocab.encode("\n")[0]]), abs=TOL)


def test_char_lm_scorer_leaves_the_state_on_an_unknown_character():
    vocab = CharVocab(list("ab \n"))
    scorer = CharLMScorer(tiny_char_lm(vocab), vocab, LABELS, floor=FLOOR)
    state, log_probs = scorer.start()
    assert log_probs[4] == pytest.approx(FLOOR)
    (moved, moved_lp), = scorer.extend([state], [1])
    # in a batch beside a prefix the LM reads, "z" (unknown) leaves its own prefix as it was
    (_, again_lp), (after, after_lp) = scorer.extend([moved, state], [2, 4])
    torch.testing.assert_close(after_lp, log_probs)
    assert scorer.end(after) == scorer.end(state)
    (_, after_z_then_a), = scorer.extend([after], [1])
    torch.testing.assert_close(after_z_then_a, moved_lp)


def test_char_lm_scorer_in_lines_mode_starts_at_bos_and_ends_at_eos():
    vocab = CharVocab(list("ab "), specials=[BOS, EOS])
    model = tiny_char_lm(vocab, seed=1)
    scorer = CharLMScorer(model, vocab, LABELS, floor=FLOOR)  # "\n" is unknown: skipped
    with torch.no_grad():
        logits, _ = model(torch.tensor([[vocab.id_of(BOS), vocab.id_of("a")]]))
    reference = logits[0].log_softmax(-1)
    state, _ = scorer.start()
    assert scorer.end(state) == pytest.approx(float(reference[0, vocab.id_of(EOS)]), abs=TOL)
    (state, log_probs), = scorer.extend([state], [1])
    assert log_probs[2] == pytest.approx(float(reference[1, vocab.id_of("b")]), abs=TOL)
    assert log_probs[5] == pytest.approx(FLOOR)  # "\n" itself is not a character here
    assert scorer.end(state) == pytest.approx(float(reference[1, vocab.id_of(EOS)]), abs=TOL)


def test_char_lm_scorer_refuses_a_start_text_it_cannot_read():
    vocab = CharVocab(list("ab"))
    with pytest.raises(ValueError):
        CharLMScorer(tiny_char_lm(vocab), vocab, LABELS, start_text="\n")


def test_beam_search_with_char_lm_scorer_equals_search_with_its_own_log_probs():
    """The search gives the scorer's answers the same sums as an exhaustive search would."""
    vocab = CharVocab(list("ab \n"))
    scorer = CharLMScorer(tiny_char_lm(vocab), vocab, LABELS, floor=FLOOR)
    log_probs = random_log_probs(4, len(LABELS), seed=5)
    found = prefix_beam_search(log_probs, beam=5, lm=scorer, lm_weight=0.5, word_bonus=0.3,
                               space=3)
    ctc = exhaustive_ctc(log_probs)
    for y, s in found:
        state, lp = scorer.start()
        lm = 0.0
        for c in y:
            lm += float(lp[c])
            (state, lp), = scorer.extend([state], [c])
        lm += scorer.end(state)
        # beam 5 may lose paths: the CTC part is a lower bound, the rest is exact
        assert s <= ctc[tuple(y)] + 0.5 * lm + 0.3 * reference_words(y, 3) + TOL
