import pytest
import torch

from rnnkit.models import CharLM, CharLMConfig


def test_char_lm_shapes_and_state_carry():
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=11, hidden_size=8, embed_size=4, num_layers=2,
                                mlp_layers=1)).eval()
    x = torch.randint(0, 11, (3, 9))
    logits, state = model(x)
    assert logits.shape == (3, 9, 11) and [s.shape for s in state] == [(2, 3, 8)] * 2
    first, mid = model(x[:, :4])
    second, _ = model(x[:, 4:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), logits)


def test_forget_bias_sets_only_the_lstm_forget_gate():
    model = CharLM(CharLMConfig(vocab_size=5, hidden_size=4, forget_bias=1.0))
    for cell in model.rnn.cells:
        assert torch.all(cell.bias_ih[4:8] == 1) and torch.all(cell.bias_hh[4:8] == 0)
        assert not torch.all(cell.bias_ih[:4] == 1)  # input gate untouched
    gru = CharLM(CharLMConfig(vocab_size=5, hidden_size=4, cell="gru", forget_bias=1.0))
    assert not torch.all(gru.rnn.cells[0].bias_ih[4:8] == 1)


@pytest.mark.parametrize("bad", [{"cell": "lstmx"}, {"hidden_size": 0}, {"dropout": 1.0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        CharLMConfig(vocab_size=5, **bad)


def test_wrong_state_shape_is_an_error_not_a_crash():
    model = CharLM(CharLMConfig(vocab_size=5, hidden_size=4))
    _, state = model(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="state must be"):
        model(torch.zeros(4, 3, dtype=torch.long), state)
