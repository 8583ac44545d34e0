"""Temporal action segmentation (--task segment): the segmental metrics against worked examples
and MS-TCN's rules, the generated clips, the Segmenter's view of time, .npz input and its
errors, and the task end to end through the command line."""

import json

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.actions import (
    ACTION_CLASSES,
    MIN_SEGMENT,
    MOVE,
    SLOW_DOWN,
    SPEED_UP,
    STOP,
    TURN,
    action_clips,
    action_tracks,
)
from rnnkit.metrics import edit_distance, edit_score, segment_f1, segments
from rnnkit.models import Segmenter, SegmenterConfig
from rnnkit.tasks.segment import SegmentData

pytest.importorskip("sklearn")


# -- metrics ------------------------------------------------------------------------------------

def test_segments_are_maximal_runs_with_exclusive_ends():
    assert segments(list("aabbba")) == [("a", 0, 2), ("b", 2, 5), ("a", 5, 6)]
    assert segments([3, 3, 1]) == [(3, 0, 2), (1, 2, 3)]
    assert segments([]) == []


def test_edit_score_counts_segment_order_not_boundaries():
    # the same segments with shifted boundaries: nothing to edit
    assert edit_score([list("aabbbc")], [list("aaabcc")]) == 100.0
    # one segment missing of two: 1 edit / 2 segments
    assert edit_score([list("aaaaaa")], [list("aaabbb")]) == 50.0
    # over-segmentation: a b a b against a b needs 2 deletions of 4 segments
    assert edit_score([list("abaabb")], [list("aaaabb")]) == 50.0
    # the mean over sequences (not pooled), and two empty sequences agree
    assert edit_score([list("aaaaaa"), list("ab")], [list("aaabbb"), list("ab")]) == 75.0
    assert edit_score([[]], [[]]) == 100.0


def test_f1_at_each_threshold_on_a_worked_example():
    gold = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    # a: frames 0-1 (IoU 2/10 = 0.2); b: 2-23 (10 shared of 22: 0.45); c: 24-29 (6/10 = 0.6)
    pred = ["a"] * 2 + ["b"] * 22 + ["c"] * 6
    assert segment_f1([pred], [gold], 0.10) == 100.0  # all 3 match
    assert segment_f1([pred], [gold], 0.25) == pytest.approx(200 / 3)  # b, c: P = R = 2/3
    assert segment_f1([pred], [gold], 0.50) == pytest.approx(100 / 3)  # c only
    assert edit_score([pred], [gold]) == 100.0  # the right segments in the right order


def test_f1_matches_each_gold_segment_once_and_pools_the_counts():
    # two predicted a's overlap the one gold a: the second is a false positive, as is b
    gold, split = ["a"] * 10, ["a"] * 5 + ["b"] + ["a"] * 4
    assert segment_f1([split], [gold], 0.1) == 50.0  # tp 1, fp 2, fn 0: P 1/3, R 1
    # pooled with a perfect sequence: tp 2, fp 2, fn 0 -> P 1/2, R 1 (a mean would say 75)
    assert segment_f1([split, list("aaa")], [gold, list("aaa")], 0.1) == pytest.approx(
        200 / 3)
    # one long prediction over a, b, a: it matches the first a only
    assert segment_f1([["a"] * 10], [list("aaaabbaaaa")], 0.1) == 50.0


def ms_tcn_scores(pred, gold, overlap):
    """MS-TCN's eval.py (levenstein with norm=True; f_score) written out plainly, with no
    background class, as the reference our functions must agree with."""
    def runs(x):
        return [(k, s, e) for k, s, e in segments(x)]
    p, g = runs(pred), runs(gold)
    hits, tp, fp = [0] * len(g), 0, 0
    for label, start, end in p:
        ious = [(min(end, ge) - max(start, gs)) / (max(end, ge) - min(start, gs)) * (label == gl)
                for gl, gs, ge in g]
        best = int(np.argmax(ious))
        if ious[best] >= overlap and not hits[best]:
            tp, hits[best] = tp + 1, 1
        else:
            fp += 1
    labels_p, labels_g = [s[0] for s in p], [s[0] for s in g]
    edit = (1 - edit_distance(labels_p, labels_g) / max(len(p), len(g))) * 100
    return edit, tp, fp, len(g) - sum(hits)


