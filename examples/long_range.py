"""Gated cells carry information over long gaps, a vanilla RNN does not: the adding and copy tasks.

    # the adding problem at T = 50, 100, 200 and the gradient plot (the saved run also had
    # the copy task at the same recipe: 19 minutes on 1 thread, 8.5 of them adding)
    python examples/long_range.py --out runs/long_range --tasks adding --save
    # the copy task at lags 50, 100 and 200: rnn, gru and lstm (104 minutes on 1 thread,
    # beside other jobs)
    python examples/long_range.py --out runs/long_range_copy --tasks copy --lags 50 100 200 \
        --cells rnn gru lstm --hidden 128 --batch-size 64 --learning-rate 3e-3 \
        --schedule cosine --curriculum 0.25 --chrono --steps 6000 --name long_range_copy \
        --save --threads 1
    # the same recipe for the scan cells at lag 100 (no --chrono: it is the LSTM's)
    python examples/long_range.py --out runs/long_range_copy_scan --tasks copy --lags 100 \
        --cells mingru minlstm lru --hidden 128 --batch-size 64 --learning-rate 3e-3 \
        --schedule cosine --curriculum 0.25 --steps 6000 --scan-steps 0 \
        --name long_range_copy_scan --save --threads 1

The lecture's claim: a gated cell (LSTM, GRU) can keep a number or a symbol for hundreds of
steps, a vanilla tanh RNN cannot, because the gradient that reaches step t from the loss at the
end shrinks exponentially with the distance through a tanh RNN. Two standard synthetic tasks,
generated (nothing is downloaded), a fresh seeded batch every step, scored on a held-out set of
--test sequences drawn with another seed:

    adding  (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015) T steps of two
            features, a uniform [0, 1] value and a marker; exactly two markers, one in each
            half; the target is the sum of the two marked values, read from the last step
            (MSE). No memory: predicting 1 always gives MSE 1/6 = 0.167.
    copy    (Arjovsky et al. 2016) 10 symbols from an alphabet of 8, lag - 1 blanks, a
            delimiter, 10 blanks: T = lag + 20 steps; the model must output blanks until the
            delimiter and then the 10 symbols in order (cross-entropy at every step, scored as
            per-symbol accuracy over the 10 outputs). No memory: accuracy 1/8, loss
            10 ln 8 / (lag + 20).

Six cells, each one layer of H units (``rnnkit.layers.Recurrent``), between an input layer
(adding: none, the 2 features go in as they are; copy: an Embedding(10, H)) and a Linear head
(adding: from the last step; copy: at every step): rnn (tanh), gru, lstm (forget-gate bias 1 at
initialisation, Jozefowicz et al. 2015, or with --chrono the chrono initialisation of Tallec &
Ollivier 2018), and the parallel-scan cells mingru, minlstm (Feng et al. 2024) and lru
(Orvieto et al. 2023). The scan cells are residual blocks with a LayerNorm and an MLP of 4H
(parallel_cells.py), hence 2.4 to 11 times the parameters of the classic cells at the same H.
Adam, gradient norm clipped at 1, seed 0, 1 thread. The defaults (H = 64, batches of 32, Adam
at 5e-3, 1500 steps for rnn, gru and lstm, 300 for the scan cells, whose larger blocks make
each step dearer) are the adding problem's recipe. The copy task needs more: the command
above trains 6000 steps of batches of 64 with H = 128, Adam at 3e-3 decayed by a cosine, the
LSTM with chrono initialisation, and a curriculum (Zaremba & Sutskever 2014): the training lag
grows from 10 to 100 over the first quarter of the steps, the same for every cell; the test is
always at the full lag.

The measured numbers are in the README's long-gaps table, written by
benchmarks/readme_table.py from examples/results/long_range.json (adding) and
long_range_copy.json (copy), and discussed in docs/examples.md.

Gradients (examples/results/long_range_gradients.png, from the adding run): ||d loss / d h_t||
on 100 adding test sequences at the longest T, h_t the state carried from step t to step t + 1,
at initialisation and after training.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnkit.examples_support import provenance, pyplot
from rnnkit.fileio import save_results
from rnnkit.layers import Recurrent
from rnnkit.layers.cells import init_forget_bias

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("adding", "copy")
CELLS = ("rnn", "gru", "lstm", "mingru", "minlstm", "lru")
SCAN_CELLS = ("mingru", "minlstm", "lru")  # parallel_cells.py: residual blocks with an MLP
BLANK = 0  # copy task tokens: 0 blank, 1..alphabet the symbols, alphabet + 1 the delimiter


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/long_range")
    p.add_argument("--save", action="store_true",
                   help="also write NAME.json and the plots to examples/results/")
    p.add_argument("--name", default="long_range",
                   help="stem of the saved results and plots (NAME.json, NAME.png, "
                   "NAME_gradients.png)")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--lags", nargs="+", type=int, default=[50, 100, 200],
                   help="adding: sequence length T; copy: blanks between symbols and outputs")
    p.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    # copy task
    p.add_argument("--symbols", type=int, default=10, help="copy: symbols to remember")
    p.add_argument("--alphabet", type=int, default=8, help="copy: distinct symbols")
    # model and training: the same for every cell, but the scan cells' step count
    p.add_argument("--hidden", type=int, default=64, help="H, units of the one layer")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps per (task, lag, cell)")
    p.add_argument("--scan-steps", type=int, default=300,
                   help="steps for mingru, minlstm and lru instead (0: --steps); their blocks hold "
                   "2.4 to 11 times the parameters of the classic cells at the same H")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=5e-3)
    p.add_argument("--curriculum", type=float, default=0.0,
                   help="copy: the lag of the training batches grows linearly from 10 to the "
                   "tested lag over this fraction of the steps (0: always the tested lag)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate: constant, or cosine decay to 0 over the steps")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--forget-bias", type=float, default=1.0,
                   help="LSTM initial forget-gate bias (Jozefowicz et al. 2015)")
    p.add_argument("--chrono", action="store_true",
                   help="LSTM: chrono initialisation (Tallec & Ollivier 2018) instead of "
                   "--forget-bias: forget biases log U(1, T - 1), input biases their negative")
    p.add_argument("--test", type=int, default=1000, help="held-out generated sequences")
    p.add_argument("--log-every", type=int, default=25, help="steps per learning-curve point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no training log")
    return p.parse_args(argv)


# -- data ------------------------------------------------------------------------------------

def adding_data(n: int, length: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015).

    Returns x (n, length, 2): a uniform [0, 1] value and a 0/1 marker per step, with exactly
    two markers, one in each half; and y (n,): the sum of the two marked values.
    """
    values = torch.rand(n, length, generator=gen)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, length, (n,), generator=gen)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), y


