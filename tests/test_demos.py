import json

import pytest
import torch

from rnnkit.cli import main
from rnnkit.demos import structured_prediction
from rnnkit.errors import RnnkitError
from rnnkit.models import CharLM, CharLMConfig


def test_without_feedback_later_inputs_change_nothing():
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=7, hidden_size=8, feedback=False)).eval()
    a = torch.tensor([[1, 2, 3, 4]])
    b = torch.tensor([[1, 6, 5, 0]])
    c = torch.tensor([[2, 2, 3, 4]])
    torch.testing.assert_close(model(a)[0], model(b)[0])  # same first token: same outputs
    assert not torch.allclose(model(a)[0], model(c)[0])  # the first token still counts
    _, state = model(a[:, :1])
    torch.testing.assert_close(model(a[:, 1:2], state)[0], model(b[:, 1:2], state)[0])


@pytest.mark.parametrize("tokens", ["words", "chars"])
def test_lecture_demo_autoregressive_is_valid_independent_is_not(tokens):
    report = structured_prediction(samples=60, seed=1, tokens=tokens)
    assert report["autoregressive_valid_fraction"] == 1.0
    assert report["independent_valid_fraction"] < 0.5
    assert len(report["independent_examples"]) == 5
    if tokens == "words":  # the lecture's "I think machine ...": whole words, mixed
        words = {w for s in report["sentences"] for w in s.split()}
        drawn = report["independent_examples"]
        assert all(set(s.split()) <= words for s in drawn)
        assert any(s not in report["sentences"] for s in drawn)


def test_a_demo_over_other_tokens_is_refused():
    with pytest.raises(RnnkitError, match="--tokens must be one of words, chars"):
        structured_prediction(samples=5, tokens="bytes")


def test_demo_cli_json_and_bad_sentences_file(tmp_path, capsys):
    path = tmp_path / "s.txt"
    path.write_text("the cat sat\nthe dog ran\na bird flew\n")
    assert main(["demo", "structured-prediction", "--sentences", str(path), "--samples", "20",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["autoregressive_valid_fraction"] == 1.0
    assert report["independent_valid_fraction"] < 0.5
    path.write_text("only one line\n")
    assert main(["demo", "structured-prediction", "--sentences", str(path)]) == 2
    assert "at least two" in capsys.readouterr().err


@pytest.mark.parametrize("samples", [0, -3])
def test_demo_refuses_a_bad_sample_count(samples, capsys):
    assert main(["demo", "structured-prediction", "--samples", str(samples)]) == 2
