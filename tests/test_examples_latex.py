"""examples/latex.py: the corpus rule, the LaTeX repair and a tiny end-to-end run."""

import gzip
import json
import shutil

import pytest

from .conftest import FIXTURES as ALL_FIXTURES
from .test_examples import load

FIXTURES = ALL_FIXTURES / "latex"

latex = load("latex")
needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None,
                                    reason="pdflatex not installed (apt-get install "
                                           "texlive-latex-base)")


@pytest.mark.parametrize("body, repaired", [
    # unclosed braces, innermost first
    (r"\textbf{a {b", r"\textbf{a {b}}"),
    # nested environments are closed in reverse order
    (r"\begin{itemize}\item a\begin{enumerate}\item b",
     r"\begin{itemize}\item a\begin{enumerate}\item b\end{enumerate}\end{itemize}"),
    # a stray \end and a stray } are dropped
    (r"a\end{proof} b}", r"a b"),
    # unclosed inline and display math
    (r"where $x^2", r"where $x^2$"),
    (r"so \[ a + b", r"so \[ a + b\]"),
    (r"\( a", r"\( a\)"),
    # a paragraph break ends math, inline or a math environment
    ("$a\n\nb", "$a$\n\nb"),
    ("\\begin{equation}a\n\nb\\end{equation}", "\\begin{equation}a\\end{equation}\n\nb"),
    # a paragraph break ends a command's argument (and what it holds), not a plain group
    ("\\title{A \\emph{long\n\nb}", "\\title{A \\emph{long}}\n\nb"),
    ("\\cite[p.~2]{x\n\ny", "\\cite[p.~2]{x}\n\ny"),
    ("{\\bf a\n\nb", "{\\bf a\n\nb}"),
    ("\\href{u}{t\n\nx", "\\href{u}{t}\n\nx"),
    ("\\section\n{t\n\nx", "\\section\n{t}\n\nx"),
    ("{a}{b\n\nc", "{a}{b\n\nc}"),
    # a closer of something further out first closes what is open inside it
    (r"\begin{theorem}{\em a\end{theorem}", r"\begin{theorem}{\em a}\end{theorem}"),
    (r"$\frac{a$ b", r"$\frac{a}$ b"),
    # display math inside math is dropped
    (r"$a \[ b$", r"$a  b$"),
    # escaped characters, \verb and verbatim are not structure
    (r"50\% of \{x\} costs \$", r"50\% of \{x\} costs \$"),
    (r"\verb|{$| and \verb+}+", r"\verb|{$| and \verb+}+"),
    (r"\begin{verbatim}{ $\end{verbatim}", r"\begin{verbatim}{ $\end{verbatim}"),
    ("\\begin{verbatim}{ $", "\\begin{verbatim}{ $\n\\end{verbatim}"),
    # a comment hides braces; the closers then go on a new line
    ("{a % }", "{a % }\n}"),
    # unfinished commands at the very end are dropped
    (r"a \begin{ite", r"a "),
    ("a\\", "a"),
    ("a\\\\", "a\\\\"),
    # an unterminated \verb and a \begin without a {name} lose the command word
    (r"see \verb|x", r"see x"),
    ("\\end{a.\nb", "{a.\nb}"),
    # a dropped closer alone on its line takes the line along: no new paragraph break
    ("$a\n  \\end{x}\nb$", "$a\nb$"),
    # closing $ right after $ must not make $$ (display math)
    (r"{$}", r"{$ $}"),
    # \item outside a list is dropped (with its line when alone); \itemsep is not \item
    (r"a \item b \itemsep", r"a  b \itemsep"),
    ("a\n\\item\nb", "a\nb"),
    # \item ends math left open by the entry before, not a group
    (r"\begin{itemize}\item $a \item {b \item c",
     r"\begin{itemize}\item $a $\item {b \item c}\end{itemize}"),
    (r"\begin{enumerate}\item \[a \begin{itemize}\item b",
     r"\begin{enumerate}\item \[a \begin{itemize}\item b\end{itemize}\]\end{enumerate}"),
    # & separates columns in alignments and is a character elsewhere
    (r"A & B \begin{tabular}{cc}a & {b} \end{tabular} $x & y$",
     r"A \& B \begin{tabular}{cc}a & {b} \end{tabular} $x \& y$"),
    (r"\begin{align} a &= \begin{pmatrix} 1 & 2", r"\begin{align} a &= \begin{pmatrix} 1 & 2"
     r"\end{pmatrix}\end{align}"),
    (r"\& and \verb|&|", r"\& and \verb|&|"),
    # an item's [label] is closed by a paragraph break; ] elsewhere is a character
    ("\\begin{thebibliography}{9}\\bibitem[Smith {et al\n\nb",
     "\\begin{thebibliography}{9}\\bibitem[Smith {et al}]{}\n\nb\\end{thebibliography}"),
    ("\\begin{thebibliography}{9}\\bibitem[S]\n\n\\bibitem\n\n\\bibitem[T] U",
     "\\begin{thebibliography}{9}\\bibitem[S]{}\n\n\\bibitem{}\n\n\\bibitem[T] U"
     "\\end{thebibliography}"),
    (r"\begin{description}\item [a {b] c] $[0, 1]$",
     r"\begin{description}\item [a {b}] c] $[0, 1]$\end{description}"),
    (r"\bibitem[x] y", r"[x] y"),
])
def test_repair_exact(body, repaired):
    assert latex.repair(body) == repaired
    assert latex.is_balanced(repaired)


