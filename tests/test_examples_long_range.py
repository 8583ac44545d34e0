"""The long_range example: its generated tasks, the lag curriculum, the gradient probes, and
runs that must learn."""

import json

import pytest
import torch

from .test_examples import load

lr = load("long_range")


def test_adding_data_has_one_marker_per_half_and_sums_them():
    x, y = lr.adding_data(500, 50, torch.Generator().manual_seed(3))
    x2, y2 = lr.adding_data(500, 50, torch.Generator().manual_seed(3))
    assert x.shape == (500, 50, 2) and y.shape == (500,)
    assert x.equal(x2) and y.equal(y2)  # seeded
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, :25].sum(1) == 1).all() and (markers[:, 25:].sum(1) == 1).all()
    assert torch.allclose((values * markers).sum(1), y)
    # no memory: always predicting 1 scores the variance of a sum of two uniforms, 1/6
    assert abs(((y - 1) ** 2).mean().item() - 1 / 6) < 0.03


def test_copy_data_layout_and_targets_after_the_delimiter():
    gen = torch.Generator().manual_seed(0)
    x, y = lr.copy_data(300, 30, gen, symbols=10, alphabet=8)
    assert x.shape == y.shape == (300, 50)
    assert x.equal(lr.copy_data(300, 30, torch.Generator().manual_seed(0))[0])
    symbols = x[:, :10]
    assert ((symbols >= 1) & (symbols <= 8)).all() and len(symbols.unique()) == 8
    assert (x[:, 10:39] == lr.BLANK).all()  # lag - 1 blanks
    assert (x[:, 39] == 9).all()  # the delimiter, alphabet + 1
    assert (x[:, 40:] == lr.BLANK).all()
    assert (y[:, :40] == lr.BLANK).all() and y[:, 40:].equal(symbols)


def test_state_gradients_cover_every_step():
    args = lr.parse_args(["--hidden", "8"])
    x, y = lr.adding_data(4, 12, torch.Generator().manual_seed(0))
    for cell in ("rnn", "lstm", "mingru"):
        norms = lr.state_gradients(lr.build_model("adding", cell, args), x, y)
        assert len(norms) == 12 and all(n > 0 for n in norms)


@pytest.mark.slow
def test_long_range_lstm_learns_the_adding_problem_at_a_short_lag(tmp_path):
    # seeds 0, 1 and 2 all reach MSE 0.007 to 0.011 here (the plateau at 0.167 lasts about
    # 200 steps), so the bar leaves room for another CPU's rounding
    summary = lr.main(["--out", str(tmp_path), "--tasks", "adding", "--lags", "10",
                       "--cells", "lstm", "--steps", "400", "--learning-rate", "5e-3",
                       "--hidden", "32", "--test", "300", "--quiet"])
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    r = summary["results"]["adding"]["10"]["lstm"]
    assert r["baseline"]["mse"] == 0.1667
    assert r["mse"] < 0.05  # a model without memory cannot go below 0.167
    norms = summary["gradients"]["norms"]["lstm"]
    assert len(norms["init"]) == len(norms["trained"]) == 10


def test_the_curriculum_stretches_the_copy_lag_from_10_and_tests_at_the_full_lag():
    args = lr.parse_args(["--curriculum", "0.25"])
    lags = [lr.lag_at("copy", step, 100, 4000, args) for step in range(1, 4001)]
    assert lags[0] == 10 and lags == sorted(lags)  # grows, never shrinks
    assert lags.index(100) + 1 == 1000  # the full lag at a quarter of the steps, then kept
    assert set(lags[999:]) == {100}
    assert lr.lag_at("adding", 1, 100, 4000, args) == 100  # adding has no curriculum
    plain = lr.parse_args([])
    assert {lr.lag_at("copy", s, 100, 4000, plain) for s in (1, 2000, 4000)} == {100}
    assert lr.lag_at("copy", 1, 5, 10, args) == 5  # a lag under 10 starts at itself


@pytest.mark.slow
def test_long_range_gru_learns_to_copy_and_the_vanilla_rnn_does_not(tmp_path):
    # 3 symbols of 4 over a gap of 20, the measured run's recipe (curriculum, cosine): seeds
    # 0-2 gave the GRU 0.58-0.79 and the tanh RNN 0.25-0.26, chance being 0.25
    summary = lr.main(["--out", str(tmp_path), "--tasks", "copy", "--lags", "20",
                       "--cells", "rnn", "gru", "--symbols", "3", "--alphabet", "4",
                       "--hidden", "32", "--steps", "400", "--learning-rate", "1e-2",
                       "--curriculum", "0.3", "--schedule", "cosine", "--test", "300",
                       "--quiet"])
    runs = summary["results"]["copy"]["20"]
    assert runs["gru"]["baseline"]["accuracy"] == 0.25
    assert runs["gru"]["accuracy"] > 0.45
    assert runs["rnn"]["accuracy"] < 0.35
    assert (tmp_path / "long_range.png").exists()


def test_chrono_initialisation_spreads_the_lstm_memories_over_the_longest_gap():
    args = lr.parse_args(["--hidden", "256", "--lags", "100", "--chrono"])
    cell = lr.build_model("copy", "lstm", args).rnn.cells[0]
    h = 256
    forget, inputs = cell.bias_ih[h:2 * h], cell.bias_ih[:h]
    assert forget.min() >= 0 and forget.max() <= torch.log(torch.tensor(119.0))
    assert forget.max() > 4.0  # some units start with memories of 50+ steps
    torch.testing.assert_close(inputs, -forget)
    assert not cell.bias_ih[2 * h:].any() and not cell.bias_hh.any()
    plain = lr.build_model("copy", "lstm", lr.parse_args(["--hidden", "256"])).rnn.cells[0]
    assert (plain.bias_ih[h:2 * h] == 1.0).all()  # without --chrono: forget bias 1
