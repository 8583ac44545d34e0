"""The README and the pages in docs/ hold no dead links and no command the CLI would refuse.

- Every relative link (and image) in README.md and docs/*.md names a file that exists, and a
  ``#anchor`` into a Markdown file names one of its headings (GitHub's slugs).
- Every ``rnnkit ...`` command in a fenced shell block (```bash, ```sh, ```console or a bare
  ```) parses with the current parser, ``rnnkit.cli.build_parser()``, and names its flags in
  full (no abbreviation that argparse would accept). The synopses in ```text blocks
  (``rnnkit train [--flag ...]``) name only commands and flags that exist.
"""

from __future__ import annotations

import argparse
import io
import re
import shlex
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from urllib.parse import unquote

import pytest

from rnnkit.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)[^\n]*$")
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}


def blocks(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced code blocks as (info string, body), and the text outside them."""
    found, prose, body, fence, lang = [], [], [], None, ""
    for line in text.splitlines():
        stripped = line.strip()
        m = FENCE.match(stripped)
        if fence is None and m:
            fence, lang, body = m.group(1), m.group(2).lower(), []
        elif fence is not None and stripped.startswith(fence) and not stripped.strip("`~"):
            found.append((lang, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append(line)
    return found, "\n".join(prose)


# links --------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = blocks(path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", prose, re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    _, prose = blocks(path.read_text())
    prose = re.sub(r"`[^`\n]*`", "", prose)  # code spans are not links
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose, re.M)
    targets += re.findall(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", prose)
    return targets


def dead_links() -> tuple[list[str], int]:
    dead, checked = [], 0
    for page in PAGES:
        for target in links(page):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            checked += 1
            file, _, anchor = unquote(target).partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
                dead.append(f"{where}: no file {shown}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                dead.append(f"{where}: no heading with the anchor #{anchor} in {dest.name}")
    return dead, checked


def test_every_relative_link_resolves():
    dead, checked = dead_links()
    assert checked >= 20, f"only {checked} relative links found: is the link pattern broken?"
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_the_link_check_catches_a_dead_link_and_a_dead_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Some `code`: here\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#some-code-here) [gone](docs/b.md) [bad](docs/a.md#nowhere) "
        "`[in code](docs/c.md)` [web](https://example.com/x)\n```\n[block](docs/d.md)\n```\n")
    global ROOT, PAGES
    saved = ROOT, PAGES
    ROOT, PAGES = tmp_path, [tmp_path / "README.md", tmp_path / "docs" / "a.md"]
    try:
        dead, checked = dead_links()
    finally:
        ROOT, PAGES = saved
    assert checked == 3
    assert len(dead) == 2 and "docs/b.md" in dead[0] and "#nowhere" in dead[1]


# commands -----------------------------------------------------------------------------------

def shell_commands(body: str) -> list[list[str]]:
    """The rnnkit invocations of a shell block, as argument lists (without 'rnnkit')."""
    body = re.sub(r"\\\n\s*", " ", body)  # line continuations
    found = []
    for line in body.splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)  # a prompt
        if not re.search(r"(^|[\s;&|(\"])rnnkit(\s|$)", line):
            continue  # no rnnkit command on this line (or a block of other text)
        # $(rnnkit ...) inside a word, as in eval "$(rnnkit completion bash)"
        for inner in re.findall(r"\$\(\s*(rnnkit\s[^)]*)\)", line):
            found += shell_commands(inner)
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        try:
            tokens = [*lex, ";"]
        except ValueError as e:  # an unclosed quote: the example is broken as a command
            found.append(["<unparsable shell line>", line, str(e)])
            continue
        segment: list[str] = []
        for token in tokens:
            if token in OPERATORS:
                found += invocation(segment)
                segment = []
            else:
                segment.append(token)
    return found


def invocation(tokens: list[str]) -> list[list[str]]:
    words, skip = [], False
    for token in tokens:  # drop redirections: > FILE, >> FILE, < FILE, 2> FILE
        if skip:
            skip = False
        elif re.fullmatch(r"\d*[<>]+&?", token):
            skip = True
        else:
            words.append(token)
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):  # VAR=value rnnkit ...
        words = words[1:]
    if words[:1] == ["rnnkit"]:
        return [words[1:]]
    for i in range(len(words) - 1):  # python -m rnnkit ..., torchrun ... -m rnnkit ...
        if words[i] == "-m" and words[i + 1] == "rnnkit":
            return [words[i + 2:]]
    return []


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, p in a.choices.items()}


def parser_chain(words: list[str]) -> list[argparse.ArgumentParser]:
    """The parser, then the (sub)command parsers that the words name."""
    chain = [build_parser()]
    for word in words:
        if not word.startswith("-") and word in subparsers(chain[-1]):
            chain.append(subparsers(chain[-1])[word])
    return chain


def options(chain: list[argparse.ArgumentParser]) -> set[str]:
    return {flag for p in chain for flag in p._option_string_actions}


def refusal(args: list[str]) -> str | None:
    """Why the parser refuses these arguments, or None when it takes them."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            build_parser().parse_args(args)
    except SystemExit as exit:
        if exit.code not in (0, None):
            return err.getvalue().strip() or f"exit {exit.code}"
    known = options(parser_chain(args))
    words = args[:args.index("--")] if "--" in args else args
    unknown = [w.split("=", 1)[0] for w in words
               if w.startswith("--") and w.split("=", 1)[0] not in known]
    return f"not full flag names: {unknown}" if unknown else None


def synopsis_problems(body: str) -> list[str]:
    """A ```text synopsis: each 'rnnkit COMMAND ...' line and the indented lines after it name
    a command that exists and only flags that command has."""
    problems, flags_of, words = [], None, []
    for line in body.splitlines() + ["<end>"]:
        if line.startswith("rnnkit") or line == "<end>":
            if flags_of is not None:
                known = options(parser_chain(words))
                problems += [f"rnnkit {' '.join(words)}: no flag {flag}" for flag in flags_of
                             if flag not in known]
            flags_of, words = None, []
            if line == "<end>":
                break
            parts = line.split()[1:]
            for part in parts:  # the command words: up to the first flag, bracket or metavar
                if not re.fullmatch(r"[a-z][a-z0-9-]*", part):
                    break
                chain = parser_chain(words)
                if part not in subparsers(chain[-1]):
                    if subparsers(chain[-1]) and not words:
                        problems.append(f"rnnkit {part}: no such command")
                    break
                words.append(part)
            flags_of = []
        if flags_of is not None:
            flags_of += re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)
    return problems


