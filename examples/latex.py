"""A char-LSTM writes LaTeX documents; how many of them compile with pdflatex?

    apt-get install texlive-latex-base poppler-utils texlive-publishers-doc
    python examples/latex.py --out runs/latex          # about 30 minutes on 2 CPU cores
    python examples/latex.py --out runs/latex --save   # also results/latex.json + latex_sample.png
    python examples/latex.py --fetch-r-vignettes ~/r-vignettes --out runs/latex-r  # R papers
    python examples/latex.py --tex-dir ~/papers        # your own .tex files instead

The corpus comes from a package registry: by default the .tex and .tex.gz files that the
Debian package texlive-publishers-doc installs (``dpkg -L``: journal and thesis templates,
sample articles with theorems and displayed math). --fetch-r-vignettes DIR downloads instead,
once, the Debian packages of R whose vignettes are whole papers in a standard class
(R_PACKAGES: ``apt-get download``, 176 MB, nothing installed, no R needed) and unpacks them
into DIR: papers on statistics written in Sweave (.Rnw), read as LaTeX by ``sweave_to_latex``
(R code chunks and \\Sexpr out, \\code, \\pkg, \\proglang, ... as \\texttt, \\textbf,
\\textsf). --tex-dir reads every .tex/.tex.gz/.Rnw file under the given folders. A file is
kept when it is a whole English LaTeX document: it has \\documentclass and \\begin{document};
under 1% of its characters are non-ASCII; "the" is at least 2% of its words (English prose,
not a table of macros); under 5% of its lines contain "@" (macro code). Only the body is kept
(from \\begin{document} to \\end{document}), with comments stripped and runs of blank lines
squeezed; bodies are deduplicated, cut to --max-file-bytes at a paragraph break, taken in
sorted path order up to --max-bytes and written to OUT/corpus.txt, each as
"\\begin{document} ... \\end{document}".

A 2-layer LSTM learns the corpus with the main job's recipe (preset shakespeare-5min), once
for each of --seeds (three by default, so that the fractions are not one model's luck);
--samples documents are then sampled per temperature from each model, from the prime
"\\begin{document}", and cut at the first \\end{document}. The fractions pool every seed's
samples and carry a 95% Wilson interval; each seed's own count is kept beside them.
``repair`` makes a body structurally balanced and nothing more (exact rules in its
docstring): it closes unclosed braces, environments and math in reverse order, drops a closer
that matches nothing open, ends open math and open command arguments at a paragraph break
(TeX forbids both across one), closes an open environment or math before a closer that
matches something further out, drops an \\item outside any list, ends math left open when
the next \\item comes, closes an item's [label] at a paragraph break and writes a stray &
outside any alignment as \\&. Each repaired body goes into the fixed PREAMBLE (article,
amsmath, amssymb, amsthm, graphicx in draft mode, url; theorem environments; an empty title
for a body that says \\maketitle; all in texlive-latex-base) and counts as compiling when
``pdflatex -interaction=nonstopmode -halt-on-error`` exits 0 with a PDF within --timeout
seconds. Undefined commands and environments are errors, as in pdflatex itself. Each body is
also compiled cut at its last paragraph break before each of --cuts characters (a shorter
document has fewer chances to go wrong). A second fraction, "with corpus stubs", adds to the
preamble an empty definition of every command and environment that the corpus uses at least 3
times and the preamble lacks (the papers defined them in the preambles that the corpus
drops): how much of the failure is vocabulary rather than structure. Verbatim text compiles
whatever it holds, so compiled samples holding some are counted, as are those with a theorem,
lemma, proposition, corollary or proof.

Measured with the defaults (three seeds, 70 samples per seed and temperature, so 210 per
temperature; a 2 x 384 LSTM, 1,360 steps of 32 x 128 characters each, fp32, one thread each
beside the other corpus's run on a 2-core machine), the share of samples that compile, with
its 95% interval and the count for each seed:

    --fetch-r-vignettes, Debian 12 (examples/results/latex_r_vignettes.json): 168 documents
    (3.0 MB, the --max-bytes cap) of 276 files, val loss 1.565-1.572, about 1,000 s of
    training per seed
    temperature   whole (about 2,000 chars)              cut before 1,000   cut before 500
    0.3           112 of 210: 0.533 (0.466-0.600), 45/34/33   0.571           0.581
    0.5           76: 0.362 (0.300-0.429)                0.533              0.552
    with the 221 corpus stubs, whole at 0.3: 121 of 210, 0.576 (0.509-0.641)

    texlive-publishers-doc 2022.20230122-4 (examples/results/latex.json): 197 documents
    (2.65 MB) of 1,243 files, val loss 1.443-1.473, about 1,030 s of training per seed
    0.3           53 of 210: 0.252 (0.198-0.315), 11/37/5    0.433           0.548
    0.5           16: 0.076 (0.047-0.120)                0.195              0.305
    with the 903 corpus stubs, whole at 0.3: 61 of 210, 0.290 (0.233-0.355)

At temperature 0.3 more than half of the R model's whole documents compile, though the
interval's low end is below one half; with the corpus stubs all of it is above. They are
statistics prose with \\texttt names, lists, sections and displayed equations; 2 of the 112
hold verbatim text. The commonest failures left are a float inside a paragraph box ("Not in
outer par mode", 29 of the 98), undefined commands (21) and a list with text before its first
\\item (11). Class documentation fails on math and vocabulary ("Missing $ inserted", 37 of
157; undefined commands, 21) and compiles mostly where it is verbatim text (51 of 53), and its
seeds disagree (11, 37 and 5 of 70). Neither corpus is about theorems: no compiled whole
sample holds a theorem, lemma or proof (the lecture's were from an algebraic-geometry book;
the R vignettes hold not one such environment). For theorems, give a mathematics book's or
papers' sources with --tex-dir.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import rnnkit
from rnnkit.examples_support import provenance, train_timed
from rnnkit.fileio import save_results

RESULTS = Path(__file__).resolve().parent / "results" / "latex.json"
PICTURE = RESULTS.with_name("latex_sample.png")
R_RESULTS = RESULTS.with_name("latex_r_vignettes.json")  # with --fetch-r-vignettes
PACKAGE = "texlive-publishers-doc"
PRIME = "\\begin{document}\n"
# verbatim text compiles whatever it holds: compiled samples that contain some are counted
VERBATIM = re.compile(r"\\begin\{verbatim\*?\}|\\verb")
# the lecture's samples invent theorems and their proofs: compiled samples with some are counted
THEOREM = re.compile(r"\\begin\{(?:theorem|lemma|proposition|corollary|proof)\}")
END = "\\end{document}"

THEOREMS = ("theorem", "lemma", "proposition", "corollary", "conjecture", "claim",
            "definition", "example", "remark", "note", "exercise", "problem", "assumption")
PREAMBLE = "\n".join([
    r"\documentclass{article}",
    r"\usepackage{amsmath,amssymb,amsthm}",
    r"\usepackage[draft]{graphicx}",  # draft: a box instead of a figure file that is not there
    r"\usepackage{url}",
    # a body may \maketitle: its title was set in the preamble that the corpus drops
    r"\title{}\author{}\date{}",
    *(rf"\newtheorem{{{name}}}{{{name.capitalize()}}}" for name in THEOREMS),
    "",
])
# environments whose body is typeset in math mode: no paragraph break allowed inside
MATH_ENVS = frozenset(f"{name}{star}" for star in ("", "*") for name in (
    "equation", "align", "alignat", "gather", "multline", "flalign", "eqnarray",
    "displaymath", "math"))
VERBATIM_ENVS = frozenset({"verbatim", "verbatim*", "comment"})
# environments where \\item starts an entry, and where & separates columns
LIST_ENVS = frozenset({"itemize", "enumerate", "description", "thebibliography", "list",
                       "trivlist"})
ALIGN_ENVS = frozenset(f"{name}{star}" for star in ("", "*") for name in (
    "tabular", "tabularx", "longtable", "array", "align", "alignat", "flalign", "eqnarray",
    "split", "aligned", "alignedat", "cases", "matrix", "pmatrix", "bmatrix", "Bmatrix",
    "vmatrix", "Vmatrix", "smallmatrix", "subarray", "xalignat", "xxalignat", "halign"))
MATH_CLOSER = {"$": "$", "$$": "$$", "\\[": "\\]", "\\(": "\\)"}

# one token of the repair scanner; order matters: the longest alternatives first
TOKEN = re.compile(r"""
    (?P<begin>\\begin[ \t]*\{(?P<bname>[\w@*:. -]*)\})
  | (?P<end>\\end[ \t]*\{(?P<ename>[\w@*:. -]*)\})
  | (?P<badenv>\\(?:begin|end)(?![a-zA-Z]))
  | (?P<verb>\\verb\*?(?P<vdelim>[^a-zA-Z\s*])[^\n]*?(?P=vdelim))
  | (?P<badverb>\\verb(?![a-zA-Z])\*?[^a-zA-Z\s]?)
  | (?P<item>\\(?:bib)?item(?![a-zA-Z]))
  | (?P<open_math>\\\[|\\\()
  | (?P<close_math>\\\]|\\\))
  | (?P<escape>\\.)
  | (?P<dollar>\$\$?)
  | (?P<brace>[{}])
  | (?P<amp>&)
  | (?P<bracket>\])
  | (?P<comment>%[^\n]*)
  | (?P<par>\n[ \t]*\n)