def copy_data(n: int, lag: int, gen: torch.Generator, symbols: int = 10,
              alphabet: int = 8) -> tuple[Tensor, Tensor]:
    """The copy-memory task (Arjovsky et al. 2016): x, y are (n, lag + 2 * symbols) tokens.

    x: ``symbols`` random symbols in 1..alphabet, lag - 1 blanks, the delimiter
    (alphabet + 1), ``symbols`` blanks. y: blanks for the first lag + symbols steps, then the
    symbols, in order: the model must output them once it has read the delimiter.
    """
    seq = torch.randint(1, alphabet + 1, (n, symbols), generator=gen)
    x = torch.full((n, lag + 2 * symbols), BLANK)
    y = torch.full_like(x, BLANK)
    x[:, :symbols] = seq
    x[:, symbols + lag - 1] = alphabet + 1
    y[:, -symbols:] = seq
    return x, y


# -- models ----------------------------------------------------------------------------------

class LongRangeNet(nn.Module):
    """An Embedding for copy's tokens (adding's 2 features go in as they are), one
    ``Recurrent`` layer of ``cell``, a Linear head.

    adding: x (B, T, 2) floats -> (B,) predictions from the last step's output.
    copy: x (B, T) tokens, embedded -> (B, T, V) logits, V = alphabet + 2, at every step.
    """

    def __init__(self, task: str, cell: str, hidden: int, alphabet: int = 8):
        super().__init__()
        self.task = task
        vocab = alphabet + 2
        self.embed = nn.Embedding(vocab, hidden) if task == "copy" else None
        self.rnn = Recurrent(cell, hidden if task == "copy" else 2, hidden, num_layers=1)
        self.head = nn.Linear(hidden, vocab if task == "copy" else 1)

    def inputs(self, x: Tensor) -> Tensor:
        return self.embed(x) if self.embed is not None else x

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.inputs(x))  # (B, T, H)
        return self.readout(out)

    def readout(self, out: Tensor) -> Tensor:
        return self.head(out[:, -1]).squeeze(-1) if self.task == "adding" else self.head(out)


def build_model(task: str, cell: str, args) -> LongRangeNet:
    torch.manual_seed(args.seed)  # a cell starts from the same weights at every lag
    model = LongRangeNet(task, cell, args.hidden, args.alphabet)
    if cell == "lstm" and args.chrono:
        init_chrono(model.rnn.cells[0], max(args.lags) + 2 * args.symbols)
    elif cell == "lstm":
        init_forget_bias(model, args.forget_bias)
    return model


