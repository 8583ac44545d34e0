"""ConvLSTM vs FC-LSTM on moving digits (Shi et al. 2015): frames in, frames forecast.

    python examples/frame_prediction.py --out runs/frame_prediction          # ~11 min, 1 thread
    python examples/frame_prediction.py --out runs/frame_prediction --save   # keep the results
    # ten frames in and ten forecast, as in the paper (about twice the time a step)
    python examples/frame_prediction.py --frames 10
    # Moving MNIST's scale, for a GPU: two digits in 64 x 64 frames, 10 in -> 10 out. On the
    # 2-core CPU a ConvLSTM of this size trains about 12 frames/s on 10-frame sequences
    # (benchmarks/results/convlstm_64x64_t10.json): some 26 seconds a step of 16 x 20 frames
    python examples/frame_prediction.py --frame-size 64 --digits 2 --frames 10 --steps 20000 \
        --threads 0

The data is generated (never downloaded): sklearn digits bouncing in a square frame, as in
Moving MNIST, a fresh batch every step; the test sequences use digit images training never
sees. Two encoder-forecasters (2 layers each) are trained with the same seed, batch, learning
rate, number of steps and scheduled sampling on the fed-back frames (teacher-forcing
probability falling linearly from 1 to --ss-min): a ConvLSTM on 4x4 patches (the paper's
setup) and an FC-LSTM on flattened frames, its hidden size chosen so that both have about the
same number of parameters. Both then forecast the held-out test set free-running and are
scored by per-pixel MSE and SSIM at each forecast step, beside three forecasts that need no
recurrent model: the last input frame, an empty frame and the mean training frame.

Defaults: the scale a CPU trains in minutes: one digit in 16 x 16 frames, 5 frames in and 5
forecast, 5000 steps. The ConvLSTM writes its frames with the warp head (--head warp: each
pixel a softmax-weighted mean of the previous frame's 7 x 7 neighbourhood, dynamic neural
advection, Finn et al. 2016), which moves a sharp digit rather than drawing a blur; --head
pixels is the paper's 1 x 1 convolution to pixel logits. One thread: these small convolutions
gain little from a second core that other jobs share.

Writes results.json, frame_prediction.png (input | truth | ConvLSTM | FC-LSTM for one test
sequence), frame_prediction.gif (the input frames, then the truth and each model's forecast
side by side) and, with matplotlib, frame_prediction_mse.png (MSE per forecast step) into
--out; --save copies them to examples/results/frame_prediction*. `rnnkit eval
OUT/convlstm/last.pt --json` gives the same mse and ssim. results.json also has frame_sse, the
squared error summed over a frame's pixels (the unit Moving MNIST papers call MSE), and
convlstm_beats_at_every_frame: whether the ConvLSTM's MSE is lower and its SSIM higher than
each of the FC-LSTM, the last input frame and the mean frame at every forecast step.

The measured numbers are in the README's frame-prediction table (benchmarks/readme_table.py,
from examples/results/frame_prediction.json) and discussed in docs/examples.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import rnnkit
from rnnkit import metrics
from rnnkit.examples_support import provenance, pyplot
from rnnkit.images import save_gif, save_strip
from rnnkit.models.frame_predictor import FramePredictor
from rnnkit.tasks import vision as vision_tasks

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {"convlstm": "ConvLSTM", "fclstm": "FC-LSTM", "copy_last": "copy last input frame",
         "blank": "empty frame", "mean_frame": "mean training frame"}
MEAN_FRAME_SEQUENCES = 500


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/frame_prediction")
    p.add_argument("--frame-size", type=int, default=16, help="pixels; the paper uses 64")
    p.add_argument("--frames", type=int, default=5,
                   help="frames in, and frames forecast (the paper: 10)")
    p.add_argument("--digits", type=int, default=1,
                   help="digits moving in each sequence (Moving MNIST has 2)")
    p.add_argument("--head", choices=("pixels", "warp"), default="warp",
                   help="how the ConvLSTM writes a frame (the FC-LSTM always writes pixels)")
    p.add_argument("--hidden", type=int, default=64,
                   help="ConvLSTM channels per layer (the FC-LSTM's units are matched to it)")
    p.add_argument("--fc-hidden", type=int, default=0,
                   help="FC-LSTM units per layer; 0 = the size closest in parameters")
    p.add_argument("--steps", type=int, default=5000, help="optimizer steps, for each model")
    p.add_argument("--fc-steps", type=int, default=0,
                   help="FC-LSTM steps when not --steps (e.g. to match the ConvLSTM's wall time)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine)")
    p.add_argument("--ss-min", type=float, default=0.0,
                   help="teacher-forcing probability reached at the last step")
    p.add_argument("--teacher-forcing", action="store_true",
                   help="train with teacher forcing instead of scheduled sampling")
    p.add_argument("--test-examples", type=int, default=200, help="val and test set size")
    p.add_argument("--show", type=int, default=0, help="test sequence drawn in the PNG and GIF")
    # on cores shared with other jobs, a second thread mostly waits for a busy core;
    # 0 = torch's default
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", action="store_true", help="also copy the outputs to "
                   "examples/results/frame_prediction*")
    return p.parse_args(argv)


def model_settings(args, arch: str, hidden: int) -> dict:
    return {"arch": arch, "hidden_size": hidden, "num_layers": 2, "frame_size": args.frame_size,
            "patch_size": 4, "kernel_size": 3, "input_frames": args.frames,
            "output_frames": args.frames, "digits": args.digits,
            "head": args.head if arch == "convlstm" else "pixels"}


def param_count(args, arch: str, hidden: int) -> int:
    model_cfg, _ = rnnkit.configs(model=model_settings(args, arch, hidden),
                                  train={"task": "frames"})
    return sum(p.numel() for p in FramePredictor(model_cfg).parameters())


def matched_fc_hidden(args, target: int) -> int:
    """FC-LSTM units whose parameter count is closest to ``target`` (counts grow with H)."""
    lo, hi = 1, 1
    while param_count(args, "fclstm", hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # param_count(lo) < target <= param_count(hi), or lo == hi == 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if param_count(args, "fclstm", mid) < target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(param_count(args, "fclstm", h) - target))


def train_settings(args, steps: int) -> dict:
    ss = {} if args.teacher_forcing else {
        "scheduled_sampling": "linear", "ss_k": 1.0, "ss_min": args.ss_min,
        "ss_c": (1.0 - args.ss_min) / steps}
    # one evaluation, at the end: the budget goes to training steps
    return {"task": "frames", "batch_size": args.batch, "max_steps": steps,
            "eval_every": steps, "learning_rate": args.lr, "seed": args.seed,
            "eval_examples": args.test_examples, "threads": args.threads, **ss}


def train_one(args, arch: str, hidden: int, run: Path) -> dict:
    steps = args.fc_steps if arch == "fclstm" and args.fc_steps else args.steps
    model_cfg, cfg = rnnkit.configs(model=model_settings(args, arch, hidden),
                                    train=train_settings(args, steps))
    t0 = time.perf_counter()
    last = rnnkit.train(model_cfg, cfg, out=run)
    seconds = time.perf_counter() - t0
    return {"hidden_size": hidden, "params": param_count(args, arch, hidden), "steps": steps,
            "train_seconds": round(seconds, 1), "final_train_loss": round(last["train_loss"], 5)}


def scores(test, preds: torch.Tensor) -> dict:
    """mse, ssim and their values per forecast step of forecasts (N, T, C, H, W)."""
    truth = test.tensors["targets"]
    mse = ((preds - truth) ** 2).mean(dim=(0, 2, 3, 4))
    ssim = [metrics.ssim(preds[:, t], truth[:, t]) for t in range(truth.shape[1])]
    # the literature's "MSE" on Moving MNIST sums the squared error over a frame's pixels
    pixels = truth.shape[-1] * truth.shape[-2]
    return {"mse": round(float(mse.mean()), 6), "ssim": round(sum(ssim) / len(ssim), 4),
            "frame_sse": round(float(mse.mean()) * pixels, 2),
            "mse_per_frame": [round(float(v), 6) for v in mse],
            "ssim_per_frame": [round(v, 4) for v in ssim]}


def baselines(args, test) -> dict:
    """Forecasts that need no recurrent model: the last input frame, an empty frame, and
    the mean training frame (the best constant forecast by MSE: where digits tend to be)."""
    inputs, targets = test.tensors["inputs"], test.tensors["targets"]
    model_cfg, _ = rnnkit.configs(model=model_settings(args, "convlstm", args.hidden),
                                  train={"task": "frames"})
    train = vision_tasks.generate("frames", model_cfg, MEAN_FRAME_SEQUENCES, args.seed, "train")
    mean = torch.cat(list(train.tensors.values()), dim=1).mean(dim=(0, 1))  # (C, H, W)
    return {"copy_last": scores(test, inputs[:, -1:].expand_as(targets)),
            "blank": scores(test, torch.zeros_like(targets)),
            "mean_frame": scores(test, mean.expand_as(targets))}


def beats_at_every_frame(summary: dict, name: str) -> dict:
    """Whether model ``name`` scores a lower MSE and a higher SSIM than the FC-LSTM, than
    copying the last input frame and than the mean training frame at every forecast step."""
    m = summary[name]
    out = {}
    for base in ("fclstm", "copy_last", "mean_frame"):
        b = summary[base]
        out[base] = {
            "mse": all(x < y for x, y in zip(m["mse_per_frame"], b["mse_per_frame"])),
            "ssim": all(x > y for x, y in zip(m["ssim_per_frame"], b["ssim_per_frame"]))}
    return out


def test_set(args):
    """The generated test set ``rnnkit.evaluate`` scores these runs on (seed and sizes)."""
    model_cfg, _ = rnnkit.configs(model=model_settings(args, "convlstm", args.hidden),
                                  train={"task": "frames"})
    return vision_tasks.VisionData("frames", model_cfg, None, args.batch, args.seed,
                                   args.test_examples, 0.05, 0.05).test


def save_pictures(args, test, preds: dict, out: Path) -> dict:
    x, y = test.tensors["inputs"][args.show], test.tensors["targets"][args.show]
    conv, fc = preds["convlstm"][args.show], preds["fclstm"][args.show]
    png = save_strip([("input", x), ("truth", y), ("ConvLSTM", conv), ("FC-LSTM", fc)],
                     out / "frame_prediction.png")
    # every panel starts with the same input frames, then shows its own forecast
    gif = save_gif([torch.cat([x, p]) for p in (y, conv, fc)], out / "frame_prediction.gif")
    return {"png": str(png), "gif": str(gif)}


def plot(summary: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("convlstm", "o-"), ("fclstm", "s-"), ("copy_last", ":"),
                        ("blank", "--"), ("mean_frame", "-.")):
        mse = summary[name]["mse_per_frame"]
        ax.plot(range(1, len(mse) + 1), mse, style, label=NAMES[name])
    ax.set_xlabel("forecast step")
    ax.set_ylabel("per-pixel MSE (test set)")
    ax.set_title("Moving digits, free-running forecasts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def copy_to_results(out: Path) -> None:
    RESULTS.mkdir(exist_ok=True)
    shutil.copy(out / "results.json", RESULTS / "frame_prediction.json")
    for name in ("frame_prediction.png", "frame_prediction.gif", "frame_prediction_mse.png"):
        if (out / name).is_file():
            shutil.copy(out / name, RESULTS / name)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    conv_params = param_count(args, "convlstm", args.hidden)
    sizes = {"convlstm": args.hidden,
             "fclstm": args.fc_hidden or matched_fc_hidden(args, conv_params)}
    summary = {arch: train_one(args, arch, hidden, out / arch) for arch, hidden in sizes.items()}
    test, preds = test_set(args), {}
    for arch in sizes:
        model, _, _ = rnnkit.load(out / arch / "last.pt")
        # free-running (no targets given): the numbers `rnnkit eval RUN` prints
        preds[arch] = vision_tasks.predict(model, "frames", test)
        summary[arch].update(scores(test, preds[arch]))
    summary.update(baselines(args, test))
    summary["pictures"] = save_pictures(args, test, preds, out)
    if plot(summary, out / "frame_prediction_mse.png"):
        summary["pictures"]["mse_plot"] = str(out / "frame_prediction_mse.png")
    result = {"args": vars(args), "test_examples": len(test), "summary": summary,
              "convlstm_beats_at_every_frame": beats_at_every_frame(summary, "convlstm"),
              "provenance": provenance("examples/frame_prediction.py")}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.save:
        copy_to_results(out)
    print(json.dumps({name: {k: v for k, v in s.items() if not k.endswith("_per_frame")}
                      for name, s in summary.items()}, indent=2))
    return result


if __name__ == "__main__":
    main()