def test_edit_and_f1_agree_with_ms_tcn_on_random_sequences():
    rng = np.random.default_rng(0)
    preds, golds = [], []
    for _ in range(200):
        n = int(rng.integers(1, 30))
        golds.append(np.repeat(rng.integers(3, size=6), rng.integers(1, 6, size=6))[:n].tolist())
        golds[-1] += [0] * (n - len(golds[-1]))
        noisy = np.array(golds[-1])
        flip = rng.random(n) < 0.2
        noisy[flip] = rng.integers(3, size=flip.sum())
        preds.append(noisy.tolist())
    refs = [ms_tcn_scores(p, g, 0.25) for p, g in zip(preds, golds)]
    assert edit_score(preds, golds) == pytest.approx(np.mean([r[0] for r in refs]))
    tp, fp, fn = (sum(r[k] for r in refs) for k in (1, 2, 3))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 200 * precision * recall / (precision + recall)
    assert segment_f1(preds, golds, 0.25) == pytest.approx(f1)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="iou"):
        segment_f1([["a"]], [["a"]], 0.0)
    with pytest.raises(ValueError, match="same length"):
        edit_score([["a"]], [["a"], ["b"]])
    with pytest.raises(ValueError, match="prediction has 2"):
        segment_f1([["a", "a"]], [["a"]], 0.5)


# -- generated clips ----------------------------------------------------------------------------

def test_clips_shapes_and_segment_layout():
    clips, labels = action_clips(40, frames=16, size=32, seed=3)
    assert clips.shape == (40, 16, 1, 32, 32) and clips.dtype == np.float32
    assert labels.shape == (40, 16) and labels.dtype == np.int64
    assert clips.min() >= 0 and clips.max() <= 1 and (clips.reshape(640, -1).max(1) > 0).all()
    for row in labels.tolist():
        runs = segments(row)
        assert 2 <= len(runs) <= 4 and all(e - s >= MIN_SEGMENT for _, s, e in runs)
    assert (labels[:, -1] == labels[:, -2]).all()  # the last frame keeps the last action
    assert set(np.unique(labels)) == set(range(len(ACTION_CLASSES)))


def test_labels_follow_the_motion():
    """Frame t's label is the action of the step t -> t + 1."""
    clips, labels = action_clips(60, seed=5)
    positions, velocities, again = action_tracks(60, seed=5)
    assert (again == labels).all() and positions.min() >= 0 and positions.max() <= 32 - 12
    speed = np.linalg.norm(velocities, axis=-1)
    for i, row in enumerate(labels.tolist()):
        for action, start, end in segments(row):
            steps = range(start, min(end, 15))  # the last frame has no step of its own
            s = speed[i, list(steps)]
            if action == STOP:
                assert (s == 0).all()
                assert all((clips[i, t] == clips[i, t + 1]).all() for t in steps)
            elif action == MOVE:  # a wall flips one component, never the speed
                assert np.allclose(s, s[0]) and s[0] >= 1.5
                assert np.allclose(np.abs(velocities[i, steps.start]),
                                   np.abs(velocities[i, steps[-1]]))
            elif action == TURN:
                assert np.allclose(s, s[0]) and s[0] >= 1.5
                assert not np.allclose(np.abs(velocities[i, steps.start]),
                                       np.abs(velocities[i, steps.start + 1]))
            else:
                sign = {SPEED_UP: 1, SLOW_DOWN: -1}[action]
                assert (sign * np.diff(s) > 0).all() and (s >= 1.5 - 1e-9).all()
    # a moving frame differs from the next one but for a bounce that lands on the same pixel
    same = (clips[:, 1:] == clips[:, :-1]).reshape(60, 15, -1).all(-1)
    assert same[labels[:, :-1] == STOP].all() and same[labels[:, :-1] != STOP].mean() < 0.02


def test_clips_are_a_function_of_the_seed_and_test_digits_are_held_out():
    from rnnkit.data.vision import _digit_pool

    a, la = action_clips(20, seed=7)
    b, lb = action_clips(20, seed=7)
    c, _ = action_clips(20, seed=8)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    test, lt = action_clips(20, seed=7, split="test")
    assert np.array_equal(lt, la) and not np.array_equal(test, a)  # same motion, other digits
    positions, _, _ = action_tracks(20, seed=7)
    r, col = np.rint(positions[:, 0]).astype(int).T
    shown = np.stack([test[i, 0, 0, r[i]:r[i] + 12, col[i]:col[i] + 12] for i in range(20)])
    train_pool, _ = _digit_pool("train", 12)
    assert not (shown[:, None] == train_pool[None]).all(axis=(2, 3)).any()


