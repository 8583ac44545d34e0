"""Tagging Python source per character, one- vs two-way LSTM: where the future informs the present.

    python examples/python_tagging.py --out runs/python_tagging         # 3 to 5 minutes, 2 cores
    python examples/python_tagging.py --out runs/python_tagging --save  # also keep the JSON

The corpus is real code with no download: a seeded sample of the .py files of this Python's own
standard library (test folders and site-packages left out), split into train and test by FILE,
so no file gives lines to both. Every character of a source line is tagged with the type of the
token it belongs to, as the standard library's ``tokenize`` sees the whole file: NAME, KEYWORD
(a NAME for which ``keyword.iskeyword`` holds; soft keywords such as ``match`` stay NAME), OP,
NUMBER, STRING, COMMENT, and O for whitespace. Tags are BIO ("B-NAME I-NAME I-NAME"), so two
adjacent tokens of one type (``))``) stay two spans and span F1 is token-level F1.

Multi-line strings: each file is tokenized whole and the tags are cut per line, so a line inside
a docstring is all STRING even though it holds no quote. One line is one example; lines longer
than --max-len, holding a tab or another unprintable character, or only whitespace are skipped.

Two taggers with the same size (hidden units per direction), data, seed and steps are trained:
unidirectional (step t sees steps <= t) and bidirectional (step t sees the whole line), and a
third, unidirectional with as many parameters as the bidirectional one (--no-wide skips it).
Each is scored on every kept line of the held-out files: per-character accuracy on the BIO tags,
span (token) F1, and per-character accuracy of the token type alone, overall, per gold type, by
position in the token and by kind of line. The lecture's claim: reading the future helps where
the right context decides, e.g. "i" opens the KEYWORD "if" or "in", or the NAME "items"; "f" is
a NAME, or the prefix of the STRING f"...".

Measured with the defaults (Python 3.11's stdlib: 200 train files, 26,395 lines; 50 test files,
6,902 lines, 282,282 characters; one-layer LSTM, embedding 32, 1000 steps of 64 lines, seed 0;
one thread, 276 s wall in all on 2 shared CPU cores; examples/results/python_tagging.json, with
its date, commit, CPU and command), on the held-out files:

    tagger          H   params  BIO acc  span F1  type acc  in-string  code   KEYWORD  STRING
    unidirectional  64  32,845  0.952    0.874    0.954     0.752      0.982  0.911    0.870
    bidirectional   64  58,765  0.986    0.951    0.987     0.940      0.994  0.980    0.967
    unidirectional  97  59,014  0.956    0.885    0.957     0.758      0.985  0.931    0.873

(type acc: token type right, B-/I- aside; in-string and code: type accuracy on lines wholly
inside a multi-line string, 12% of the test characters, and on the other lines; KEYWORD and
STRING: the share of those characters typed right.) Reading the future cuts the character
error 3.4x (4.8% to 1.4%) and lifts span F1 from 0.874 to 0.951. A unidirectional tagger with
as many parameters gains little (0.956, 0.885): the right context, not capacity, makes the gap.
Most of it is on lines inside multi-line strings: read left to right, a line of docstring prose
looks like code until enough of it has gone by. On code lines the error still falls from 1.8% to
0.6%, KEYWORD most. Not as the simple story goes, a token's first character is not where the
left-to-right tagger errs most (type accuracy 0.955 there, 0.941 inside tokens).
"""

from __future__ import annotations

import argparse
import io
import keyword
import random
import time
import tokenize
from collections import Counter
from pathlib import Path

import rnnkit
from rnnkit.api import predict
from rnnkit.data.stdlib import stdlib_dir, stdlib_files
from rnnkit.examples_support import provenance, train_timed
from rnnkit.fileio import save_results

TYPES = ("NAME", "KEYWORD", "OP", "NUMBER", "STRING", "COMMENT")
RESULTS = Path(__file__).resolve().parent / "results" / "python_tagging.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/python_tagging")
    p.add_argument("--save", action="store_true", help=f"also write {RESULTS}")
    p.add_argument("--train-files", type=int, default=200)
    p.add_argument("--test-files", type=int, default=50)
    p.add_argument("--lines-per-file", type=int, default=200,
                   help="at most this many lines (a seeded sample) from each file")
    p.add_argument("--max-len", type=int, default=80, help="longer lines are skipped")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=64, help="units per direction")
    p.add_argument("--no-wide", action="store_true",
                   help="skip the third tagger: unidirectional, as many parameters as the "
                        "bidirectional one")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no training log")
    return p.parse_args(argv)


# -- the corpus -------------------------------------------------------------------------------

