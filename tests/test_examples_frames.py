"""The frame-prediction example runs end to end (tiny settings), and the ConvLSTM benchmark
counts its FLOPs right."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rnnkit.layers.conv_rnn import ConvRecurrent

ROOT = Path(__file__).resolve().parent.parent


def load(folder: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench(monkeypatch_module):
    # the benchmark imports its sibling report.py as a top-level module
    monkeypatch_module.syspath_prepend(str(ROOT / "benchmarks"))
    return load("benchmarks", "bench_convlstm")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_convlstm_flops_match_a_hand_count(bench):
    # C=1, Hc=2, k=3, 4x4 frames: layer 1 convolves 1 + 2 channels into 8 gates, layer 2
    # 2 + 2; a multiply-add is 2 FLOPs at each of the 16 pixels and 9 taps
    layer1 = 2 * 16 * 8 * (1 + 2) * 9
    layer2 = 2 * 16 * 8 * (2 + 2) * 9
    assert (layer1, layer2) == (6912, 9216)
    assert bench.convlstm_flops_per_frame(1, 2, 2, 3, 4) == layer1 + layer2
    stack = bench.conv_stack(1, 2, 2, 3)
    assert [(m.in_channels, m.out_channels) for m in stack if hasattr(m, "out_channels")] == [
        (3, 8), (8, 4)]
    assert bench.conv_flops_per_frame(stack, 4) == layer1 + layer2


@pytest.mark.parametrize("channels, hidden, layers, kernel", [(1, 2, 2, 3), (3, 4, 3, 5)])
def test_flop_counts_agree_with_torch_flop_counter(bench, channels, hidden, layers, kernel):
    size, batch, frames = 6, 2, 3
    expected = bench.convlstm_flops_per_frame(channels, hidden, layers, kernel, size)
    convlstm = ConvRecurrent("lstm", channels, hidden, layers, kernel)
    with FlopCounterMode(display=False) as counter:
        convlstm(torch.rand(batch, frames, channels, size, size))
    assert counter.get_total_flops() == expected * batch * frames
    stack = bench.conv_stack(channels, hidden, layers, kernel)
    with FlopCounterMode(display=False) as counter:
        stack(torch.rand(batch, channels + hidden, size, size))
    assert counter.get_total_flops() == bench.conv_flops_per_frame(stack, size) * batch
    assert bench.conv_flops_per_frame(stack, size) == expected


def test_benchmark_runs_and_reports_ratios(bench):
    result = bench.main(["--size", "8", "--hidden", "4", "--batch", "2", "--frames", "2",
                         "--repeats", "1"])
    assert result["convlstm"]["train_frames_per_sec"] > 0
    assert result["conv_stack"]["inference_gflops_per_sec"] > 0
    assert set(result["convlstm_over_conv_stack"]) == {"inference", "train"}


@pytest.mark.slow
def test_frame_prediction_convlstm_beats_the_fc_lstm_and_the_mean_frame(tmp_path):
    """One digit, 16 x 16, 4 frames in and 4 out, 150 steps. With seeds 0, 1 and 2 the
    warp-head ConvLSTM scored MSE 0.021-0.022 against 0.028-0.030 for the FC-LSTM and the
    mean frame and 0.035-0.036 for the last input frame, and SSIM 0.29-0.33 against 0.04:
    better than the FC-LSTM and the mean frame on both at every forecast step, and than the
    last frame on MSE at every step. An untrained warp head repeats the last frame (MSE
    above the mean frame's), an untrained FC-LSTM draws a grey field."""
    result = load("examples", "frame_prediction").main([
        "--out", str(tmp_path), "--frame-size", "16", "--frames", "4", "--hidden", "16",
        "--steps", "150", "--test-examples", "50"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"].keys() == result["summary"].keys()
    assert saved["provenance"]["command"].startswith("python examples/frame_prediction.py")
    summary = saved["summary"]
    assert {"convlstm", "fclstm", "copy_last", "blank", "mean_frame", "pictures"} <= set(summary)
    conv, fc = summary["convlstm"], summary["fclstm"]
    assert conv["steps"] == fc["steps"] == 150
    # the FC-LSTM's size is matched to the ConvLSTM's parameter count
    assert abs(fc["params"] / conv["params"] - 1) < 0.2
    beats = saved["convlstm_beats_at_every_frame"]
    assert beats["fclstm"] == beats["mean_frame"] == {"mse": True, "ssim": True}, beats
    assert beats["copy_last"]["mse"], beats
    # the scores it is judged by agree with the per-frame lists
    for name in ("convlstm", "fclstm", "copy_last", "mean_frame"):
        s = summary[name]
        assert len(s["mse_per_frame"]) == len(s["ssim_per_frame"]) == 4
        assert abs(sum(s["mse_per_frame"]) / 4 - s["mse"]) < 1e-5
    for name in ("frame_prediction.png", "frame_prediction.gif"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_saved_run_beats_every_baseline_at_every_forecast_step():
    """examples/results/frame_prediction.json, the run the README's table shows: the ConvLSTM
    against the FC-LSTM of equal parameters, the last input frame and the mean training frame,
    lower MSE and higher SSIM at every forecast step, at the example's default (CPU) scale."""
    saved = json.loads((ROOT / "examples" / "results" / "frame_prediction.json").read_text())
    defaults = vars(load("examples", "frame_prediction").parse_args([]))
    assert {k: saved["args"][k] for k in ("frame_size", "frames", "digits", "steps")} == {
        k: defaults[k] for k in ("frame_size", "frames", "digits", "steps")}
    summary = saved["summary"]
    conv = summary["convlstm"]
    for base in ("fclstm", "copy_last", "mean_frame"):
        b = summary[base]
        assert all(m < n for m, n in zip(conv["mse_per_frame"], b["mse_per_frame"])), base
        assert all(m > n for m, n in zip(conv["ssim_per_frame"], b["ssim_per_frame"])), base
    assert len(conv["mse_per_frame"]) == saved["args"]["frames"]
    assert abs(summary["fclstm"]["params"] / conv["params"] - 1) < 0.01  # equal parameters