@pytest.mark.parametrize("body", [
    r"$\begin{itemize}{\item [a}\end{itemize}$$\]\)",
    "{\\begin{align}x&=1\n\n\\end{align}} $$ a $ b $$ \\(",
    r"\end{a}\end{b}}}}$\begin{x}\begin{y}{{\[",
])
def test_repair_is_balanced_and_idempotent(body):
    once = latex.repair(body)
    assert latex.repair(once) == once


def test_strip_comments():
    text = "a % note\n% whole line\nb \\% kept\nc \\\\% dropped\n\n\n\nd"
    assert latex.strip_comments(text) == "a\nb \\% kept\nc \\\\\n\nd"


def test_corpus_keeps_documents_and_skips_macro_code(tmp_path):
    paths = sorted(FIXTURES.iterdir())
    counts = latex.build_corpus(paths, tmp_path, max_bytes=100_000, max_file_bytes=10_000)
    corpus = (tmp_path / "corpus.txt").read_text()
    assert counts["documents"] == 3  # curves.tex, schemes.tex and the gzipped sheaves
    assert counts["skipped"] == {"not an English LaTeX document": 1}  # macros.tex
    assert corpus.count(latex.PRIME) == corpus.count(latex.END) == 3
    assert "\\documentclass" not in corpus and "comment the corpus builder" not in corpus
    assert "stalk of the sheaf" in corpus  # read from the .tex.gz


def test_corpus_dedupes_and_caps(tmp_path):
    doc = (FIXTURES / "curves.tex").read_text()
    for name in ("a.tex", "b.tex"):
        (tmp_path / name).write_text(doc)
    (tmp_path / "c.tex.gz").write_bytes(gzip.compress(doc.replace("Curves", "Other").encode()))
    out = tmp_path / "out"
    out.mkdir()
    counts = latex.build_corpus(sorted(tmp_path.glob("*.tex*")), out, max_bytes=600,
                                max_file_bytes=10_000)
    assert counts["documents"] == 1
    assert counts["skipped"] == {"duplicate": 1, "over --max-bytes": 1}


VIGNETTE = r"""\documentclass{article}
% \VignetteIndexEntry{Intro}
\SweaveOpts{keep.source=TRUE}
\begin{document}
\SweaveOpts{eps=FALSE}
The \pkg{zoo} package and its \code{rollmean} function, in \proglang{R}:
<<fit, echo=TRUE>>=
fit <- lm(y ~ x) { unbalanced
@
Then the mean of the series is \Sexpr{round(mean(x), 2)}.
\begin{Schunk}\begin{Sinput}> x\end{Sinput}\end{Schunk}
\end{document}
"""


def test_a_sweave_vignette_is_read_as_plain_latex(tmp_path):
    (tmp_path / "intro.Rnw").write_text(VIGNETTE)
    (tmp_path / "paper.Rnw").write_text(VIGNETTE.replace("{article}", "{jss}"))
    (tmp_path / "other.Rnw").write_text("%\\documentclass{jss}\n" + VIGNETTE.replace(
        "The ", "\\R{} and \\R\\ then "))
    args = latex.parse_args(["--tex-dir", str(tmp_path)])
    assert [p.name for p in latex.tex_files(args)] == ["intro.Rnw", "other.Rnw", "paper.Rnw"]
    body = latex.document_body(latex.read_tex(tmp_path / "intro.Rnw"))
    assert body.startswith("The \\textbf{zoo} package and its \\texttt{rollmean} function, "
                           "in \\textsf{R}:")
    assert "Then the mean of the series is 1." in body
    for gone in ("Sweave", "<<", "lm(y", "Sexpr", "Schunk", "Sinput", "%"):
        assert gone not in body
    assert latex.is_balanced(body)
    # a commented-out class does not count; the R logo keeps its letter
    other = latex.document_body(latex.read_tex(tmp_path / "other.Rnw"))
    assert other.startswith("\\textsf{R} and \\textsf{R}\\ then \\textbf{zoo}")
    # a journal class defines its own macros: the file is not a document of the corpus
    assert latex.document_body(latex.read_tex(tmp_path / "paper.Rnw")) is None