def test_generated_batches_depend_on_the_step_and_val_is_held_out():
    from rnnkit.training.config import TrainConfig

    model_cfg = SegmenterConfig(num_classes=5, frames=8, frame_size=16)
    cfg = TrainConfig(task="segment", batch_size=4, seed=3, eval_examples=8)
    a, b = SegmentData(model_cfg, cfg), SegmentData(model_cfg, cfg)
    assert torch.equal(a.train_batch(5)["clips"], b.train_batch(5)["clips"])
    assert not torch.equal(a.train_batch(5)["clips"], a.train_batch(6)["clips"])
    assert not torch.equal(a.val.tensors["clips"], a.test.tensors["clips"])
    assert a.val.tensors["labels"].shape == (8, 8)


# -- the model ----------------------------------------------------------------------------------

def tiny(**settings) -> Segmenter:
    torch.manual_seed(0)
    config = SegmenterConfig(num_classes=5, cnn_width=4, hidden_size=8, frames=6, frame_size=16,
                             **settings)
    return Segmenter(config).eval()


@pytest.mark.parametrize("settings", [{}, {"bidirectional": False}, {"single_frame": True},
                                      {"num_layers": 2, "mlp_layers": 1, "cell": "gru"}])
def test_a_label_per_frame(settings):
    clips = torch.rand(3, 7, 1, 16, 16)
    assert tiny(**settings)(clips).shape == (3, 7, 5)


def test_what_each_frame_label_can_see():
    """Unidirectional: frames <= t; bidirectional: the whole clip; single-frame: frame t."""
    clips = torch.rand(2, 6, 1, 16, 16)
    later = clips.clone()
    later[:, 4:] = torch.rand(2, 2, 1, 16, 16)  # frames 4 and 5 changed
    other = clips.clone()
    other[:, [0, 1, 3, 4, 5]] = torch.rand(2, 5, 1, 16, 16)  # all but frame 2
    with torch.no_grad():
        uni, bi, single = tiny(bidirectional=False), tiny(), tiny(single_frame=True)
        assert torch.equal(uni(clips)[:, :4], uni(later)[:, :4])
        assert not torch.allclose(uni(clips)[:, 4:], uni(later)[:, 4:])
        assert not torch.allclose(bi(clips)[:, 3], bi(later)[:, 3])
        assert torch.allclose(single(clips)[:, 2], single(other)[:, 2])


def test_bad_model_settings_are_refused():
    with pytest.raises(ValueError, match="frames must be >= 6"):
        SegmenterConfig(frames=5)
    with pytest.raises(ValueError, match="mlp_layers"):
        SegmenterConfig(mlp_layers=-1)


# -- the command line ----------------------------------------------------------------------------

def train_flags(out, *extra):
    return ["train", "--task", "segment", "--out", str(out), "--batch-size", "8",
            "--threads", "1", *extra]


