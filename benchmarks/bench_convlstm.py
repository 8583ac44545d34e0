"""ConvLSTM throughput against a plain conv2d stack of the same FLOPs, measured in the same run.

    python benchmarks/bench_convlstm.py [--size 64 --hidden 64 --layers 2 --batch 16 --frames 5]

The ConvLSTM (rnnkit.layers.ConvRecurrent, no patching, no peepholes) runs over T frames of
size x size pixels. Its arithmetic is the gate convolutions: at every frame, layer l convolves
its input (C_l channels: the frame's, or the layer below's Hc) and its state (Hc) into 4*Hc
gate channels, 2 * size^2 * 4Hc * (C_l + Hc) * k^2 FLOPs (a multiply-add counts 2; biases,
sigmoids, tanhs and the elementwise products are left out, under 1% here). The conv stack is
the same convolutions as plain layers, chained: Conv2d(C + Hc -> 4Hc), then alternately
Conv2d(4Hc -> 2Hc) and Conv2d(2Hc -> 4Hc), each with the multiply-adds of one ConvLSTM
layer's gate convolutions, ReLU between them; being feed-forward, it takes all B*T frames in
one batch, where the ConvLSTM must go frame by frame. Training is forward + backward + an
AdamW step on the mean squared output, counted as 3x the forward FLOPs for both (the stack's
input requires a gradient, as the [x; h] it stands for does in the ConvLSTM, so both really
do ~3x).

Prints JSON: frames/s (a frame = one image of one sequence through every layer), effective
GFLOP/s, the ConvLSTM / conv-stack ratios and the peak RSS, medians of --repeats timed runs
after one warm-up run. The machine is shared: the JSON keeps the load average beside the
numbers, and a busy machine can be several times slower. T defaults to 5, not the paper's 10,
for about half the time and memory: T = 10 took 2.4 minutes and 5.3 GB on 2 cores
(results/convlstm_64x64_t10.json), T = 5 1.1 minutes and 3.1 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

import torch
from report import emit, median_seconds
from torch import nn

from rnnkit.layers.conv_rnn import ConvRecurrent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64, help="frame height and width (pixels)")
    p.add_argument("--channels", type=int, default=1, help="C, channels of an input frame")
    p.add_argument("--hidden", type=int, default=64, help="Hc, ConvLSTM channels per layer")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=5, help="T, frames per sequence")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def convlstm_flops_per_frame(channels: int, hidden: int, layers: int, kernel: int,
                             size: int) -> int:
    """FLOPs of the gate convolutions of one frame (one batch row) through the stack."""
    total = 0
    for layer in range(layers):
        c_in = channels if layer == 0 else hidden
        total += 2 * size * size * 4 * hidden * (c_in + hidden) * kernel * kernel
    return total


def conv_stack(channels: int, hidden: int, layers: int, kernel: int) -> nn.Sequential:
    """Plain convolutions with the multiply-adds of each ConvLSTM layer's gate convolutions."""
    widths = [channels + hidden] + [4 * hidden if k % 2 == 0 else 2 * hidden
                                    for k in range(layers)]
    modules: list[nn.Module] = []
    for c_in, c_out in zip(widths, widths[1:]):
        modules += [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def conv_flops_per_frame(stack: nn.Sequential, size: int) -> int:
    """FLOPs of the stack's convolutions for one size x size image (stride 1, same padding)."""
    return sum(2 * size * size * m.out_channels * m.in_channels // m.groups
               * m.kernel_size[0] * m.kernel_size[1]
               for m in stack if isinstance(m, nn.Conv2d))


def train_fn(model, forward):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = forward().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def measure(name: str, model, forward, frames: int, flops: int, repeats: int) -> dict:
    """frames/s and GFLOP/s for inference and training; ``flops`` per frame, forward."""
    with torch.no_grad():
        infer = median_seconds(forward, repeats)
    train = median_seconds(train_fn(model, forward), repeats)
    return {"model": name, "params": sum(p.numel() for p in model.parameters()),
            "inference_seconds": round(infer, 3), "train_seconds": round(train, 3),
            "inference_frames_per_sec": round(frames / infer, 2),
            "train_frames_per_sec": round(frames / train, 2),
            "inference_gflops_per_sec": round(frames * flops / infer / 1e9, 2),
            "train_gflops_per_sec": round(3 * frames * flops / train / 1e9, 2)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T, S = args.batch, args.frames, args.size
    frames = B * T  # images pushed through the network per run
    convlstm = ConvRecurrent("lstm", args.channels, args.hidden, args.layers, args.kernel)
    x = torch.rand(B, T, args.channels, S, S)
    flops = convlstm_flops_per_frame(args.channels, args.hidden, args.layers, args.kernel, S)
    rec = measure("convlstm", convlstm, lambda: convlstm(x)[0], frames, flops, args.repeats)
    stack = conv_stack(args.channels, args.hidden, args.layers, args.kernel)
    stack_flops = conv_flops_per_frame(stack, S)
    assert stack_flops == flops, (stack_flops, flops)  # equal by construction
    # stands for [x; h]: the ConvLSTM backpropagates into h, so the stack into its input
    z = torch.rand(B * T, args.channels + args.hidden, S, S, requires_grad=True)
    plain = measure("conv_stack", stack, lambda: stack(z), frames, stack_flops, args.repeats)
    result = {"benchmark": "convlstm_vs_conv_stack", "shape": vars(args),
              "gflop_per_frame": round(flops / 1e9, 4), "convlstm": rec, "conv_stack": plain,
              "convlstm_over_conv_stack": {
                  "inference": round(rec["inference_frames_per_sec"]
                                     / plain["inference_frames_per_sec"], 3),
                  "train": round(rec["train_frames_per_sec"]
                                 / plain["train_frames_per_sec"], 3)},
              "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "peak_rss_mb": round(peak_rss_mb()),
              "torch": torch.__version__}
    return emit(result, args.save)


if __name__ == "__main__":
    main()