""", re.VERBOSE | re.DOTALL)
PARAGRAPH_NEXT = re.compile(r"[ \t]*(?:\n[ \t]*\n|\Z)")
UNFINISHED = re.compile(r"\\(?:begin|end)[ \t]*\{[^{}\n]*\Z")


# the Debian R packages whose vignettes hold a whole English document in a standard class
# (176 MB of .deb files, from Debian 12; --fetch-r-vignettes)
R_PACKAGES = tuple(f"r-cran-{name}" for name in (
    "adephylo", "aer", "amap", "animation", "ape", "bbmle", "bms", "boolnet", "brew", "calibrate",
    "car", "cgdsr", "clue", "coin", "dimred", "distr", "docopt", "domc", "doparallel", "dorng",
    "e1071", "effects", "ei", "etm", "evd", "expint", "expm", "filehash", "fitdistrplus",
    "g.data", "gbm", "gbutils", "gdata", "genoplotr", "geometry", "geosphere", "glmmtmb", "gnm",
    "gower", "gplots", "gridbase", "gridsvg", "gstat", "gwidgets", "hexbin", "hmisc", "hwriter",
    "ipred", "irace", "irlba", "iso", "iterators", "kedd", "knitr", "ks", "kutils", "laeken",
    "learnbayes", "lme4", "lmtest", "maldiquant", "maldiquantforeign", "maptools", "matrix",
    "maxlik", "maxstat", "mcmc", "metamix", "metap", "mitools", "mlmrev", "mnp", "multcomp",
    "mutoss", "mvtnorm", "nmf", "ordinal", "packrat", "pan", "phylobase", "pls", "powerlaw",
    "qtl", "r.rsp", "rcmdr", "registry", "rgdal", "rjson", "rmpfr", "robustbase", "rockchalk",
    "rodbc", "rpart", "runit", "semtools", "sp", "spacetime", "sparsem", "spatstat", "squarem",
    "stringdist", "strucchange", "surveillance", "survey", "survival", "survmisc", "susier",
    "tgp", "th.data", "timeseries", "tinytest", "tm", "tmvtnorm", "tsp", "uroot", "vegan",
    "xtable", "xts",
))
STANDARD_CLASSES = ("article", "amsart", "report", "scrartcl")
SWEAVE_CHUNK = re.compile(r"^<<[^\n]*>>=[ \t]*\n.*?^@[ \t]*$", re.M | re.S)
SWEAVE_INLINE = re.compile(r"\\Sexpr\{[^{}]*\}")
SWEAVE_COMMANDS = re.compile(r"\\(?:SweaveOpts|SweaveInput|setkeys\{Gin\})\{[^{}]*\}")
SWEAVE_ENVS = re.compile(r"\\begin\{(Schunk|Sinput|Soutput|Scode)\}.*?\\end\{\1\}", re.S)
R_MACROS = {"texttt": ("code", "Rfunction", "Robject", "Rclass", "Rcode", "file", "command",
                       "function", "samp", "kbd", "option", "Rcmd", "var", "env"),
            "textbf": ("pkg", "Rpackage", "CRANpkg", "software"),
            "textsf": ("proglang", "R")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/latex")
    p.add_argument("--save", action="store_true", help=f"also write {RESULTS} and {PICTURE}")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--tex-dir", nargs="+", help=f"folders of .tex files (default: the "
                        f"files of the installed Debian package {PACKAGE})")
    p.add_argument("--package", default=PACKAGE, help="Debian package whose .tex files to read")
    source.add_argument("--fetch-r-vignettes", metavar="DIR",
                   help="download the R packages' vignettes (papers on statistics, in Sweave) "
                   "from the Debian archive into DIR, once, and read them instead")
    p.add_argument("--max-bytes", type=int, default=3_000_000, help="corpus size cap")
    p.add_argument("--max-file-bytes", type=int, default=60_000, help="cap per document")
    p.add_argument("--steps", type=int, default=1360,
                   help="training steps (1360 of 32 x 128 characters: about 5 minutes here)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="also stop training after this (0: never; a clock-limited run does "
                   "not repeat exactly)")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    p.add_argument("--samples", type=int, default=70,
                   help="documents sampled per temperature from each seed's model")
    p.add_argument("--length", type=int, default=2000, help="characters sampled per document")
    p.add_argument("--temperatures", nargs="+", type=float, default=[0.3, 0.5],
                   help="the first is the headline")
    p.add_argument("--cuts", nargs="+", type=int, default=[500, 1000],
                   help="also compile each body cut at its last paragraph break before N "
                   "characters (shorter documents have fewer chances to go wrong)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per pdflatex run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="one model trained per seed (which also seeds its samples); the "
                   "fractions pool every seed's samples")
    p.add_argument("--quiet", action="store_true", help="no training log")
    return p.parse_args(argv)


# ---------------------------------------------------------------- corpus


def tex_files(args) -> list[Path]:
    """The .tex/.tex.gz/.Rnw files under --tex-dir or of the R vignettes, or those of the
    Debian package; sorted."""
    if args.fetch_r_vignettes:
        folder = fetch_r_vignettes(Path(args.fetch_r_vignettes).expanduser())
        paths = list(folder.rglob("*"))
    elif args.tex_dir:
        paths = [p for d in args.tex_dir for p in Path(d).expanduser().rglob("*")]
    else:
        if shutil.which("dpkg") is None:
            raise SystemExit(f"no dpkg here: give --tex-dir, or on Debian/Ubuntu "
                             f"apt-get install {args.package}")
        listing = subprocess.run(["dpkg", "-L", args.package], capture_output=True, text=True)
        if listing.returncode != 0:
            raise SystemExit(f"{args.package} is not installed: apt-get install "
                             f"{args.package}, or give --tex-dir")
        paths = [Path(line) for line in listing.stdout.splitlines()]
    return sorted(p for p in paths if p.name.endswith((".tex", ".tex.gz", ".Rnw"))
                  and p.is_file())


def read_tex(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    return sweave_to_latex(text) if path.suffix == ".Rnw" else text


def sweave_to_latex(text: str) -> str:
    """The LaTeX of a Sweave file (an R vignette): comments, R code chunks, inline \\Sexpr
    and Sweave's own commands and environments out, the R documentation macros (\\code,
    \\pkg, \\proglang, ...) as their standard look. "" unless its class is a standard
    one: the journal and book classes of R papers define many macros of their own."""
    text = strip_comments(text)
    match = re.search(r"\\documentclass(?:\[[^\]]*\])?\{(\w+)\}", text)
    if not match or match[1] not in STANDARD_CLASSES:
        return ""
    text = SWEAVE_INLINE.sub("1", SWEAVE_CHUNK.sub("", text))
    text = SWEAVE_ENVS.sub("", SWEAVE_COMMANDS.sub("", text))
    text = re.sub(r"\\R(?:\{\}|(?![A-Za-z{]))", r"\\textsf{R}", text)  # the R logo: \R{}, \R
    for look, names in R_MACROS.items():
        text = re.sub(rf"\\(?:{'|'.join(names)})\{{", rf"\\{look}{{", text)
    return text


def fetch_r_vignettes(folder: Path) -> Path:
    """Downloads R_PACKAGES from the Debian archive (apt-get download: no installing, no R)
    and unpacks them into ``folder``, once."""
    done = folder / ".unpacked"
    if done.exists():
        return folder
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit("--fetch-r-vignettes needs apt-get and dpkg-deb (Debian/Ubuntu)")
    folder.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["apt-get", "download", *R_PACKAGES], cwd=folder,
                         capture_output=True, text=True)
    if got.returncode != 0:
        why = (got.stderr.strip().splitlines() or [f"exit status {got.returncode}"])[-1]
        raise SystemExit(f"apt-get download failed ({why}); run apt-get update, or give "
                         "--tex-dir")
    for deb in sorted(folder.glob("*.deb")):
        if subprocess.run(["dpkg-deb", "-x", deb.name, "."], cwd=folder,
                          capture_output=True).returncode != 0:
            raise SystemExit(f"dpkg-deb could not unpack {folder / deb.name}; delete {folder} "
                             "and run again")
        deb.unlink()
    done.touch()
    return folder


def strip_comments(text: str) -> str:
    """Drops every unescaped % to the end of its line, and lines that held only a comment
    (an emptied line would otherwise read as a paragraph break)."""
    kept = []
    for line in text.splitlines():
        # a % preceded by an even number of backslashes starts a comment (\\% does, \% not)
        code = re.sub(r"(?<!\\)((?:\\\\)*)%.*", r"\1", line)
        if code.strip() or not line.strip():
            kept.append(code.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept))


def document_body(text: str) -> str | None:
    """The body of a whole LaTeX document, or None for anything else (a package, a fragment,
    a file in another language or mostly macro code): the rule in the module docstring."""
    if "\\documentclass" not in text or "\\begin{document}" not in text:
        return None
    if sum(ord(c) > 127 for c in text) > 0.01 * len(text):
        return None
    lines = text.splitlines()
    if sum("@" in line for line in lines) >= 0.05 * len(lines):
        return None
    body = strip_comments(text.split("\\begin{document}", 1)[1].split(END, 1)[0]).strip()
    words = re.findall(r"[A-Za-z]+", body)
    if not words or sum(w.lower() == "the" for w in words) < 0.02 * len(words):
        return None
    return body


def cut_at_paragraph(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    cut = body.rfind("\n\n", 0, limit)
    return body[:cut if cut > 0 else limit]


def build_corpus(paths: list[Path], out: Path, max_bytes: int, max_file_bytes: int) -> dict:
    """Writes OUT/corpus.txt; returns counts of what was read, kept and written."""
    seen, docs, size, skipped = set(), [], 0, collections.Counter()
    for path in paths:
        body = document_body(read_tex(path))
        if body is None:
            skipped["not an English LaTeX document"] += 1
            continue
        digest = hashlib.sha256(body.encode()).hexdigest()
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(digest)
        doc = f"{PRIME}{cut_at_paragraph(body, max_file_bytes)}\n{END}\n\n"
        if size + len(doc) > max_bytes:
            skipped["over --max-bytes"] += 1
            continue
        docs.append(doc)
        size += len(doc)
    if not docs:
        raise SystemExit(f"no LaTeX document found among {len(paths)} .tex files")
    (out / "corpus.txt").write_text("".join(docs), encoding="utf-8")
    return {"tex_files": len(paths), "documents": len(docs), "bytes": size,
            "skipped": dict(skipped)}


# ---------------------------------------------------------------- repair


def repair(body: str, max_passes: int = 5) -> str:
    """A structurally balanced copy of a LaTeX body: ``repair_once`` until nothing changes
    (dropping a closer can make a new paragraph break, which then ends open math)."""
    for _ in range(max_passes):
        fixed = repair_once(body)
        if fixed == body:
            break
        body = fixed
    return body


def repair_once(body: str) -> str:
    """One pass of the repair.

    Scans braces, \\begin/\\end, and math delimiters $, $$, \\[ \\], \\( \\) (escaped characters,
    comments and \\verb are skipped; a verbatim environment is opaque up to its \\end) and
    keeps a stack of what is open:
      * a closer (}, \\end{x}, $, \\], \\)) that matches something open first closes whatever
        was opened after it, innermost first; a closer that matches nothing is dropped, with
        its line when it stood alone there (so no new paragraph break appears);
      * a \\begin or \\end not followed by {name} on its line is dropped (the { stays);
      * a $ that closes a $ right after it gets a space before it ("$ $", not "$$");
      * $ closes an open $ and otherwise opens one; \\[, \\( or $$ inside math are dropped, as
        is \\begin of a math environment (equation, align, ...) inside math;
      * a paragraph break (blank line) closes every open math and every open command
        argument (a { right after a command name or an optional argument's ]), and what was
        opened inside them: TeX stops there with an error ("Paragraph ended before ...")
        unless the command is \\long;
      * \\item or \\bibitem outside every list environment is dropped, and inside one
        first closes any math still open since the list began; the [label] after it is
        closed by a paragraph break like an argument, and a \\bibitem whose {key} would be
        a paragraph break (or the end) gets an empty one; & outside every alignment environment
        (tabular, align, matrix, ...) is written \\&;
      * at the end everything still open is closed, innermost first.
    """
    return Repair(body).run()


class Repair:
    """The state of one pass: the text written so far (``out``), the stack of what is open
    (("{", "{") | ("{", "arg") | ("env", name) | ("math", opener) | ("opt", "[")) and where
    the scan stands (``pos``)."""

    def __init__(self, body: str):
        body = UNFINISHED.sub("", body)
        if (len(body) - len(body.rstrip("\\"))) % 2:  # an odd run of backslashes at the end
            body = body[:-1]
        self.body, self.out, self.stack, self.pos = body, [], [], 0
        self.arg_end = -1  # len(out) right after the } of the last argument closed

    def run(self) -> str:
        while (m := TOKEN.search(self.body, self.pos)) is not None:
            self.out.append(self.body[self.pos:m.start()])
            self.pos = m.end()
            self.token(m, m.group())
        self.out.append(self.body[self.pos:])
        if self.stack and re.search(r"(?<!\\)(?:\\\\)*%[^\n]*$", "".join(self.out)):
            self.out.append("\n")  # the text ends in a comment: closers on a line of their own
        self.close_to(0)
        return "".join(self.out)

    def token(self, m, text: str) -> None:
        if m["begin"]:
            self.begin(m, text)
        elif m["end"]:
            self.close_or_drop(m, text, "env", m["ename"].strip())
        elif m["open_math"]:
            self.open_outside_math(m, text)
        elif m["close_math"]:
            self.close_or_drop(m, text, "math", "\\[" if text == "\\]" else "\\(")
        elif m["dollar"]:
            if self.find("math", text) is not None:
                self.close_or_drop(m, text, "math", text)
            else:
                self.open_outside_math(m, text)
        elif m["brace"] == "{":
            self.open(text, ("{", "arg" if self.argument_follows() else "{"))
        elif m["brace"] == "}":
            self.close_or_drop(m, text, "{")
        elif m["par"]:
            self.paragraph(text)
        elif m["item"]:
            self.item(m, text)
        elif m["bracket"]:
            if (i := self.find("opt")) is None:
                self.out.append(text)
                return
            bib = self.stack[i][1] == "bib"
            self.close_or_drop(m, text, "opt")
            if bib and PARAGRAPH_NEXT.match(self.body, self.pos):
                self.out.append("{}")  # \\bibitem's {key}: it may not be a paragraph break
        elif m["amp"]:
            self.out.append(text if self.find_any(ALIGN_ENVS) is not None else "\\&")
        elif not (m["badverb"] or m["badenv"]):  # escape, \verb, comment: copied untouched
            self.out.append(text)

    def begin(self, m, text: str) -> None:
        name = m["bname"].strip()
        if name in VERBATIM_ENVS:  # opaque up to its \end (added when missing)
            stop = self.body.find(f"\\end{{{name}}}", self.pos)
            end = len(self.body) if stop < 0 else stop + len(name) + 6
            missing = "\n\\end{" + name + "}" if stop < 0 else ""
            self.out.append(text + self.body[self.pos:end] + missing)
            self.pos = end
        elif name in MATH_ENVS and self.in_math():
            self.pos = self.drop(m)
        else:
            self.open(text, ("env", name))

    def open(self, text: str, item: tuple[str, str]) -> None:
        self.out.append(text)
        self.stack.append(item)

    def open_outside_math(self, m, text: str) -> None:
        if self.in_math():
            self.pos = self.drop(m)
        else:
            self.open(text, ("math", text))

    def close_or_drop(self, m, text: str, kind: str, value: str | None = None) -> None:
        """Close what was opened after the matching opener, then the opener; or drop a
        closer that matches nothing."""
        i = self.find(kind, value)
        if i is None:
            self.pos = self.drop(m)
            return
        self.close_to(i + 1)
        self.out.append(text)
        if self.stack.pop() == ("{", "arg"):
            self.arg_end = len(self.out)  # a { right after it is the next argument

    def argument_follows(self) -> bool:
        """Whether a { here opens a command's argument: it follows a command name or an
        optional argument's ] (a line break may come between), or another argument."""
        if self.arg_end == len(self.out) - 1 and not self.out[-1].strip():
            return True
        tail = "".join(self.out[-2:])
        return re.search(r"(?:\\[A-Za-z]+\*?|\])[ \t]*\n?[ \t]*\Z", tail) is not None

    def paragraph(self, text: str) -> None:
        first = next((i for i, item in enumerate(self.stack)
                      if item[0] in ("math", "opt") or item[1] in MATH_ENVS or item[1] == "arg"),
                     None)
        if first is not None:  # TeX forbids math and most arguments across a paragraph break
            self.close_to(first)
        self.out.append(text)

    def item(self, m, text: str) -> None:
        """\\item outside a list is dropped; inside one, math still open from the entry
        before is closed first (TeX stops at both)."""
        i = self.find_any(LIST_ENVS)
        if i is None:
            self.pos = self.drop(m)
            return
        math = next((j for j in range(i + 1, len(self.stack))
                     if self.stack[j][0] == "math" or self.stack[j][1] in MATH_ENVS), None)
        if math is not None:
            self.close_to(math)
        self.out.append(text)
        bib = text == "\\bibitem"
        if (opt := re.compile(r"[ \t]*\[").match(self.body, self.pos)) is not None:
            self.open(opt.group(), ("opt", "bib" if bib else "["))  # its label, up to ]
            self.pos = opt.end()
        elif bib and PARAGRAPH_NEXT.match(self.body, self.pos):
            self.out.append("{}")

    def close_to(self, index: int) -> None:
        while len(self.stack) > index:
            text = closer(self.stack.pop())
            if text == "$" and "".join(self.out[-2:]).endswith("$"):
                text = " $"  # "$$" would open display math
            self.out.append(text)

    def drop(self, m) -> int:
        """Drops the token; returns where to read on (past its line if it was alone there)."""
        body = self.body
        start = body.rfind("\n", 0, m.start()) + 1
        rest = re.compile(r"[ \t]*\n").match(body, m.end())
        if body[start:m.start()].strip() or rest is None or start == 0:
            return m.end()
        self.out[-1] = self.out[-1].rstrip(" \t")  # the line's indentation
        return rest.end()

    def find(self, kind: str, value: str | None = None) -> int | None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == kind and (value is None or self.stack[i][1] == value):
                return i
        return None

    def find_any(self, names: frozenset) -> int | None:
        """The innermost open environment named in ``names``."""
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == "env" and self.stack[i][1] in names:
                return i
        return None

    def in_math(self) -> bool:
        return any(item[0] == "math" or item[1] in MATH_ENVS for item in self.stack)


def closer(item) -> str:
    kind, value = item
    if kind == "{":
        return "}"
    if kind == "env":
        return f"\\end{{{value}}}"
    if kind == "opt":  # a \\bibitem's label is followed by its {key}
        return "]{}" if value == "bib" else "]"
    return MATH_CLOSER[value]


def is_balanced(text: str) -> bool:
    """True when ``repair`` changes nothing: every brace, environment and math is closed."""
    return repair_once(text) == text


# ---------------------------------------------------------------- compiling


def sample_bodies(run: Path, args, temperature: float, seed: int) -> list[str]:
    texts = rnnkit.sample(run / "best.pt", prime_text=PRIME, length=args.length,
                          num_samples=args.samples, seed=seed, temperature=temperature)
    return [t[len(PRIME):].split(END, 1)[0] for t in texts]


def compile_tex(tex: Path, timeout: float) -> tuple[bool, str]:
    """(compiled, first error line or "") of one pdflatex run in the file's folder."""
    cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
           tex.name]
    try:
        done = subprocess.run(cmd, cwd=tex.parent, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    ok = done.returncode == 0 and tex.with_suffix(".pdf").exists()
    log = tex.with_suffix(".log")
    text = log.read_text(errors="replace") if log.exists() else ""
    return ok, "" if ok else first_error(text)


def first_error(log: str) -> str:
    """The first "! ..." message of a pdflatex log, with the undefined name for an undefined
    control sequence (the last command on the "l.N" line that follows)."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("! "):
            message = line[2:].strip()
            if message == "Undefined control sequence.":
                context = next((x for x in lines[i + 1:i + 4] if x.startswith("l.")), "")
                names = re.findall(r"\\[A-Za-z@]+|\\.", context)
                return f"Undefined control sequence {names[-1] if names else ''}".strip()
            return message
    return "no error message (see the log)"


def error_kind(message: str) -> str:
    """A message without its particulars: "Environment foo undefined" -> "Environment
    ... undefined", "Undefined control sequence \\foo" -> "Undefined control sequence"."""
    if message.startswith("Undefined control sequence"):
        return "Undefined control sequence"
    message = re.sub(r"Environment \S+ undefined", "Environment ... undefined", message)
    message = re.sub(r"\\end\{[^}]*\}", r"\\end{...}", message)
    message = re.sub(r"\\begin\{[^}]*\}", r"\\begin{...}", message)
    message = re.sub(r"`[^']*'", "`...'", message)
    return re.sub(r"\d+", "N", message).rstrip(".")


def compile_all(bodies: list[str], folder: Path, preamble: str, timeout: float) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for i, body in enumerate(bodies):
        tex = folder / f"sample_{i:03d}.tex"
        tex.write_text(f"{preamble}\\begin{{document}}\n{body}\n{END}\n", encoding="utf-8")
        ok, error = compile_tex(tex, timeout)
        results.append({"file": str(tex), "chars": len(body), "compiles": ok, "error": error})
    return results


def corpus_names(corpus: str, min_count: int = 3) -> tuple[list[str], list[str]]:
    """Letters-only command names and environment names used >= min_count times."""
    commands = collections.Counter(re.findall(r"\\([A-Za-z]+)", corpus))
    envs = collections.Counter(re.findall(r"\\begin\{([A-Za-z*]+)\}", corpus))
    return ([n for n, c in commands.items() if c >= min_count],
            [n for n, c in envs.items() if c >= min_count])


def stub_preamble(corpus: str, folder: Path, timeout: float) -> tuple[str, int]:
    """PREAMBLE plus empty definitions of the corpus's frequent commands and environments
    that PREAMBLE leaves undefined (asked of pdflatex itself); and how many were added."""
    commands, envs = corpus_names(corpus)
    probe = folder / "probe.tex"
    checks = [rf"\ifcsname {n}\endcsname\else\typeout{{UNDEF-CMD {n}}}\fi" for n in commands]
    checks += [rf"\ifcsname {n}\endcsname\else\typeout{{UNDEF-ENV {n}}}\fi" for n in envs]
    folder.mkdir(parents=True, exist_ok=True)
    probe.write_text(PREAMBLE + "\\begin{document}\n" + "\n".join(checks) + "\nx\n" + END + "\n")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", probe.name], cwd=folder,
                   capture_output=True, timeout=timeout * 3, stdin=subprocess.DEVNULL)
    log = probe.with_suffix(".log").read_text(errors="replace")
    missing_cmds = sorted(set(re.findall(r"^UNDEF-CMD (\S+)$", log, re.M)))
    missing_envs = sorted(set(re.findall(r"^UNDEF-ENV (\S+)$", log, re.M)))
    # LaTeX refuses \newcommand of a name that starts with "end" (an environment's end)
    stubs = [rf"\providecommand{{\{n}}}{{}}" for n in missing_cmds if not n.startswith("end")]
    # an environment is a pair of commands; \providecommand keeps any half already defined
    stubs += [rf"\providecommand{{\{n}}}{{}}\expandafter\let\csname end{n}\endcsname\relax"
              for n in missing_envs if n.isalpha()]
    return PREAMBLE + "\n".join(stubs) + "\n", len(stubs)


def render_png(pdf: Path, png: Path) -> bool:
    """The first page of ``pdf`` as ``png`` (pdftoppm, Debian poppler-utils)."""
    if shutil.which("pdftoppm") is None:
        return False
    subprocess.run(["pdftoppm", "-png", "-r", "90", "-f", "1", "-l", "1", "-singlefile",
                    str(pdf), str(png.with_suffix(""))], check=True, capture_output=True)
    return png.exists()


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of the fraction k / n (sound near 0 and 1, unlike the
    normal approximation)."""
    if n == 0:
        return [0.0, 1.0]
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(centre - half, 0.0), 3), round(min(centre + half, 1.0), 3)]


def tally(results: list[dict]) -> dict:
    errors = [r["error"] for r in results if not r["compiles"]]
    undefined = collections.Counter(e.split()[-1] for e in errors
                                    if e.startswith("Undefined control sequence \\"))
    k = sum(r["compiles"] for r in results)
    return {"compiling": k, "samples": len(results),
            "fraction": round(k / max(len(results), 1), 3), "ci95": wilson(k, len(results)),
            "error_kinds": dict(collections.Counter(map(error_kind, errors)).most_common()),
            "undefined_commands": dict(undefined.most_common(15))}


# ---------------------------------------------------------------- main


def train_model(args, corpus: Path, run: Path, seed: int) -> tuple[dict, float]:
    """The main job's model (preset shakespeare-5min's LSTM at --hidden 384, bf16 where the
    CPU has it) with the recipe its saved results used (batch 32 x 128, peak learning rate
    5e-3, no weight decay) on the LaTeX corpus."""
    model_cfg, cfg = rnnkit.configs(
        preset="shakespeare-5min", model={"hidden_size": args.hidden},
        train={"data": str(corpus), "max_steps": args.steps, "max_time": args.max_minutes * 60,
               "time_budget": 0.0,  # --steps, not the preset's fit to five minutes
               "eval_every": max(args.steps // 4, 1), "seq_length": args.seq_length,
               "batch_size": args.batch_size, "val_frac": 0.05, "test_frac": 0.0,
               "eval_max_chars": 100_000, "seed": seed, "threads": args.threads,
               "sample_length": 200, "learning_rate": 5e-3, "weight_decay": 0.0})
    return train_timed(model_cfg, cfg, run, args.quiet)


def by_temperature_and_length(args, runs: dict[int, Path], out: Path):
    """The headline bodies with their results (first temperature, whole samples) and the
    compile fraction of every temperature, whole and cut at each of --cuts, over the samples
    of every seed's model together (and each seed's own count)."""
    table, headline = {}, None
    for t in args.temperatures:
        raw = [b for seed, run in runs.items() for b in sample_bodies(run, args, t, seed)]
        for cut in [0, *args.cuts]:
            bodies = [repair(cut_at_paragraph(b, cut) if cut else b) for b in raw]
            assert all(map(is_balanced, bodies))
            name = f"T{t}_{cut or 'whole'}"
            results = compile_all(bodies, out / "samples" / name, PREAMBLE, args.timeout)
            table[name] = {"temperature": t, "cut": cut or None, **tally(results),
                           "by_seed": by_seed(runs, results),
                           "compiling_with_verbatim": sum(
                               r["compiles"] and bool(VERBATIM.search(b))
                               for b, r in zip(bodies, results)),
                           "compiling_with_theorems": sum(
                               r["compiles"] and bool(THEOREM.search(b))
                               for b, r in zip(bodies, results)),
                           "mean_body_chars": round(sum(map(len, bodies)) / len(bodies))}
            headline = headline or (bodies, results)
    return headline, table


def by_seed(runs: dict[int, Path], results: list[dict]) -> dict[str, int]:
    """Samples that compile, per seed (``results`` holds each seed's samples in turn)."""
    n = len(results) // len(runs)
    return {str(seed): sum(r["compiles"] for r in results[i * n:(i + 1) * n])
            for i, seed in enumerate(runs)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds {' '.join(map(str, args.seeds))}: each seed once")
    if shutil.which("pdflatex") is None:
        raise SystemExit("pdflatex not found: apt-get install texlive-latex-base")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpus = build_corpus(tex_files(args), out, args.max_bytes, args.max_file_bytes)
    # this example's own outputs of an earlier run
    for old in ("run", "runs", "samples", "stubbed"):
        shutil.rmtree(out / old, ignore_errors=True)
    runs, trained = {seed: out / "runs" / f"seed{seed}" for seed in args.seeds}, []
    for seed, run in runs.items():
        metrics, seconds = train_model(args, out / "corpus.txt", run, seed)
        trained.append({"seed": seed, "steps": metrics.get("step"),
                        "train_seconds": round(seconds, 1),
                        "val_loss": round(metrics["val_loss"], 4)})
    (bodies, plain), table = by_temperature_and_length(args, runs, out)
    stubbed, n_stubs = stub_preamble((out / "corpus.txt").read_text(), out / "stubbed",
                                     args.timeout)
    with_stubs = compile_all(bodies, out / "stubbed", stubbed, args.timeout)
    compiled = [(b, r) for b, r in zip(bodies, plain) if r["compiles"]]
    picture = None
    if compiled:  # the longest that compiled, preferring theorems and no verbatim text
        _, shown = max(compiled, key=lambda br: (bool(THEOREM.search(br[0])),
                                                 not VERBATIM.search(br[0]), br[1]["chars"]))
        best = Path(shown["file"])
        if render_png(best.with_suffix(".pdf"), out / "latex_sample.png"):
            picture = str(best)
            if args.save:
                shutil.copyfile(out / "latex_sample.png", PICTURE.with_stem(
                    "latex_r_vignettes_sample" if args.fetch_r_vignettes else PICTURE.stem))
    summary = {
        "args": vars(args),
        "corpus": {"source": args.tex_dir or args.fetch_r_vignettes or f"dpkg -L {args.package}",
                   **corpus},
        "model": {"cell": "lstm", "num_layers": 2, "hidden_size": args.hidden,
                  "recipe": "shakespeare-5min"},
        "runs": trained,
        "val_loss": round(sum(r["val_loss"] for r in trained) / len(trained), 4),
        "samples": len(bodies),
        "mean_body_chars": round(sum(map(len, bodies)) / len(bodies)),
        "compiles": tally(plain),
        "by_temperature_and_length": table,
        "compiles_with_stubs": {"stubs": n_stubs, **tally(with_stubs)},
        "picture_of": picture,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "provenance": provenance("examples/latex.py"),
    }
    saved = (R_RESULTS if args.fetch_r_vignettes else RESULTS) if args.save else None
    return save_results(summary, out / "results.json", saved)


if __name__ == "__main__":
    main()