def init_chrono(cell: nn.Module, longest: int) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) of an LSTM cell: forget-gate biases
    log(u), u uniform in [1, longest - 1], so that the units start with memories of 1 to
    ``longest`` steps (a forget gate f keeps memories about 1 / (1 - f) steps), and
    input-gate biases their negatives, so that a unit that keeps long also writes little."""
    h = cell.hidden_size
    with torch.no_grad():
        forget = torch.empty(h).uniform_(1, max(longest - 1, 1)).log_()
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
        cell.bias_ih[cell.forget_gate * h:(cell.forget_gate + 1) * h] = forget
        cell.bias_ih[:h] = -forget  # gate order i, f, g, o


def task_data(task: str, n: int, lag: int, gen: torch.Generator, args) -> tuple[Tensor, Tensor]:
    if task == "adding":
        return adding_data(n, lag, gen)
    return copy_data(n, lag, gen, args.symbols, args.alphabet)


def loss_of(task: str, pred: Tensor, y: Tensor) -> Tensor:
    if task == "adding":
        return F.mse_loss(pred, y)
    return F.cross_entropy(pred.flatten(0, 1), y.flatten())  # over every step, as Arjovsky


def baseline(task: str, lag: int, args) -> dict:
    """What a model with no memory scores."""
    if task == "adding":  # predict 1, the mean: the variance of a sum of two uniforms, 1/6
        return {"mse": round(1 / 6, 4)}
    # blanks where the answer is blank, a uniform guess over the symbols at the outputs
    return {"loss": round(args.symbols * math.log(args.alphabet) / (lag + 2 * args.symbols), 4),
            "accuracy": round(1 / args.alphabet, 4)}


@torch.no_grad()
def evaluate(model: LongRangeNet, task: str, x: Tensor, y: Tensor, symbols: int) -> dict:
    model.eval()
    pred = torch.cat([model(xb) for xb in x.split(250)])
    model.train()
    if task == "adding":
        return {"mse": round(F.mse_loss(pred, y).item(), 5)}
    hits = pred[:, -symbols:].argmax(-1) == y[:, -symbols:]
    return {"loss": round(loss_of(task, pred, y).item(), 5),
            "accuracy": round(hits.float().mean().item(), 4)}


# -- training --------------------------------------------------------------------------------

def steps_for(cell: str, args) -> int:
    return args.scan_steps if cell in SCAN_CELLS and args.scan_steps > 0 else args.steps


def lag_at(task: str, step: int, lag: int, steps: int, args) -> int:
    """The lag of training batch ``step``: the tested lag, or with --curriculum on the copy
    task a lag that grows from 10 to it (Zaremba & Sutskever 2014): a cell first learns to
    store and recall over a short gap, where the gradient still reaches the symbols, then
    stretches the gap. Testing stays at the full lag."""
    if task != "copy" or args.curriculum <= 0:
        return lag
    start = min(10, lag)
    return min(lag, start + int((lag - start) * step / (args.curriculum * steps)))


def train(model: LongRangeNet, task: str, lag: int, steps: int, args) -> tuple[list, float]:
    """``steps`` Adam steps on fresh batches (seeded); returns the learning curve
    [[step, mean train loss over the last log_every steps]] and the wall seconds."""
    gen = torch.Generator().manual_seed(args.seed + 1)  # training batches; the test set: seed
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    # cosine: the late small steps settle a copy that is almost right into an exact one
    decay = (lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))) \
        if args.schedule == "cosine" else (lambda s: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    curve, window, t0 = [], [], time.perf_counter()
    for step in range(1, steps + 1):
        x, y = task_data(task, args.batch_size, lag_at(task, step, lag, steps, args), gen, args)
        loss = loss_of(task, model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # clipping: a vanilla RNN's gradient can also explode
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        window.append(loss.item())
        if step % args.log_every == 0 or step == steps:
            curve.append([step, round(sum(window) / len(window), 5)])
            window = []
            if not args.quiet and step % (8 * args.log_every) == 0:
                print(f"  step {step}: train loss {curve[-1][1]:.4f}", flush=True)
    return curve, time.perf_counter() - t0


# -- gradients through time --------------------------------------------------------------------

def state_gradients(model: LongRangeNet, x: Tensor, y: Tensor) -> list[float]:
    """||d loss / d h_t|| for t = 0 .. T-1 (mean over the batch), h_t the recurrent state the
    cell carries into step t+1 (h_0 the zero start; h for LSTM, not c; the scan cells' h, not
    the block's output). The layer is run step by step through its cell, each h_t plus a
    zero tensor whose gradient is the total derivative: the loss reads h_t only through later
    steps, so the gradient of ``Recurrent``'s output tensor is zero before the last step."""
    cell = model.rnn.cells[0]
    inputs = model.inputs(x)
    state, probes, out = cell.init_state(x.shape[0], inputs), [], None
    for t in range(inputs.shape[1]):
        probe = torch.zeros_like(state[0], requires_grad=True)
        probes.append(probe)
        out, state = cell(inputs[:, t], (state[0] + probe, *state[1:]))
    pred = model.readout(out[:, None])
    grads = torch.autograd.grad(loss_of(model.task, pred, y), probes)
    return [g.norm(dim=-1).mean().item() for g in grads]


# -- report ----------------------------------------------------------------------------------

def plot_curves(results: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    tasks = list(results)
    lags = sorted({int(lag) for task in tasks for lag in results[task]})
    fig, axes = plt.subplots(len(tasks), len(lags), figsize=(4 * len(lags), 3.2 * len(tasks)),
                             squeeze=False)
    for i, task in enumerate(tasks):
        for j, lag in enumerate(lags):
            ax = axes[i][j]
            runs = results[task].get(str(lag), {})
            for cell, r in runs.items():
                steps, losses = zip(*r["curve"])
                ax.plot(steps, losses, label=cell)
            if runs:
                base = next(iter(runs.values()))["baseline"]
                ax.axhline(base["mse" if task == "adding" else "loss"], color="k", ls="--",
                           lw=1, label="no memory")
            ax.set_yscale("log")
            ax.set_title(f"{task}, lag {lag}")
            ax.set_xlabel("step")
            ax.set_ylabel("train MSE" if task == "adding" else "train cross-entropy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gradients(gradients: dict, lag: int, path: Path) -> None:
    plt = pyplot()
    if plt is None or not gradients:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for cell, g in gradients.items():
            ax.plot(range(len(g[when])), [max(v, 1e-30) for v in g[when]], label=cell)
        ax.set_yscale("log")
        ax.set_title(f"adding, T = {lag}: {'at initialisation' if when == 'init' else 'trained'}")
        ax.set_xlabel("step t")
    axes[0].set_ylabel("||d loss / d h_t||")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_one(task: str, lag: int, cell: str, args, test: tuple[Tensor, Tensor],
            grads_at: tuple[Tensor, Tensor] | None) -> tuple[dict, dict | None]:
    """Train one cell on one (task, lag); its result, and its gradient profiles if asked."""
    model = build_model(task, cell, args)
    init_grads = state_gradients(model, *grads_at) if grads_at is not None else None
    curve, seconds = train(model, task, lag, steps_for(cell, args), args)
    result = {**evaluate(model, task, *test, args.symbols), "baseline": baseline(task, lag, args),
              "parameters": sum(p.numel() for p in model.parameters()),
              "steps": steps_for(cell, args), "train_seconds": round(seconds, 1), "curve": curve}
    if grads_at is None:
        return result, None
    return result, {"init": init_grads, "trained": state_gradients(model, *grads_at)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results, gradients, grad_lag = {}, {}, max(args.lags)
    for task in args.tasks:
        results[task] = {}
        for lag in args.lags:
            gen = torch.Generator().manual_seed(args.seed)  # the held-out set, per (task, lag)
            test = task_data(task, args.test, lag, gen, args)
            grads_at = (test[0][:100], test[1][:100]) if (task, lag) == ("adding", grad_lag) \
                else None
            results[task][str(lag)] = {}
            for cell in args.cells:
                if not args.quiet:
                    print(f"{task}, lag {lag}, {cell}", flush=True)
                r, g = run_one(task, lag, cell, args, test, grads_at)
                results[task][str(lag)][cell] = r
                if g is not None:
                    gradients[cell] = g
                if not args.quiet:
                    print({k: v for k, v in r.items() if k != "curve"}, flush=True)
            # what is done so far, in case a long run is stopped
            save_results({"args": vars(args), "results": results}, out / "partial.json",
                         echo=False)
    summary = {"args": vars(args), "results": results,
               "gradients": {"task": "adding", "lag": grad_lag, "norms": gradients},
               "wall_seconds": round(time.perf_counter() - t0, 1),
               "provenance": provenance("examples/long_range.py")}
    plot_curves(results, out / f"{args.name}.png")
    plot_gradients(gradients, grad_lag, out / f"{args.name}_gradients.png")
    if args.save:
        for name in (f"{args.name}.png", f"{args.name}_gradients.png"):
            if (out / name).exists():
                (RESULTS / name).write_bytes((out / name).read_bytes())
    return save_results(summary, out / "results.json",
                        RESULTS / f"{args.name}.json" if args.save else None, echo=False)


if __name__ == "__main__":
    main()
