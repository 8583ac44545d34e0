"""Evaluation metrics: for sequence tasks on plain Python lists; MSE and SSIM on frames.

    from rnnkit.metrics import bleu, cer, span_f1
    bleu(["the cat sat"], ["the cat sat"])             # 100.0 (sacreBLEU's 0-100 scale)
    cer(["helo"], ["hello"])                           # 0.2
    span_f1([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])["f1"]   # 1.0

Every function that takes parallel lists (predictions and references) raises ``ValueError`` when
their lengths differ. Corpus metrics (CER, BLEU, span F1) pool counts over the whole corpus
before dividing, so they are not averages of per-sentence scores.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

Span = tuple[int, int, str]


def _check_parallel(preds: Sequence, refs: Sequence, names: str = "preds and refs") -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{names} must have the same length, got {len(preds)} and {len(refs)}")


def exact_match(preds: list[str], refs: list[str]) -> float:
    """Fraction of predictions exactly equal to their reference.

    Args:
        preds: Predicted strings.
        refs: Reference strings, one per prediction.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: If the lists differ in length or are empty.
    """
    _check_parallel(preds, refs)
    if not refs:
        raise ValueError("exact_match needs at least one example, got none")
    return sum(p == r for p, r in zip(preds, refs)) / len(refs)


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: fewest insertions, deletions and substitutions turning a into b.

    Works on any sequences whose items compare with ``==``: strings (characters) or lists
    (e.g. words, for a word error rate). O(len(a) * len(b)) time, O(min(len(a), len(b))) memory.

    Args:
        a: First sequence.
        b: Second sequence.

    Returns:
        The distance, a non-negative int.
    """
    if len(a) < len(b):
        a, b = b, a  # the distance is symmetric; keep the shorter one as the row
    row = list(range(len(b) + 1))  # row[j] = distance(a[:i], b[:j]) for the current i
    for i, x in enumerate(a, start=1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def cer(preds: list[str], refs: list[str]) -> float:
    """Character error rate: total edit distance over total reference characters.

    Pooled over the corpus, so long references weigh more than short ones. Can exceed 1 when
    predictions are longer than references.

    Args:
        preds: Predicted strings.
        refs: Reference strings, one per prediction.

    Returns:
        The rate; 0.0 when references and predictions are all empty, ``inf`` when only the
        references are.

    Raises:
        ValueError: If the lists differ in length.
    """
    _check_parallel(preds, refs)
    errors = sum(edit_distance(p, r) for p, r in zip(preds, refs))
    chars = sum(len(r) for r in refs)
    if chars == 0:
        return 0.0 if errors == 0 else math.inf
    return errors / chars


def wer(preds: list[str], refs: list[str]) -> float:
    """Word error rate: total edit distance over words (split on whitespace) divided by the
    total reference words; pooled like :func:`cer`, and like it able to exceed 1.

    Returns:
        The rate; 0.0 when references and predictions are all empty, ``inf`` when only the
        references are.
    """
    _check_parallel(preds, refs)
    errors = sum(edit_distance(p.split(), r.split()) for p, r in zip(preds, refs))
    words = sum(len(r.split()) for r in refs)
    if words == 0:
        return 0.0 if errors == 0 else math.inf
    return errors / words


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleu_counts(preds: list[str], refs: list[str],
                 max_n: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Corpus totals: clipped matches and candidate n-grams per order, hyp and ref lengths."""
    matches, totals = np.zeros(max_n, dtype=np.int64), np.zeros(max_n, dtype=np.int64)
    hyp_len = ref_len = 0
    for pred, ref in zip(preds, refs):
        hyp, gold = pred.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(gold)
        for n in range(1, max_n + 1):
            cand, allowed = _ngrams(hyp, n), _ngrams(gold, n)
            # clip: an n-gram counts at most as often as it occurs in the reference
            matches[n - 1] += sum(min(c, allowed[g]) for g, c in cand.items())
            totals[n - 1] += sum(cand.values())
    return matches, totals, hyp_len, ref_len


def bleu(preds: list[str], refs: list[str], max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002) with one reference per prediction, on a 0-100 scale.

    Tokens are whitespace-separated words (no further tokenisation, unlike sacreBLEU's default
    "13a"). Clipped n-gram matches and candidate counts are summed over the corpus for each order
    n = 1..max_n; the score is the geometric mean of those precisions times the brevity penalty
    exp(1 - r/c), applied when the total hypothesis length c is below the reference length r.
    There is no smoothing (sacreBLEU's ``smooth_method="none"``): if any order has no match the
    score is 0.0.

    Args:
        preds: Predicted sentences.
        refs: Reference sentences, one per prediction.
        max_n: Highest n-gram order (>= 1).

    Returns:
        BLEU scaled to [0, 100] like sacreBLEU (multiply by 0.01 for the paper's [0, 1]).

    Raises:
        ValueError: If the lists differ in length or ``max_n < 1``.
    """
    _check_parallel(preds, refs)
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    matches, totals, hyp_len, ref_len = _bleu_counts(preds, refs, max_n)
    if hyp_len == 0 or (matches == 0).any():
        return 0.0
    log_precision = np.mean(np.log(matches / totals))
    brevity = 0.0 if hyp_len >= ref_len else 1.0 - ref_len / hyp_len  # log of the penalty
    return float(100.0 * math.exp(log_precision + brevity))


def _safe_div(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _safe_div(2 * precision * recall, precision + recall)


def _confusion(preds: list[str], golds: list[str], labels: list[str]) -> np.ndarray:
    """Rows = gold, cols = predicted; pairs with a label outside ``labels`` are skipped."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for p, g in zip(preds, golds):
        if p in index and g in index:
            matrix[index[g], index[p]] += 1
    return matrix


def _class_scores(preds: list[str], golds: list[str], label: str) -> dict:
    # counted over all examples, so a prediction of `label` for a gold outside `labels` still
    # costs precision (as in scikit-learn)
    tp = sum(p == g == label for p, g in zip(preds, golds))
    support = golds.count(label)
    precision, recall = _safe_div(tp, preds.count(label)), _safe_div(tp, support)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall),
            "support": support}


def classification_report(preds: list[str], golds: list[str],
                          labels: list[str] | None = None) -> dict:
    """Accuracy, per-class precision/recall/F1, macro F1 and the confusion matrix.

    Args:
        preds: Predicted labels.
        golds: Gold labels, one per prediction.
        labels: Classes to report, in this order. Defaults to the sorted labels seen in golds or
            preds. Pairs involving a label not listed are left out of the confusion matrix but
            still count toward accuracy and per-class precision/recall.

    Returns:
        ``{"accuracy", "macro_f1", "per_class": {label: {"precision", "recall", "f1",
        "support"}}, "labels", "confusion"}``. ``confusion[i][j]`` counts examples with gold
        ``labels[i]`` predicted as ``labels[j]``. Macro F1 is the unweighted mean of the
        per-class F1 over ``labels``; a class never predicted has precision 0, a class never
        gold has recall 0.

    Raises:
        ValueError: If the lists differ in length or are empty, or ``labels`` is empty.
    """
    _check_parallel(preds, golds, "preds and golds")
    if not golds:
        raise ValueError("classification_report needs at least one example, got none")
    labels = sorted(set(golds) | set(preds)) if labels is None else list(labels)
    if not labels:
        raise ValueError("labels must name at least one class")
    per_class = {label: _class_scores(preds, golds, label) for label in labels}
    return {
        "accuracy": sum(p == g for p, g in zip(preds, golds)) / len(golds),
        "macro_f1": float(np.mean([s["f1"] for s in per_class.values()])),
        "per_class": per_class,
        "labels": labels,
        "confusion": _confusion(preds, golds, labels).tolist(),
    }


def _is_bio(tags: list[str], outside: Collection[str]) -> bool:
    """Whether tags use B-/I- prefixes; mixing prefixed and bare labels is an error."""
    inside = [t for t in tags if t not in outside]
    prefixed = [t.startswith(("B-", "I-")) for t in inside]
    if any(prefixed) and not all(prefixed):
        bare = inside[prefixed.index(False)]
        raise ValueError(f"tag {bare!r} has no B-/I- prefix but other tags do; "
                         f"use BIO tags throughout or add it to outside={tuple(outside)}")
    return any(prefixed)


def _bio_spans(tags: list[str], outside: Collection[str]) -> set[Span]:
    found, start, kind = set(), None, None
    for i, tag in enumerate(tags):
        if tag in outside:
            if start is not None:
                found.add((start, i, kind))
            start = None
            continue
        # conlleval: B- always starts a chunk; so does an I- after O or after another type
        if tag[0] == "B" or start is None or tag[2:] != kind:
            if start is not None:
                found.add((start, i, kind))
            start, kind = i, tag[2:]
    if start is not None:
        found.add((start, len(tags), kind))
    return found


def _run_spans(tags: list[str], outside: Collection[str]) -> set[Span]:
    found, i = set(), 0
    for tag, run in itertools.groupby(tags):
        n = len(list(run))
        if tag not in outside:
            found.add((i, i + n, tag))
        i += n
    return found


def spans(tags: list[str], outside: Collection[str] = ("O",)) -> set[Span]:
    """Labelled spans in one tag sequence.

    With BIO/IOB2 tags ("B-PER", "I-PER", "O") spans follow conlleval: "B-X" always opens a new
    span, and so does "I-X" after an outside tag or after a tag of another type. Without
    prefixes (plain labels such as "PER") a span is a maximal run of equal non-outside labels.
    The scheme is chosen per sequence: BIO when any non-outside tag starts with "B-" or "I-".

    Args:
        tags: One tag per step.
        outside: Tags that belong to no span.

    Returns:
        A set of ``(start, end, type)`` with ``end`` exclusive.

    Raises:
        ValueError: If prefixed and unprefixed non-outside tags are mixed.
    """
    outside = {outside} if isinstance(outside, str) else set(outside)
    tags = list(tags)
    return _bio_spans(tags, outside) if _is_bio(tags, outside) else _run_spans(tags, outside)


def _check_steps(pred_seqs: list[list[str]], gold_seqs: list[list[str]]) -> None:
    _check_parallel(pred_seqs, gold_seqs, "pred_seqs and gold_seqs")
    for k, (p, g) in enumerate(zip(pred_seqs, gold_seqs)):
        if len(p) != len(g):
            raise ValueError(f"sequence {k}: prediction has {len(p)} tags, gold has {len(g)}")


def span_f1(pred_seqs: list[list[str]], gold_seqs: list[list[str]],
            outside: Collection[str] = ("O",)) -> dict:
    """Micro-averaged span precision, recall and F1, as in conlleval.

    A predicted span counts only if its start, end and type all match a gold span; partial
    overlaps are wrong. Counts are pooled over all sequences.

    Args:
        pred_seqs: Predicted tag sequences (see :func:`spans` for the tag schemes).
        gold_seqs: Gold tag sequences, each the same length as its prediction.
        outside: Tags that belong to no span.

    Returns:
        ``{"precision", "recall", "f1"}``. If there are no gold and no predicted spans at all,
        every entry is 1.0 (nothing to find, nothing found wrongly).

    Raises:
        ValueError: If the lists, or any pair of sequences, differ in length.
    """
    _check_steps(pred_seqs, gold_seqs)
    n_pred = n_gold = n_correct = 0
    for p, g in zip(pred_seqs, gold_seqs):
        pred_spans, gold_spans = spans(p, outside), spans(g, outside)
        n_pred, n_gold = n_pred + len(pred_spans), n_gold + len(gold_spans)
        n_correct += len(pred_spans & gold_spans)
    if n_pred == n_gold == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision, recall = _safe_div(n_correct, n_pred), _safe_div(n_correct, n_gold)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def tag_accuracy(pred_seqs: list[list[str]], gold_seqs: list[list[str]]) -> float:
    """Fraction of steps tagged correctly, pooled over all sequences.

    Args:
        pred_seqs: Predicted tag sequences.
        gold_seqs: Gold tag sequences, each the same length as its prediction.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: If the lists, or any pair of sequences, differ in length, or there are no
            steps at all.
    """
    _check_steps(pred_seqs, gold_seqs)
    steps = sum(len(g) for g in gold_seqs)
    if steps == 0:
        raise ValueError("tag_accuracy needs at least one step, got none")
    correct = sum(p == g for ps, gs in zip(pred_seqs, gold_seqs) for p, g in zip(ps, gs))
    return correct / steps


# --- images and video frames (numpy arrays or torch tensors) ----------------------------------

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
SSIM_CHUNK = 256  # images per convolution: bounds memory on long videos


def _float64_pair(pred, target, name: str):
    """Both inputs as float64 torch tensors of one shape (torch is imported only here)."""
    import torch
    x = pred.detach() if torch.is_tensor(pred) else torch.as_tensor(np.asarray(pred))
    y = target.detach() if torch.is_tensor(target) else torch.as_tensor(np.asarray(target))
    if x.shape != y.shape:
        raise ValueError(f"{name}: pred and target must have the same shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} needs at least one value, got an empty array")
    return x.to(torch.float64), y.to(x.device, torch.float64)


def mse(pred, target) -> float:
    """Mean squared error over every element.

    Args:
        pred: Array or tensor of any shape.
        target: Same shape as ``pred``.

    Returns:
        The mean of ``(pred - target) ** 2`` as a float (computed in float64).

    Raises:
        ValueError: If the shapes differ or the arrays are empty.
    """
    x, y = _float64_pair(pred, target, "mse")
    return float(((x - y) ** 2).mean())


def _gaussian_band(n: int, like):
    """(n - 10, n) matrix whose row i holds the 11-tap Gaussian at columns i..i+10.

    ``band_h @ image @ band_w.T`` is the valid-region Gaussian filter: one batched matmul,
    several times faster on CPU than ``conv2d`` in float64.
    """
    import torch
    r = torch.arange(SSIM_WINDOW, dtype=like.dtype, device=like.device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-r ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()  # normalised over the truncated window, as scipy's gaussian_filter
    band = torch.zeros(n - SSIM_WINDOW + 1, n, dtype=like.dtype, device=like.device)
    for i in range(len(band)):
        band[i, i:i + SSIM_WINDOW] = g
    return band


def _blur(images, bands):
    """Valid-region Gaussian filter of (N, H, W) images -> (N, H - 10, W - 10)."""
    band_h, band_w = bands
    return band_h @ images @ band_w.T


def _ssim_map(x, y, bands, data_range: float):
    """SSIM at every valid window position of (N, H, W) images (Wang et al. 2004, eq. 13)."""
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, bands), _blur(y, bands)
    # population (not sample) variances, as scikit-image with use_sample_covariance=False
    var_x = _blur(x * x, bands) - mu_x ** 2
    var_y = _blur(y * y, bands) - mu_y ** 2
    cov = _blur(x * y, bands) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    return num / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(pred, target, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004) over images of shape (..., H, W).

    An 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03 and population statistics: the
    setting of ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False, data_range=...)``. Only window positions that lie wholly
    inside the image are scored (the "valid" region: scikit-image filters with padding but
    crops that border before averaging, which gives the same numbers). Leading dimensions
    (batch, time, channel) are treated as separate images and the mean is over all of them.

    Args:
        pred: Array or tensor (..., H, W) with H, W >= 11.
        target: Same shape as ``pred``.
        data_range: Max minus min possible value (1.0 for [0, 1] frames).

    Returns:
        The mean SSIM as a float: 1.0 for identical images, lower for less similar ones.

    Raises:
        ValueError: If the shapes differ, an image is smaller than 11x11, or
            ``data_range <= 0``.
    """
    x, y = _float64_pair(pred, target, "ssim")
    if x.ndim < 2 or min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} "
                         f"(shape (..., H, W)), got shape {tuple(x.shape)}")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    h, w = x.shape[-2:]
    x, y = x.reshape(-1, h, w), y.reshape(-1, h, w)
    bands = _gaussian_band(h, x), _gaussian_band(w, x)
    chunks = range(0, len(x), SSIM_CHUNK)
    total = sum(float(_ssim_map(x[i:i + SSIM_CHUNK], y[i:i + SSIM_CHUNK], bands, data_range).sum())
                for i in chunks)
    return total / (len(x) * (h - SSIM_WINDOW + 1) * (w - SSIM_WINDOW + 1))


# --- temporal action segmentation (a label per frame, scored by its segments) ----------------

Segment = tuple[object, int, int]


def segments(labels: Sequence) -> list[Segment]:
    """The maximal runs of equal labels in one sequence, in order.

    Args:
        labels: One label per frame (strings or ints).

    Returns:
        ``[(label, start, end), ...]`` with ``end`` exclusive; [] for an empty sequence.
        ``segments(["a", "a", "b"])`` is ``[("a", 0, 2), ("b", 2, 3)]``.
    """
    found, start = [], 0
    for label, run in itertools.groupby(labels):
        n = len(list(run))
        found.append((label, start, start + n))
        start += n
    return found


def edit_score(pred_seqs: list[Sequence], gold_seqs: list[Sequence]) -> float:
    """Segmental edit score (Lea et al. 2017), as the MS-TCN evaluation code computes it.

    Each sequence becomes the list of its segments' labels; the score of a sequence is
    ``100 * (1 - d / max(n_pred, n_gold))``, with d the Levenshtein distance between the two
    lists and n their lengths. It punishes over-segmentation (a segment split by a wrong
    frame or two) and ignores where exactly the boundaries fall.

    Args:
        pred_seqs: Predicted label sequences.
        gold_seqs: Gold label sequences, each the same length as its prediction.

    Returns:
        The mean over sequences, in [0, 100] (100 for two empty sequences).

    Raises:
        ValueError: If the lists, or any pair of sequences, differ in length, or there are
            no sequences.
    """
    _check_steps(pred_seqs, gold_seqs)
    if not gold_seqs:
        raise ValueError("edit_score needs at least one sequence, got none")
    scores = []
    for p, g in zip(pred_seqs, gold_seqs):
        pred, gold = [s[0] for s in segments(p)], [s[0] for s in segments(g)]
        longest = max(len(pred), len(gold))
        scores.append(100.0 * (1 - edit_distance(pred, gold) / longest) if longest else 100.0)
    return float(np.mean(scores))


def _segment_hits(pred: list[Segment], gold: list[Segment], iou: float) -> int:
    """True positives of one sequence: each predicted segment is matched to the gold segment
    of its label that it overlaps best (IoU), and counts if that IoU is >= ``iou`` and the
    gold segment was not matched before (MS-TCN's ``f_score``)."""
    matched, hits = set(), 0
    for label, start, end in pred:
        overlaps = [(max(0, min(end, g_end) - max(start, g_start))
                     / (max(end, g_end) - min(start, g_start)), k)
                    for k, (g_label, g_start, g_end) in enumerate(gold) if g_label == label]
        # the first of equal overlaps, as numpy's argmax in MS-TCN
        best, k = max(overlaps, key=lambda o: o[0], default=(0.0, -1))
        if best >= iou and k not in matched:
            matched.add(k)
            hits += 1
    return hits


def segment_f1(pred_seqs: list[Sequence], gold_seqs: list[Sequence], iou: float) -> float:
    """F1@k for temporal action segmentation (Lea et al. 2017; MS-TCN, Farha and Gall 2019).

    A predicted segment is a true positive when its intersection over union with the
    best-overlapping gold segment of the same label is >= ``iou`` and that gold segment has
    not been matched by an earlier prediction; every other predicted segment is a false
    positive, and every unmatched gold segment a false negative. The counts are summed over
    all sequences before precision, recall and F1 are taken. F1@10, F1@25 and F1@50 are
    ``iou`` = 0.1, 0.25 and 0.5: low thresholds forgive shifted boundaries, high ones do not.

    Args:
        pred_seqs: Predicted label sequences.
        gold_seqs: Gold label sequences, each the same length as its prediction.
        iou: The overlap threshold, in (0, 1].

    Returns:
        F1 in [0, 100], a percentage like :func:`edit_score` (100 when there are no segments
        at all).

    Raises:
        ValueError: If the lists, or any pair of sequences, differ in length, or ``iou`` is
            outside (0, 1].
    """
    _check_steps(pred_seqs, gold_seqs)
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    n_pred = n_gold = hits = 0
    for p, g in zip(pred_seqs, gold_seqs):
        pred, gold = segments(p), segments(g)
        n_pred, n_gold = n_pred + len(pred), n_gold + len(gold)
        hits += _segment_hits(pred, gold, iou)
    if n_pred == n_gold == 0:
        return 100.0
    return 100.0 * _f1(_safe_div(hits, n_pred), _safe_div(hits, n_gold))
