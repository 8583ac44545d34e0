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
def test_exposure_bias_example_runs(tmp_path):
    summary = load("exposure_bias").main(["--out", str(tmp_path), "--steps", "15", "--lines",
                                          "400", "--hidden", "16"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["summary"]) == {"teacher_forcing", "scheduled_sampling_parallel",
                                       "scheduled_sampling_sequential"}
    assert "free_running_exact_match" in summary["scheduled_sampling_sequential"]
    assert summary["teacher_forcing"]["cost_vs_teacher_forcing"] == 1.0
    assert results["provenance"]["command"].startswith("python examples/exposure_bias.py")
