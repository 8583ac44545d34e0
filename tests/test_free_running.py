import json

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.corpus import tokenize
from rnnkit.data.vocab import EOS
from rnnkit.decoding import greedy_continue
from rnnkit.models import CharLM, CharLMConfig
from rnnkit.tasks.free_running import (
    decode_both,
    free_running_report,
    line_cases,
    score,
    stream_cases,
)


def test_score_counts_exact_matches_and_errors_per_position():
    truths = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]
    preds = [torch.tensor([1, 2, 3, 9]), torch.tensor([4, 0, 7])]
    s = score(preds, truths)
    assert s["exact_match"] == 0.5
    assert s["position_error"] == [0.0, 0.5, 0.0]  # position 2 exists in one case only
    assert s["mean_position_error"] == pytest.approx(1 / 5)


def test_cases_hold_the_prompt_and_the_true_continuation():
    ids, vocab = tokenize("abcdef\nab\nxyz12\n", "lines")
    cases = line_cases(ids, vocab, prefix=2, limit=10)
    assert len(cases) == 2  # "ab" has nothing after its prefix but <eos>: skipped
    prompt, truth = cases[0]
    assert vocab.decode(prompt) == "ab" and vocab.decode(truth) == "cdef"
    assert truth[-1] == vocab.id_of(EOS)
    windows = stream_cases(np.arange(100), prefix=5, length=10, limit=4)
    assert [(list(p), list(t)) for p, t in windows][0] == (list(range(5)), list(range(5, 15)))
    assert len(windows) == 4 and windows[-1][1][-1] == 99


def test_free_running_is_greedy_decoding_and_teacher_forced_reads_the_truth():
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=6, hidden_size=8, embed_size=4)).eval()
    prompts = torch.tensor([[1, 2], [3, 4]])
    truths = [torch.tensor([5, 1, 2]), torch.tensor([0, 0, 1])]
    free, forced = decode_both(model, prompts, truths)
    assert torch.equal(free, greedy_continue(model, prompts, 3))
    for row in range(2):
        history = torch.cat([prompts[row], truths[row][:-1]])[None]
        assert torch.equal(forced[row], model(history)[0][0, 1:].argmax(-1))


def test_report_on_a_model_that_knows_its_lines(tmp_path, sentences_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(sentences_file), "--out", str(out), "--mode", "lines",
                 "--batch-size", "3", "--val-frac", "0", "--test-frac", "0", "--rnn-size", "64",
                 "--num-layers", "1", "--max-steps", "400", "--learning-rate", "0.02",
                 "--warmup-steps", "10", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "all", "--free-running", "--prefix", "3",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["exposure_bias"]
    assert report["cases"] == 3 and report["free_running"]["exact_match"] == 1.0
    assert main(["eval", str(out), "--split", "all", "--free-running", "--prefix", "99"]) == 2
    assert "lower --prefix" in capsys.readouterr().err


def test_stream_report_scores_every_window_position():
    torch.manual_seed(1)
    ids, vocab = tokenize("the cat sat on the mat\n" * 30, "stream")
    model = CharLM(CharLMConfig(vocab_size=len(vocab), hidden_size=16, embed_size=8))
    report = free_running_report(model, vocab, ids, "stream", prefix=5, length=20, max_cases=20)
    assert report["cases"] == 20
    for name in ("teacher_forced", "free_running"):
        assert 0 <= report[name]["mean_position_error"] <= 1
        assert len(report[name]["position_error"]) == 20


def test_stream_mode_needs_a_prompt(tmp_path, hamlet, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(hamlet), "--out", str(out), "--preset", "tiny",
                 "--max-steps", "5"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--free-running", "--prefix", "0"]) == 2
    assert "--prefix must be >= 1" in capsys.readouterr().err