def split_files(files: list[Path], n_train: int, n_test: int,
                seed: int) -> tuple[list[Path], list[Path]]:
    """Disjoint seeded samples: a file gives lines to train or to test, never to both."""
    order = list(files)
    random.Random(seed).shuffle(order)
    if n_train + n_test > len(order):
        raise ValueError(f"asked for {n_train} + {n_test} files, only {len(order)} exist")
    return order[:n_train], order[n_train:n_train + n_test]


def token_spans(source: str):
    """(type, (row, col) start, (row, col) end) of every tagged token of a whole file.

    Python 3.12+ splits an f-string into FSTRING_START/MIDDLE/END around the tokens of its
    fields; they are folded back into one STRING, as 3.11 and earlier report it, so the tags do
    not depend on the Python version.
    """
    depth, start = 0, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tokenize.tok_name[tok.type]
        if name.endswith("STRING_START"):  # FSTRING_START (3.12), TSTRING_START (3.14)
            depth, start = depth + 1, start if depth else tok.start
        elif name.endswith("STRING_END"):
            depth -= 1
            if depth == 0:
                yield "STRING", start, tok.end
        elif depth:
            continue  # inside an f-string: part of its STRING
        elif name == "ERRORTOKEN":
            raise SyntaxError(f"tokenize cannot read {tok.string!r} at {tok.start}")
        elif name == "NAME":
            yield ("KEYWORD" if keyword.iskeyword(tok.string) else "NAME"), tok.start, tok.end
        elif name in TYPES:
            yield name, tok.start, tok.end
        # NEWLINE, NL, INDENT, DEDENT, ENCODING, ENDMARKER: whitespace or nothing, so O


def tag_source(source: str) -> list[tuple[str, list[str]]]:
    """(line, BIO tags, one per character) for every line of a file; raises SyntaxError or
    tokenize.TokenError when tokenize rejects the file."""
    # tokenize counts rows by readline on "\n" only; str.splitlines would also cut at \x0c
    lines = source.split("\n")
    tags = [["O"] * len(line) for line in lines]
    for kind, (r0, c0), (r1, c1) in token_spans(source):
        for row in range(r0, r1 + 1):
            first = c0 if row == r0 else 0
            last = c1 if row == r1 else len(lines[row - 1])
            for col in range(first, last):
                tags[row - 1][col] = f"I-{kind}"
        tags[r0 - 1][c0] = f"B-{kind}"
    return list(zip(lines, tags))


def keep_line(text: str, max_len: int) -> bool:
    """A line the TSV and the model can take: printable (no tab, form feed, BOM), not blank."""
    return 0 < len(text) <= max_len and text.isprintable() and not text.isspace()


def file_examples(path: Path, max_len: int, per_file: int, seed: int) -> list:
    """A seeded sample of at most ``per_file`` kept (line, tags) of one file, in file order;
    [] when tokenize rejects the file (Python 2 leftovers, deliberately broken files)."""
    try:
        with tokenize.open(path) as f:  # honours the file's coding cookie
            source = f.read()
        rows = tag_source(source)
    except (SyntaxError, tokenize.TokenError, UnicodeDecodeError):
        return []
    kept = [r for r in rows if keep_line(r[0], max_len)]
    if len(kept) > per_file:
        picked = sorted(random.Random(f"{seed}:{path.name}").sample(range(len(kept)), per_file))
        kept = [kept[i] for i in picked]
    return kept


def write_tsv(rows, path: Path) -> int:
    path.write_text("".join(f"{text}\t{' '.join(tags)}\n" for text, tags in rows),
                    encoding="utf-8")
    return len(rows)


def build_corpus(args, out: Path) -> dict:
    """train.tsv and test.tsv in ``out`` from disjoint file samples; returns their sizes."""
    train_files, test_files = split_files(stdlib_files(), args.train_files, args.test_files,
                                          args.seed)
    sizes = {"stdlib": str(stdlib_dir())}
    for name, files in (("train", train_files), ("test", test_files)):
        rows = [r for p in files for r in file_examples(p, args.max_len, args.lines_per_file,
                                                        args.seed)]
        sizes[f"{name}_files"] = len(files)
        sizes[f"{name}_lines"] = write_tsv(rows, out / f"{name}.tsv")
        sizes[f"{name}_chars"] = sum(len(text) for text, _ in rows)
    return sizes


# -- training and scoring ----------------------------------------------------------------------

EMBED = 32
TAGS = 2 * len(TYPES) + 1  # B- and I- of each type, and O