def commands_in_docs() -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    commands, synopses = [], []
    for page in PAGES:
        for lang, body in blocks(page.read_text())[0]:
            name = str(page.relative_to(ROOT))
            if lang in SHELL_BLOCKS:
                commands += [(name, args) for args in shell_commands(body)]
            elif lang == "text" and re.search(r"^rnnkit ", body, re.M):
                synopses.append((name, body))
    return commands, synopses


def test_every_documented_command_parses():
    commands, _ = commands_in_docs()
    assert len(commands) >= 40, f"only {len(commands)} rnnkit commands found in the docs"
    refused = [f"{page}: rnnkit {shlex.join(args)}\n    {why}" for page, args in commands
               if (why := refusal(args)) is not None]
    assert not refused, "commands the CLI refuses:\n" + "\n".join(refused)


def test_every_synopsis_names_existing_commands_and_flags():
    _, synopses = commands_in_docs()
    assert synopses, "docs/cli.md's synopsis (a ```text block) was not found"
    problems = [f"{page}: {p}" for page, body in synopses for p in synopsis_problems(body)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("line, ok", [
    ('rnnkit sample runs/x --prime-text "ROMEO:" --length 600 --temperature 0.8', True),
    ("rnnkit train --out runs/x --resume --max-steps 8000   # extend", True),
    ("rnnkit --version", True),
    ("rnnkit train --help", True),
    ("rnnkit train --out runs/x --no-such-flag 3", False),
    ("rnnkit sample runs/x --temp 0.8", False),  # an abbreviation argparse would accept
    ("rnnkit frobnicate runs/x", False),
    ("cd /tmp && rnnkit sample runs/x --beam 8 | head -3", True),
    ("cd /tmp && rnnkit sample runs/x --bem 8 > out.txt", False),
    ("torchrun --standalone --nproc-per-node 2 -m rnnkit train --out r \\\n  --bogus", False),
    ('eval "$(rnnkit sample runs/x --bogus)"', False),
])
def test_the_command_check_tells_good_from_bad(line, ok):
    found = shell_commands(line)
    assert len(found) == 1
    assert (refusal(found[0]) is None) == ok, refusal(found[0])


def test_the_synopsis_check_catches_an_unknown_flag_and_command():
    body = ("rnnkit train --out RUN_DIR [--cell lstm|gru]\n"
            "              [--no-such-flag N]\n"
            "rnnkit frobnicate RUN_DIR\n"
            "rnnkit demo   structured-prediction [--samples N]\n"
            "rnnkit --version\n")
    assert synopsis_problems(body) == ["rnnkit train: no flag --no-such-flag",
                                       "rnnkit frobnicate: no such command"]
