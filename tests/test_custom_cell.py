"""Adding a cell, the worked example: a cell defined here, registered in one line, then
trained, sampled (fp32, int8, beam search), and used by a bidirectional tagger, all through
the command line, as a user who writes a cell meets it."""

import json
import math
import random

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cli import main
from rnnkit.layers.cells import CELLS, BaseCell
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.recurrent_step import RecurrentStep, int8_available

H = 16
SMALL = ["--rnn-size", str(H), "--num-layers", "2", "--embed-size", "8", "--batch-size", "4",
         "--max-steps", "30", "--eval-every", "10", "--device", "cpu", "--threads", "1",
         "--learning-rate", "0.02", "--warmup-steps", "5"]


class DiagCell(BaseCell):
    """h' = tanh(W_ih x + b_ih + d * h + b_hh): each unit feeds back only into itself, through
    its own weight d (a (H,) ``weight_hh``, a diagonal recurrent matrix)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))  # d
        self.reset_parameters()

    def update(self, gi: Tensor, gh: Tensor, state):
        h = torch.tanh(gi + gh)
        return h, (h,)


@pytest.fixture(scope="module")
def diag():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(CELLS, "diag", DiagCell)  # registering the cell: this one line
        yield


@pytest.fixture(scope="module")
def lm_run(diag, tmp_path_factory):
    root = tmp_path_factory.mktemp("diag_lm")
    text = root / "abc.txt"
    text.write_text("abcdefghij" * 400)  # each letter says which comes next
    out = root / "run"
    assert main(["train", "--cell", "diag", "--data", str(text), "--out", str(out),
                 "--seq-length", "16", *SMALL]) == 0
    return out


def test_the_language_model_learns(lm_run):
    rows = [json.loads(x) for x in (lm_run / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    model, _, _ = rnnkit.load(lm_run)
    assert type(model.rnn.cells[0]) is DiagCell
    # uniform over the 10 letters is log 10 = 2.3 nats; a model that ignores its input can
    # do no better, as every letter is equally common
    assert val[-1] < math.log(10) - 1.0, val


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_sampling(lm_run, capsys, precision):
    if precision == "int8" and not int8_available():
        pytest.skip("no dynamic int8 kernel in this torch")
    assert main(["sample", str(lm_run), "--prime-text", "abc", "--length", "30",
                 "--precision", precision, "--argmax"]) == 0
    out = capsys.readouterr().out
    assert len(out) == 3 + 30 + 1
    assert out.startswith("abcdefghij")  # the cycle learned, read back greedily


def test_beam_search(lm_run, capsys):
    assert main(["sample", str(lm_run), "--prime-text", "abc", "--length", "12",
                 "--beam", "4"]) == 0
    assert capsys.readouterr().out.startswith("abcdefghij")


def test_single_step_equals_the_full_forward(lm_run):
    model, _, _ = rnnkit.load(lm_run)
    model.eval()
    tokens = torch.randint(0, model.config.vocab_size, (3, 20))
    with torch.no_grad():
        want, _ = model(tokens)
    step, state, got = model.stepper(), None, []
    for t in range(tokens.shape[1]):
        logits, state = step(tokens[:, t], state)
        got.append(logits)
    torch.testing.assert_close(torch.stack(got, dim=1), want, atol=1e-5, rtol=1e-5)


def test_a_bidirectional_tagger(diag, tmp_path, capsys):
    rng = random.Random(0)
    lines = []
    for _ in range(300):  # tag the vowels
        s = "".join(rng.choice("bcdae") for _ in range(rng.randint(2, 8)))
        lines.append(s + "\t" + " ".join("V" if c in "ae" else "O" for c in s))
    data, out = tmp_path / "tags.tsv", tmp_path / "run"
    data.write_text("\n".join(lines) + "\n")
    assert main(["train", "--task", "tag", "--cell", "diag", "--data", str(data),
                 "--out", str(out), *SMALL]) == 0
    model, _, _ = rnnkit.load(out)
    assert model.config.bidirectional and type(model.encoder.rnn.layers[0].forward_layer
                                                .cells[0]) is DiagCell
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\nbead\n")
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(inputs)]) == 0
    assert [len(x.split()) for x in capsys.readouterr().out.splitlines()] == [3, 4]
    assert main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["accuracy"] <= 1


def test_an_unregistered_cell_is_refused_by_name(diag, tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("abc" * 50)
    with pytest.raises(SystemExit) as stop:  # argparse's own refusal
        main(["train", "--cell", "square", "--data", str(text), "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    # the choices are read as the parser is built: the cell registered above is among them
    assert ("invalid choice: 'square' (choose from 'rnn', 'gru', 'lstm', 'mingru', 'minlstm', "
            "'lru', 'diag')") in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"cell must be one of \(.*'lstm'.*\), got 'square'"):
        rnnkit.models.CharLMConfig(cell="square")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("embedded", [False, True])
def test_the_general_step_in_a_lower_precision_stays_close(precision, embedded):
    if precision == "int8" and not int8_available():
        pytest.skip("no dynamic int8 kernel in this torch")
    torch.manual_seed(0)
    rnn = Recurrent(DiagCell, 12, H, 2).eval()
    embed = nn.Embedding(9, 12) if embedded else None
    inputs = torch.randint(0, 9, (4, 10)) if embedded else torch.randn(4, 10, 12)
    exact, fast = RecurrentStep(rnn, embed, "fp32"), RecurrentStep(rnn, embed, precision)
    s1 = s2 = None
    for t in range(inputs.shape[1]):
        y1, s1 = exact(inputs[:, t], s1)
        y2, s2 = fast(inputs[:, t], s2)
        err = (y1 - y2).abs().max().item()
        assert 0 < err < 0.05, (t, err)  # a lower precision really is in use, and close


class BareCell(nn.Module):
    """A cell known only by its protocol: no weight_ih, no single_step."""

    state_names = ("h",)
    state_count = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        self.mix = nn.Linear(input_size + hidden_size, hidden_size, bias=bias)

    def init_state(self, batch_size: int, like: Tensor):
        return (like.new_zeros(batch_size, self.hidden_size),)

    def forward(self, x: Tensor, state=None):
        (h,) = state if state is not None else self.init_state(x.shape[0], x)
        h = torch.tanh(self.mix(torch.cat([x, h], dim=1)))
        return h, (h,)


def test_a_bare_protocol_cell_decodes_in_fp32_only():
    torch.manual_seed(1)
    rnn = Recurrent(BareCell, 5, H, 2).eval()
    x = torch.randn(3, 6, 5)
    with torch.no_grad():
        want, want_state = rnn(x)
    step, state = RecurrentStep(rnn), None
    for t in range(x.shape[1]):
        y, state = step(x[:, t], state)
        torch.testing.assert_close(y, want[:, t])
    torch.testing.assert_close(state[0], want_state[0])
    with pytest.raises(ValueError, match="BareCell has no bf16 single step"):
        RecurrentStep(rnn, precision="bf16")
