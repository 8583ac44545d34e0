"""A run folder's loss curve and its samples over training: loss.png, samples.html, samples.md.

    paths = plot_run("runs/shakespeare")       # [.../loss.png, .../samples.html, .../samples.md]
    metrics = read_metrics(Path("runs/shakespeare/metrics.jsonl"))
    metrics.train, metrics.val                 # [(step, loss), ...] in nats per token
    samples = read_samples(Path("runs/shakespeare"))   # [Sample(step, text, image)], by step

The page shows the sample taken at each evaluation with the val loss at that step, oldest
first, so the reader sees the text improve (Karpathy's "iteration 100 ... 2000" figure). It
works while training runs: a partly written last line of metrics.jsonl is ignored, and a
sample whose metrics are not logged yet is shown without a loss. The PNG needs matplotlib.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RnnkitError
from .fileio import atomic_write_all

LOSS_PNG = "loss.png"
SAMPLES_HTML = "samples.html"
SAMPLES_MD = "samples.md"
SAMPLE_NAME = re.compile(r"step_(\d+)\.(txt|png)")
INSTALL_HINT = "pip install 'rnnkit[plot]'"


@dataclass
class Metrics:
    """What metrics.jsonl holds, as series by step.

    train: (step, train_loss) of every logged step. val: (step, val_loss) of every evaluation.
    evals: step -> that evaluation's val_* numbers (val_loss, val_bpc, val_accuracy, ...).
    """

    train: list[tuple[int, float]] = field(default_factory=list)
    val: list[tuple[int, float]] = field(default_factory=list)
    evals: dict[int, dict[str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.train) + len(self.evals)


@dataclass
class Sample:
    """The sample taken at an evaluation: text (LM, pair and caption tasks) or a PNG (frames)."""

    step: int
    text: str | None = None
    image: Path | None = None


def read_metrics(path: Path) -> Metrics:
    """The train and val series of a metrics.jsonl.

    A last line that does not parse is skipped: training appends to the file and may be half
    way through a record. Any other bad line is an error, since that file is damaged.
    """
    lines = [(number, line) for number, line in enumerate(
        path.read_text(encoding="utf-8", errors="replace").splitlines(), 1) if line.strip()]
    metrics = Metrics()
    for i, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise RnnkitError(f"{str(path)!r} line {number} is not a JSON record; the file is "
                              "damaged (remove that line to plot the rest)") from None
        add_record(metrics, record)
    return metrics


def add_record(metrics: Metrics, record) -> None:
    if not isinstance(record, dict) or not is_number(record.get("step")):
        return  # not a metrics record: nothing to plot from it
    step = int(record["step"])
    if is_number(record.get("train_loss")):
        metrics.train.append((step, float(record["train_loss"])))
    evals = {k: float(v) for k, v in record.items() if k.startswith("val_") and is_number(v)}
    if evals:
        metrics.evals[step] = evals
        if "val_loss" in evals:
            metrics.val.append((step, evals["val_loss"]))


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_samples(run_dir: Path) -> list[Sample]:
    """The samples in ``run_dir/samples``, oldest first; none if there is no such folder."""
    folder = run_dir / "samples"
    found = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = SAMPLE_NAME.fullmatch(path.name)
        if match is None:
            continue  # temp files of a write in progress, notes, ...
        step = int(match[1])
        sample = found.setdefault(step, Sample(step))
        if match[2] == "txt":
            sample.text = path.read_text(encoding="utf-8", errors="replace")
        else:
            sample.image = path
    return [found[step] for step in sorted(found)]


def read_model_summary(run_dir: Path) -> str:
    """``task=lm cell=lstm hidden_size=64 ...`` from config.json; empty if it is unreadable."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(config, dict):
        return ""
    train, model = config.get("train"), config.get("model")
    task = train.get("task") if isinstance(train, dict) else None
    model = model if isinstance(model, dict) else {}
    pairs = ([("task", task)] if task else []) + list(model.items())
    return " ".join(f"{k}={v if isinstance(v, (str, int, float)) or v is None else json.dumps(v)}"
                    for k, v in pairs)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, max_chars: int = 600,
             log_y: bool = False) -> list[Path]:
    """Write loss.png, samples.html and samples.md for a run folder; return their paths.

    Args:
        run_dir: a folder made by ``rnnkit train`` (it has metrics.jsonl), finished or not.
        out_dir: where to write (default ``run_dir``); made if missing.
        max_chars: each sample is cut to this many characters on the page.
        log_y: a log-scale loss axis.

    Everything is checked and rendered before the first write, and the files are replaced
    together (fileio.atomic_write_all), so re-running during training never leaves a half
    file for a reader, and a failed write leaves the folder as it was.
    """
    run_dir = Path(run_dir)
    out_dir = run_dir if out_dir is None else Path(out_dir)
    metrics = check_inputs(run_dir, out_dir, max_chars)
    samples = read_samples(run_dir)
    png = render_loss_png(metrics, run_dir.resolve().name, log_y)
    summary = read_model_summary(run_dir)
    page = render_html(run_dir.resolve().name, summary, metrics, samples, max_chars, png)
    markdown = render_markdown(run_dir.resolve().name, summary, metrics, samples, max_chars,
                               out_dir)
    # the outermost folder this call makes: removed again if the writes fail
    made = next((p for p in reversed([out_dir, *out_dir.parents]) if not p.exists()), None)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {out_dir / LOSS_PNG: png, out_dir / SAMPLES_HTML: page.encode("utf-8"),
               out_dir / SAMPLES_MD: markdown.encode("utf-8")}
    try:
        atomic_write_all({path: lambda f, data=data: f.write(data)
                          for path, data in outputs.items()})
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    return list(outputs)


