"""The activity_recognition and captioning examples: tiny end-to-end runs (the real numbers come
from running them with their defaults)."""

import importlib.util
import json
from pathlib import Path

import pytest

import rnnkit
from rnnkit.data.vision import ACTIVITY_CLASSES

pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reversed_clip_classes_are_the_opposite_directions():
    opposite = load("activity_recognition").OPPOSITE
    names = ACTIVITY_CLASSES
    pairs = {names[i]: names[j] for i, j in enumerate(opposite)}
    assert pairs["up"] == "down" and pairs["left"] == "right"
    assert pairs["up-left"] == "down-right" and pairs["down-left"] == "up-right"
    assert all(opposite[j] == i for i, j in enumerate(opposite))


def test_caption_exact_match_is_split_by_digit_count():
    found = load("captioning").exact_match(["one then two", "six", "nine"],
                                           ["one then two", "six", "five"])
    assert found == {"exact_match": round(2 / 3, 4),
                     "exact_match_by_digits": {"1": 0.5, "2": 1.0}}


@pytest.mark.slow
def test_activity_recognition_example_runs(tmp_path):
    summary = load("activity_recognition").main(
        ["--out", str(tmp_path), "--steps", "5", "--frames", "4", "--frame-size", "16",
         "--hidden", "8", "--test-examples", "48", "--quiet"])
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    assert set(summary["results"]) == {"recognizer", "single_frame"}
    assert summary["chance"] == 0.125
    for r in summary["results"].values():
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
        assert r["test_examples"] == 48 and r["parameters"] > 0
    rec = summary["results"]["recognizer"]
    assert set(rec["probes"]) == {"frozen_accuracy", "reversed_accuracy",
                                  "reversed_predicts_opposite"}
    # the example's own test set is the one rnnkit.evaluate scores
    assert rnnkit.evaluate(tmp_path / "recognizer")["accuracy"] == pytest.approx(
        rec["accuracy"], abs=1e-4)


@pytest.mark.slow
def test_captioning_example_runs(tmp_path):
    summary = load("captioning").main(
        ["--out", str(tmp_path), "--steps", "5", "--max-digits", "2", "--hidden", "16",
         "--test-examples", "40", "--beam", "2", "--show", "2", "--quiet"])
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    assert set(summary["results"]) == {"teacher_forcing", "scheduled_sampling_parallel",
                                       "scheduled_sampling_sequential"}
    for r in summary["results"].values():
        for decoding in ("greedy", "beam_2"):
            assert 0.0 <= r[decoding]["exact_match"] <= 1.0
            assert set(r[decoding]["exact_match_by_digits"]) <= {"1", "2"}
        assert r["test_examples"] == 40 and len(r["examples"]["first"]) == 2
        assert set(r["examples"]["first"][0]) == {"truth", "greedy", "beam"}
    greedy = summary["results"]["teacher_forcing"]["greedy"]["exact_match"]
    assert rnnkit.evaluate(tmp_path / "teacher_forcing")["exact_match"] == pytest.approx(
        greedy, abs=1e-4)


@pytest.mark.slow
def test_captioning_without_scheduled_sampling_trains_one_model(tmp_path):
    summary = load("captioning").main(
        ["--out", str(tmp_path), "--steps", "3", "--max-digits", "2", "--hidden", "8",
         "--test-examples", "16", "--no-ss", "--quiet"])
    assert set(summary["results"]) == {"teacher_forcing"}
