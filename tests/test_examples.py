"""The examples run end to end (tiny settings; the real numbers come from running them)."""

import importlib.util
import json
from pathlib import Path

import pytest

from rnnkit.data.synthetic import number_to_words, number_words_lines

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety-nine"), (100, "one hundred"),
    (1005, "one thousand five"), (20000, "twenty thousand"),
    (305_017, "three hundred five thousand seventeen"),
    (999_999, "nine hundred ninety-nine thousand nine hundred ninety-nine")])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_number_lines_are_distinct_and_seeded():
    a = number_words_lines(200, seed=3)
    assert a == number_words_lines(200, seed=3) and len(set(a)) == 200
    assert all(line[6] == "=" and line[:6].isdigit() for line in a)


@pytest.mark.slow
def test_exposure_bias_models_write_held_out_numbers(tmp_path):
    """Two-digit numbers, 200 steps: on the 9 or 10 held-out numbers each model wrote 30-44%
    word for word from the digits alone with seeds 0, 1 and 2; a model that has not learnt to
    read the digits writes the words of another number, and an untrained one writes noise:
    both 0."""
    summary = load("exposure_bias").main(["--out", str(tmp_path), "--digits", "2", "--lines",
                                          "100", "--steps", "200", "--hidden", "64",
                                          "--learning-rate", "1e-2"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["summary"]) == {"teacher_forcing", "scheduled_sampling_parallel",
                                       "scheduled_sampling_sequential"}
    assert summary["teacher_forcing"]["cost_vs_teacher_forcing"] == 1.0
    assert results["provenance"]["command"].startswith("python examples/exposure_bias.py")
    for name in results["summary"]:
        assert summary[name]["free_running_exact_match"] >= 0.15, (name, summary[name])