def check_inputs(run_dir: Path, out_dir: Path, max_chars: int) -> Metrics:
    """The run's metrics, once every problem the user can fix has been ruled out."""
    if max_chars < 1:
        raise RnnkitError(f"--max-chars must be >= 1, got {max_chars}")
    if not (run_dir / "metrics.jsonl").is_file():
        what = ("is not a run folder (no metrics.jsonl)" if run_dir.exists()
                else "does not exist")
        raise RnnkitError(f"{str(run_dir)!r} {what}; give a folder made by rnnkit train")
    if out_dir.exists() and not out_dir.is_dir():
        raise RnnkitError(f"--out {str(out_dir)!r} is a file; give a folder (made if missing)")
    metrics = read_metrics(run_dir / "metrics.jsonl")
    if not metrics.train and not metrics.val:
        raise RnnkitError(f"{str(run_dir / 'metrics.jsonl')!r} has no metric records yet; "
                          "plot again once training has logged a step")
    require_matplotlib()
    return metrics


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RnnkitError(f"the loss plot needs matplotlib: {INSTALL_HINT}") from None


def render_loss_png(metrics: Metrics, title: str, log_y: bool = False) -> bytes:
    """Train loss per logged step (thin line) and val loss at evaluations (markers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if metrics.train:
        ax.plot(*zip(*metrics.train), linewidth=0.8, color="#4c72b0", label="train")
    if metrics.val:
        ax.plot(*zip(*metrics.val), marker="o", markersize=4, color="#dd8452", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(plot_title(metrics, title), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def plot_title(metrics: Metrics, name: str) -> str:
    """The run's name and its best val loss (with bits per character where logged)."""
    if not metrics.val:
        return name
    step, loss = min(metrics.val, key=lambda sl: sl[1])
    bpc = metrics.evals[step].get("val_bpc")
    bits = f" ({bpc:.3f} bpc)" if bpc is not None else ""
    return f"{name}: best val loss {loss:.4f}{bits} at step {step}"


def eval_note(metrics: Metrics, step: int) -> str:
    """``val loss 3.0504, bpc 4.401, ppl 21.12`` for the evaluation at ``step``."""
    evals = metrics.evals.get(step)
    if evals is None:
        return "val loss not logged yet"
    parts = [f"val loss {evals['val_loss']:.4f}"] if "val_loss" in evals else []
    parts += [f"{k[4:].replace('_', ' ')} {v:.4g}" for k, v in sorted(evals.items())
              if k != "val_loss"]
    return ", ".join(parts)


def cut(text: str, max_chars: int) -> tuple[str, str]:
    """The first ``max_chars`` characters, and a note saying how much was left out."""
    if len(text) <= max_chars:
        return text, ""
    return text[:max_chars], f"first {max_chars} of {len(text)} characters"


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; margin: 1.5rem; max-width: 60rem; }
h1 { font-size: 1.2rem; } h2 { font-size: 1rem; margin: 1.4rem 0 .3rem; }
pre { font: 13px/1.5 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap;
      word-break: break-all; border: 1px solid #d9dde5; border-radius: 4px; padding: .5rem;
      background: #f7f8fa; margin: 0; }
.note { color: #5b6475; } img { max-width: 100%; }
"""


def render_html(name: str, summary: str, metrics: Metrics, samples: list[Sample],
                max_chars: int, png: bytes) -> str:
    """A self-contained page: inline style and images, no script, nothing loaded."""
    parts = [f"<h1>{html.escape(name)}: samples over training</h1>"]
    if summary:
        parts.append(f'<p class="note"><code>{html.escape(summary)}</code></p>')
    parts.append(f'<img alt="loss curve" src="{data_uri(png)}">')
    if not samples:
        parts.append('<p class="note">No samples yet: one is taken at every evaluation.</p>')
    for s in samples:
        parts.append(f'<h2 id="step-{s.step}">step {s.step}: '
                     f"{html.escape(eval_note(metrics, s.step))}</h2>")
        parts.extend(html_sample(s, max_chars))
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(name)} samples</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def html_sample(sample: Sample, max_chars: int) -> list[str]:
    parts = []
    if sample.image is not None:
        parts.append(f'<img alt="sample at step {sample.step}" '
                     f'src="{data_uri(sample.image.read_bytes())}">')
    if sample.text is not None:
        text, note = cut(sample.text, max_chars)
        parts.append(f"<pre>{html.escape(text)}</pre>")
        if note:
            parts.append(f'<p class="note">({note})</p>')
    return parts


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_markdown(name: str, summary: str, metrics: Metrics, samples: list[Sample],
                    max_chars: int, out_dir: Path) -> str:
    """The page as Markdown: a fenced block per sample; images linked relative to ``out_dir``."""
    lines = [f"# {name}: samples over training", ""]
    if summary:
        lines += [f"`{summary}`", ""]
    lines += [f"![loss curve]({LOSS_PNG})", ""]
    if not samples:
        lines += ["No samples yet: one is taken at every evaluation.", ""]
    for s in samples:
        lines += [f"## step {s.step}: {eval_note(metrics, s.step)}", ""]
        if s.image is not None:
            link = Path(os.path.relpath(s.image.resolve(), out_dir.resolve())).as_posix()
            lines += [f"![sample at step {s.step}]({link})", ""]
        if s.text is not None:
            lines += markdown_block(*cut(s.text, max_chars))
    return "\n".join(lines)


def markdown_block(text: str, note: str) -> list[str]:
    # a fence longer than any backtick run in the text, so the text cannot close it
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    body = text if text.endswith("\n") else text + "\n"
    return [fence + "text", body + fence, *([f"({note})"] if note else []), ""]
