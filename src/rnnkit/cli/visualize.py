"""Show a model's probabilities and hidden units over a text, as HTML and PNG.

A static page (and a picture) with each character of the text coloured by its probability
and by the hidden units that track quotes, the position in the line, brackets and words.

examples:
  rnnkit visualize runs/shakespeare --text hamlet.txt --out hamlet.html   # + hamlet.png
  rnnkit visualize runs/code --text main.c --out main.html --units 5 --max-chars 4000
  rnnkit visualize runs/shakespeare --text a.txt --out a.html --no-png --force

The page needs no server and loads nothing; hover a character for its values. Units are
ranked by |correlation| with each feature over the text (see rnnkit serve for the same views
live). The PNG needs matplotlib (pip install -e ".[plot]").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..api import load, require_lm
from ..data.corpus import code_points
from ..errors import RnnkitError
from ..fileio import atomic_write_all, input_file
from ..serve.units import check_text, collect, require_recurrent_chars
from ..serve.visualize import render_html, render_png, unit_views
from ..training.config import check_encoding
from ..training.precision import DEVICE_HELP, DEVICES


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT",
                   help="a run folder (uses best.pt, else last.pt) or a .pt/.safetensors file")
    p.add_argument("--text", required=True, metavar="FILE", help="the text to read")
    p.add_argument("--encoding", default="utf-8", metavar="CODEC",
                   help="--text's character encoding, such as latin-1 or cp1252 "
                        "(default: utf-8)")
    p.add_argument("--out", required=True, metavar="PAGE.html", help="the page to write")
    p.add_argument("--png", default=None, metavar="FILE.png",
                   help="the picture (default: --out with .png)")
    p.add_argument("--no-png", action="store_true", help="write the page only")
    p.add_argument("--units", type=int, default=3, help="units shown per feature (default 3)")
    p.add_argument("--max-chars", type=int, default=3000,
                   help="read at most this many characters of the text (default 3000)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help=f"{DEVICE_HELP} (default: cpu)")


def run(args) -> int:
    out, png = output_paths(args)
    if args.units < 1 or args.max_chars < 1:
        raise RnnkitError("--units and --max-chars must be >= 1")
    try:
        check_encoding(args.encoding)
    except ValueError as e:
        raise RnnkitError(f"--{e}") from None
    text = read_text(Path(args.text), args.max_chars, args.encoding)
    if png is not None:
        require_matplotlib()
    model, vocab, meta = load(args.checkpoint, args.device)
    require_lm(meta, args.checkpoint)
    require_recurrent_chars(model, vocab, args.checkpoint)
    check_text(vocab, text, f"--text file {args.text!r}")
    acts = collect(model, vocab, text)
    views = unit_views(acts, args.units)
    page = render_html(acts, vocab, views, f"{args.checkpoint} reading {Path(args.text).name}")
    picture = render_png(acts, views) if png is not None else None
    # everything is rendered before the first write; the files appear together or not at all
    files = {out: lambda f: f.write(page.encode("utf-8"))}
    if picture is not None:
        files[png] = lambda f: f.write(picture)
    atomic_write_all(files)
    print(f"wrote {out}" + (f" and {png}" if png is not None else ""))
    return 0


def output_paths(args) -> tuple[Path, Path | None]:
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise RnnkitError(f"--out must end in .html, got {args.out!r}")
    png = None if args.no_png else Path(args.png) if args.png else out.with_suffix(".png")
    # the picture never lands on the page (.html) or on the text it reads
    if png is not None and png.suffix.lower() != ".png":
        raise RnnkitError(f"--png must end in .png, got {str(png)!r}")
    if Path(args.text).resolve() in {out.resolve(), png and png.resolve()}:
        raise RnnkitError(f"--text {args.text!r} is also an output; write the page and the "
                          "picture elsewhere")
    for path in (out, png):
        if path is not None and not path.parent.is_dir():
            raise RnnkitError(f"the folder of {str(path)!r} does not exist; create it first")
    taken = [str(p) for p in (out, png) if p is not None and p.exists()]
    if taken and not args.force:
        raise RnnkitError(f"{' and '.join(taken)} exist(s); pass --force to replace, or choose "
                          "another --out")
    return out, png


def read_text(path: Path, max_chars: int, encoding: str = "utf-8") -> str:
    """The file's text, checked (decodes, not empty) and normalised (no BOM, \\n line ends),
    cut to ``max_chars`` characters."""
    input_file(path, "--text", "--text file")
    chunks, count = [], 0
    for cps in code_points(path, f"--text file {str(path)!r}", "stream", encoding):
        chunks.append(cps)
        count += len(cps)
        if count > max_chars:  # a huge file is not read to its end
            print(f"rnnkit: reading the first {max_chars} characters of {path} (--max-chars)",
                  file=sys.stderr)
            break
    cps = np.concatenate(chunks).astype("<u4")[:max_chars]
    return cps.tobytes().decode("utf-32-le", errors="surrogatepass")


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RnnkitError('the PNG needs matplotlib: pip install -e ".[plot]" (or pass '
                          "--no-png)") from None
