"""The playground's views of a given text, as one static HTML file and a PNG.

    acts = collect(model, vocab, text)
    views = unit_views(acts, per_feature=3)
    html = render_html(acts, vocab, views, title="runs/shakespeare on hamlet.txt")
    png = render_png(acts, views)          # bytes; needs matplotlib

The HTML needs no server and no script: each character is a span coloured by the model's
probability for it (alternatives in its tooltip), then by the units that track each feature
best. The colours are the playground's: probability red (0) -> yellow -> green (1);
activation blue (-1) -> white -> red (+1).
"""

from __future__ import annotations

import colorsys
import html
import io
import warnings
from dataclasses import dataclass

import numpy as np

from .units import FEATURES, Activations, rank_units

PNG_COLUMNS = 80


@dataclass
class UnitView:
    feature: str
    layer: int
    state: str
    unit: int
    r: float


def unit_views(acts: Activations, per_feature: int = 3) -> dict[str, list[UnitView]]:
    """The ``per_feature`` best units for each feature; an empty list for a feature that does
    not vary over the text."""
    return {f: [UnitView(f, **u) for u in rank_units(acts, f, per_feature)] for f in FEATURES}


def prob_rgb(p: float) -> tuple[float, float, float]:
    """hsl(120 p, 85%, 78%), the page's probability colour."""
    return colorsys.hls_to_rgb(120 * float(p) / 360, 0.78, 0.85)


def act_rgb(v: float) -> tuple[float, float, float]:
    """Red for +1, blue for -1, white at 0: the page's rgba colour laid over white."""
    a = min(abs(float(v)), 1.0)
    base = (220, 40, 40) if v >= 0 else (40, 90, 220)
    return tuple((1 - a) + a * c / 255 for c in base)


def css(rgb) -> str:
    return "#" + "".join(f"{round(255 * x):02x}" for x in rgb)


def char_span(c: str, rgb, tip: str) -> str:
    cls = ' class="nl"' if c == "\n" else ""
    return (f'<span{cls} style="background:{css(rgb)}" title="{html.escape(tip)}">'
            f"{html.escape(c)}</span>")


def prob_spans(acts: Activations, vocab) -> str:
    spans = []
    for t, c in enumerate(acts.text):
        alts = "\n".join(f"{vocab.itos[i]!r} {p:.3f}"
                         for i, p in zip(acts.top_ids[t], acts.top_probs[t]))
        spans.append(char_span(c, prob_rgb(acts.probs[t]), f"p={acts.probs[t]:.3f}\n{alts}"))
    return "".join(spans)


def unit_spans(acts: Activations, view: UnitView) -> str:
    values = acts.unit(view.layer, view.state, view.unit)
    return "".join(char_span(c, act_rgb(v), f"activation {v:.3f}")
                   for c, v in zip(acts.text, values))


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; margin: 1.5rem; max-width: 70rem; }
h1 { font-size: 1.2rem; } h2 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
h3 { font-size: .9rem; margin: .8rem 0 .3rem; font-weight: normal; color: #3a4252; }
.text { font: 13px/1.6 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap;
        word-break: break-all; border: 1px solid #d9dde5; border-radius: 4px; padding: .4rem;
        max-height: 24rem; overflow: auto; }
.text span { border-radius: 2px; }
.nl::before { content: "\\21B5"; color: #8a93a5; }
.note { color: #5b6475; }
"""


def render_html(acts: Activations, vocab, views: dict[str, list[UnitView]],
                title: str) -> str:
    """A self-contained page: inline style, no script, nothing loaded from anywhere."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{len(acts.text)} characters. Probability: red (0) to green (1); '
             "activations: blue (-1) to red (+1); hover a character for its values.</p>",
             "<h2>Probability of each character</h2>",
             f'<div class="text" id="probability">{prob_spans(acts, vocab)}</div>']
    for feature, units in views.items():
        parts.append(f"<h2>Units tracking {feature.replace('_', ' ')}</h2>")
        if not units:
            parts.append(f'<p class="note">{feature} does not vary over this text, so no '
                         "unit can track it.</p>")
        for v in units:
            parts.append(f"<h3>layer {v.layer}, {v.state}, unit {v.unit}: r = {v.r:+.3f}</h3>"
                         f'<div class="text unit">{unit_spans(acts, v)}</div>')
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def grid(text: str, rows: int, columns: int = PNG_COLUMNS) -> list[tuple[int, int, str]]:
    """(row, column, character) of the text laid out as the page shows it: a newline ends
    its row; long rows wrap; whatever does not fit in ``rows`` is left out."""
    cells, row, col = [], 0, 0
    for c in text:
        if col == columns:
            row, col = row + 1, 0
        if row >= rows:
            break
        cells.append((row, col, c))
        row, col = (row + 1, 0) if c == "\n" else (row, col + 1)
    return cells


def render_png(acts: Activations, views: dict[str, list[UnitView]], rows: int = 6) -> bytes:
    """Coloured text, one panel per view: the probabilities, then the best unit of each
    feature; the first ``rows`` lines of 80 columns of the text in each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("probability of each character", [prob_rgb(p) for p in acts.probs])]
    for feature, units in views.items():
        if units:
            v = units[0]
            panels.append((f"{feature.replace('_', ' ')}: layer {v.layer}, {v.state}, unit "
                           f"{v.unit} (r = {v.r:+.2f})",
                           [act_rgb(a) for a in acts.unit(v.layer, v.state, v.unit)]))
    cells = grid(acts.text, rows)
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(PNG_COLUMNS * 0.11, len(panels) * (rows * 0.2 + 0.45)))
    for ax, (name, colours) in zip(axes[:, 0], panels):
        draw_panel(ax, name, cells, colours, rows)
    fig.tight_layout()
    buf = io.BytesIO()
    with warnings.catch_warnings():  # a character the font lacks is drawn as a box: fine
        warnings.simplefilter("ignore")
        fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def draw_panel(ax, name: str, cells, colours, rows: int) -> None:
    image = np.ones((rows, PNG_COLUMNS, 3))
    for t, (row, col, c) in enumerate(cells):
        image[row, col] = colours[t]
        ax.text(col, row, "\u21b5" if c == "\n" else c, ha="center", va="center",
                fontsize=7, family="DejaVu Sans Mono")
    ax.imshow(image, aspect="auto", interpolation="nearest")
    ax.set_title(name, fontsize=8, loc="left")
    ax.set_axis_off()