@pytest.mark.parametrize("arrays,words", [
    ({"clip": np.zeros((2, 6, 8, 8))}, "no array named 'clips'"),
    ({"clips": np.zeros((2, 6, 8, 8))}, "no array named 'labels'"),
    ({"clips": np.zeros((0, 6, 8, 8)), "labels": np.zeros((0, 6), int)}, "clips is empty"),
    ({"clips": np.zeros((2, 8, 8)), "labels": np.zeros((2, 6), int)}, "must have shape"),
    ({"clips": np.full((2, 6, 8, 8), 2.0), "labels": np.zeros((2, 6), int)}, "in [0, 1]"),
    ({"clips": np.zeros((2, 6, 3, 8, 8)), "labels": np.zeros((2, 6), int)}, "3 channels"),
    ({"clips": np.zeros((2, 6, 8, 8)), "labels": np.zeros(2, int)}, "one label per frame"),
    ({"clips": np.zeros((2, 6, 8, 8)), "labels": np.zeros((3, 6), int)},
     "2 clips but 3 rows of labels"),
    ({"clips": np.zeros((2, 6, 8, 8)), "labels": np.zeros((2, 5), int)},
     "clips have 6 frames but labels have 5"),
    ({"clips": np.zeros((2, 6, 8, 8)), "labels": np.zeros((2, 6))}, "ints or strings"),
    ({"clips": np.zeros((2, 6, 8, 8)), "labels": np.full((2, 6), "pick up")}, "whitespace"),
])
def test_bad_npz_gets_one_clear_line_and_no_run(tmp_path, capsys, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    code = main(train_flags(tmp_path / "run", "--data", str(tmp_path / "bad.npz")))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("rnnkit: error:") and "\n" not in err
    assert words in err, err
    assert not (tmp_path / "run").exists()


def test_user_npz_trains_evaluates_and_predicts(tmp_path, capsys):
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (20, 6, 12, 12), dtype=np.uint8)  # no channel axis: added
    labels = np.where(np.arange(6) < 3, "reach", "grasp")[None].repeat(20, 0)
    np.savez(tmp_path / "clips.npz", clips=clips, labels=labels)
    out = tmp_path / "run"
    assert main(train_flags(out, "--data", str(tmp_path / "clips.npz"), "--max-steps", "2",
                            "--eval-every", "2", "--val-frac", "0.2", "--frame-size", "12",
                            "--rnn-size", "8")) == 0
    samples = (out / "samples" / "step_000002.txt").read_text().splitlines()
    assert samples and all(" | truth reach reach reach grasp" in line for line in samples)
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(tmp_path / "clips.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "all" and report["examples"] == 20 and report["frames"] == 120
    assert {"loss", "accuracy", "edit", "f1_10", "f1_25", "f1_50"} <= set(report)
    np.savez(tmp_path / "unlabelled.npz", clips=clips[:3])
    assert main(["predict", str(out), "--input", str(tmp_path / "unlabelled.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(len(x.split()) == 6 for x in lines)
    assert {w for x in lines for w in x.split()} <= {"reach", "grasp"}
    other = tmp_path / "other.npz"
    np.savez(other, clips=clips[:2], labels=np.full((2, 6), "wave"))
    assert main(["eval", str(out), "--data", str(other)]) == 2
    assert "['wave'] are not among the model's classes" in capsys.readouterr().err


@pytest.mark.slow
def test_segmenter_learns_and_the_cli_evaluates_and_predicts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_flags(out, "--max-steps", "400", "--eval-every", "400", "--batch-size",
                            "16", "--frames", "12", "--frame-size", "24",
                            "--eval-examples", "200", "--learning-rate", "0.01")) == 0
    final = json.loads((out / "last.json").read_text())["metrics"]
    # the commonest action covers a quarter of the frames (0.25 here), and a model that reads
    # no motion stays there; this one was at 0.39 after 300 steps, 0.47 after 900
    assert final["val_accuracy"] >= 0.33, final
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "segment" and report["split"] == "test"
    assert report["examples"] == 200 and report["accuracy"] >= 0.33
    assert 0 <= report["edit"] <= 100 and report["f1_10"] >= report["f1_50"]
    assert main(["predict", str(out), "--count", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(len(x.split()) == 12 for x in lines)
    assert {w for x in lines for w in x.split()} <= set(ACTION_CLASSES)


# -- the example ----------------------------------------------------------------------------------

def load_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "segment_video.py"
    spec = importlib.util.spec_from_file_location("segment_video", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_compares_models_of_about_the_same_size():
    sizes = [sum(p.numel() for p in Segmenter(SegmenterConfig(num_classes=5, **s)).parameters())
             for s in load_example().MODELS.values()]
    assert max(sizes) / min(sizes) < 1.02, sizes


@pytest.mark.slow
def test_the_example_bilstm_labels_frames_better_than_the_commonest_action(tmp_path):
    """8 frames of 16 x 16, 300 steps: with seeds 0, 1 and 2 the BiLSTM labelled 0.36-0.42 of
    the test frames right, 0.12-0.16 above the commonest action's share (0.23-0.27); a model
    that reads no motion cannot beat that share."""
    summary = load_example().main(["--out", str(tmp_path / "runs"), "--steps", "300",
                                   "--frames", "8", "--frame-size", "16", "--batch-size", "16",
                                   "--test-examples", "100", "--models", "bilstm", "--quiet"])
    assert set(summary["results"]) == {"bilstm"}
    assert summary["provenance"]["command"].startswith("python examples/segment_video.py")
    r = summary["results"]["bilstm"]
    assert r["test_examples"] == 100
    assert r["accuracy"] >= summary["majority_class_accuracy"] + 0.07, (
        r, summary["majority_class_accuracy"])