def wide_hidden(hidden: int, embed: int = EMBED, tags: int = TAGS) -> int:
    """Units of a one-layer unidirectional LSTM tagger with at least the parameters of the
    bidirectional one with ``hidden`` units per direction (embeddings aside, which are equal):
    4h(E + h + 2) weights and biases plus h*K + K in the head."""
    def params(h, directions):
        return directions * (4 * h * (embed + h + 2) + h * tags) + tags

    h = hidden
    while params(h, 1) < params(hidden, 2):
        h += 1
    return h


def taggers(args) -> dict[str, tuple[bool, int]]:
    """name -> (bidirectional, hidden units per direction)."""
    runs = {"unidirectional": (False, args.hidden), "bidirectional": (True, args.hidden)}
    if not args.no_wide:  # is it the future, or just the extra parameters?
        runs["unidirectional_wide"] = (False, wide_hidden(args.hidden))
    return runs


def train_tagger(args, data: Path, run: Path, bidirectional: bool, hidden: int) -> float:
    """Train one tagger into ``run``; returns the wall seconds it took."""
    model_cfg, cfg = rnnkit.configs(
        model={"cell": "lstm", "embed_size": EMBED, "hidden_size": hidden, "num_layers": 1,
               "bidirectional": bidirectional},
        train={"task": "tag", "data": str(data), "tag_format": "chars",
               "batch_size": args.batch_size, "learning_rate": args.learning_rate,
               "max_steps": args.steps, "eval_every": args.steps,
               "warmup_steps": min(50, args.steps),
               "val_frac": 0.05, "test_frac": 0.0, "seed": args.seed, "threads": 1})
    return train_timed(model_cfg, cfg, run, args.quiet)[1]


def read_tsv(path: Path) -> list[tuple[str, list[str]]]:
    rows = path.read_text(encoding="utf-8").split("\n")
    return [(text, tags.split()) for text, tags in (r.split("\t") for r in rows if r)]


def kind(tag: str) -> str:
    """The token type of a BIO tag: "B-NAME" -> "NAME", "O" -> "O"."""
    return tag[2:] if tag[:2] in ("B-", "I-") else tag


POSITION = {"B-": "token_start", "I-": "token_rest"}  # anything else is O (whitespace)


def type_scores(preds: list[list[str]], golds: list[list[str]]) -> dict:
    """Per-character accuracy of the token type alone (B-/I- dropped): overall, per gold type
    (that type's recall), by where the character sits in its gold token (a token's first
    character is where a left-to-right reader has seen least of it: "i" of "if" or "items"),
    and by line: lines wholly inside a multi-line string (docstring prose, no quote in sight)
    or lines of code."""
    hits, totals = Counter(), Counter()
    for pred, gold in zip(preds, golds):
        line = "inside_string" if all(g == "I-STRING" for g in gold) else "code"
        for p, g in zip(pred, gold):
            for key in (("type", kind(g)), ("position", POSITION.get(g[:2], "O")),
                        ("line", line)):
                totals[key] += 1
                hits[key] += kind(p) == kind(g)

    def rates(group):
        return {k: round(hits[g, k] / totals[g, k], 4) for g, k in sorted(totals) if g == group}

    chars = sum(n for (g, _), n in totals.items() if g == "type")
    correct = sum(n for (g, _), n in hits.items() if g == "type")
    return {"type_accuracy": round(correct / max(chars, 1), 4), "type_recall": rates("type"),
            "type_accuracy_by_position": rates("position"),
            "type_accuracy_by_line": rates("line")}


def score(run: Path, test: Path) -> dict:
    report = rnnkit.evaluate(run, data=str(test))
    rows = read_tsv(test)
    preds = predict(run, [text for text, _ in rows])
    model = rnnkit.load(run)[0]
    return {"accuracy": round(report["accuracy"], 4), "span_f1": round(report["span_f1"], 4),
            "span_precision": round(report["span_precision"], 4),
            "span_recall": round(report["span_recall"], 4), "loss": round(report["loss"], 4),
            **type_scores(preds, [tags for _, tags in rows]),
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = build_corpus(args, out)
    results = {}
    for name, (bidirectional, hidden) in taggers(args).items():
        seconds = train_tagger(args, out / "train.tsv", out / name, bidirectional, hidden)
        results[name] = {"bidirectional": bidirectional, "hidden": hidden,
                         **score(out / name, out / "test.tsv"),
                         "train_seconds": round(seconds, 1)}
    summary = {"args": vars(args), "data": data, "results": results,
               "wall_seconds": round(time.perf_counter() - t0, 1),
               "provenance": provenance("examples/python_tagging.py")}
    return save_results(summary, out / "results.json", RESULTS if args.save else None)


if __name__ == "__main__":
    main()
