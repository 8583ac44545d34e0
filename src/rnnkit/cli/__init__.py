"""``rnnkit`` command line: ``main(argv)`` dispatches to one module per command.

Each command module has ``add_arguments(parser)`` and ``run(args) -> int``. Problems the user
can fix surface as one ``rnnkit: error: ...`` line on stderr and a non-zero exit, no traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from ..errors import RnnkitError
from ..training.distributed import end_process, launched_world_size
from ..version import __version__
from . import (
    completion,
    data,
    demo,
    evaluate,
    export,
    plot,
    predict,
    sample,
    serve,
    train,
    visualize,
)

COMMANDS = {"train": train, "sample": sample, "predict": predict, "eval": evaluate,
            "export": export, "demo": demo, "serve": serve, "visualize": visualize,
            "plot": plot, "completion": completion, "data": data}


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one ``rnnkit: error:`` line (no usage block), exit 2."""

    def error(self, message):
        self.exit(2, f"rnnkit: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rnnkit", description=(
        "Recurrent sequence models on PyTorch: character and token language models (LSTM, "
        "GRU, vanilla RNN, parallel-scan cells, a transformer baseline, GPT-2 checkpoints), "
        "seq2seq with attention and beam search, sequence classifiers, bidirectional taggers, "
        "and image and video models (activity recognition, captioning, ConvLSTM frame "
        "prediction). Train them, sample from them, predict with them, evaluate them, serve "
        "them in a browser and export them."))
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        doc = module.__doc__.strip()
        p = sub.add_parser(name, help=summary(doc), description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(root_parser=parser)  # for rnnkit completion, which describes it all
        module.add_arguments(p)
    return parser


def summary(doc: str) -> str:
    """A command's line in ``rnnkit --help``: its docstring's first paragraph, one sentence."""
    return " ".join(doc.split("\n\n")[0].split())


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code. A process torchrun started (``rnnkit train``
    on several processes) ends here instead: see ``end_process``."""
    if launched_world_size() <= 1:
        return dispatch(argv)
    try:
        code = dispatch(argv)
    except SystemExit as e:  # argparse, and the ranks that leave the reporting to rank 0
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    end_process(code)


def dispatch(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except RnnkitError as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except BrokenPipeError:  # the reader left (rnnkit sample ... | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # disk full, permissions, a folder where a file was expected ...
        print(f"rnnkit: error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


# what to do about an OSError, by its errno
OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space on that disk, or choose another --out",
    errno.EDQUOT: "free some space on that disk, or choose another --out",
    errno.EFBIG: "that file grew past the size this system allows; free space or lift the "
                 "limit (ulimit -f), or choose another --out",
    errno.EACCES: "check the permissions of that path (reading it, or writing in its folder)",
    errno.EPERM: "check the permissions of that path (reading it, or writing in its folder)",
    errno.EROFS: "that file system is read-only; choose another --out",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
}


def os_error_line(e: OSError) -> str:
    where = f"{e.filename}" if e.filename is not None else "(the file was not named)"
    fix = OS_ERROR_FIXES.get(e.errno, "check the path and that its disk is writable")
    return f"{e.strerror or e}: {where}; {fix}"


if __name__ == "__main__":
    sys.exit(main())