def test_first_error_names_the_undefined_command():
    log = "junk\n! Undefined control sequence.\n<recently read> x\nl.12 a \\foo\n"
    assert latex.first_error(log) == "Undefined control sequence \\foo"
    assert latex.error_kind("LaTeX Error: Environment lemmata undefined.") == \
        "LaTeX Error: Environment ... undefined"


@needs_pdflatex
def test_repaired_body_compiles(tmp_path):
    body = latex.repair("\\section{Curves}\n\\begin{theorem} Let $x \\in \\mathbb{R")
    results = latex.compile_all([body, "\\undefinedmacro"], tmp_path, latex.PREAMBLE, 20)
    assert [r["compiles"] for r in results] == [True, False]
    assert results[1]["error"] == "Undefined control sequence \\undefinedmacro"


@needs_pdflatex
def test_each_list_and_alignment_rule_turns_a_pdflatex_error_into_a_compile(tmp_path):
    """Each body stops pdflatex as sampled, and compiles once repaired."""
    bodies = ["Lonely \\item here.",
              "Fish & chips.",
              "\\begin{itemize}\\item $a \\item b\\end{itemize}",
              "\\begin{thebibliography}{9}\\bibitem[Smith et al\n\nSmith, J.\n"
              "\\bibitem[Lee]\n\nLee, K.\\end{thebibliography}"]
    raw = latex.compile_all(bodies, tmp_path / "raw", latex.PREAMBLE, 20)
    fixed = latex.compile_all([latex.repair(b) for b in bodies], tmp_path / "fixed",
                              latex.PREAMBLE, 20)
    assert [r["compiles"] for r in raw] == [False] * 4, [r["error"] for r in raw]
    assert [r["compiles"] for r in fixed] == [True] * 4, [r["error"] for r in fixed]


@pytest.mark.slow
@needs_pdflatex
def test_latex_example_runs(tmp_path):
    summary = latex.main(["--out", str(tmp_path), "--tex-dir", str(FIXTURES), "--steps", "5",
                          "--hidden", "16", "--seq-length", "32", "--batch-size", "4",
                          "--samples", "3", "--length", "300", "--temperatures", "0.7",
                          "--cuts", "100", "--seeds", "0", "1", "--quiet"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert summary["corpus"]["documents"] == 3 and summary["samples"] == 6
    assert [r["seed"] for r in summary["runs"]] == [0, 1]
    assert all(r["steps"] == 5 and r["val_loss"] > 0 for r in summary["runs"])
    assert summary["provenance"]["command"]
    for key in ("compiles", "compiles_with_stubs"):
        part = summary[key]
        assert part["samples"] == 6 and part["fraction"] == round(part["compiling"] / 6, 3)
        assert part["ci95"] == latex.wilson(part["compiling"], 6)
        assert sum(part["error_kinds"].values()) == 6 - part["compiling"]
    table = summary["by_temperature_and_length"]
    assert set(table) == {"T0.7_whole", "T0.7_100"}
    assert table["T0.7_whole"]["compiling"] == summary["compiles"]["compiling"]
    assert sum(table["T0.7_whole"]["by_seed"].values()) == summary["compiles"]["compiling"]
    assert table["T0.7_100"]["mean_body_chars"] <= table["T0.7_whole"]["mean_body_chars"]
    whole = table["T0.7_whole"]
    assert 0 <= whole["compiling_with_verbatim"] <= whole["compiling"]
    samples = sorted((tmp_path / "samples" / "T0.7_whole").glob("sample_*.tex"))
    assert len(samples) == 6
    for tex in samples:
        body = tex.read_text().split("\\begin{document}\n", 1)[1].rsplit("\n\\end{document}", 1)[0]
        assert latex.is_balanced(body)


@pytest.mark.parametrize("k, n, interval", [
    # the Wilson score interval at z = 1.96; 0 and 1 are clipped to the unit interval
    (7, 40, [0.087, 0.320]), (0, 10, [0.0, 0.278]), (10, 10, [0.722, 1.0]),
    (100, 200, [0.431, 0.569]),
])
def test_wilson_interval(k, n, interval):
    assert latex.wilson(k, n) == pytest.approx(interval, abs=1e-3)
