"""Print a shell completion script for rnnkit (bash, zsh or tcsh).

examples:
  rnnkit completion bash > ~/.local/share/bash-completion/completions/rnnkit
  rnnkit completion zsh > "${fpath[1]}/_rnnkit"     # then start a new shell
  eval "$(rnnkit completion bash)"                  # this shell only
"""

from __future__ import annotations

import sys

SHELLS = ("bash", "zsh", "tcsh")


def add_arguments(p) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def run(args) -> int:
    import shtab  # only this command needs it

    # the whole parser: every command, flag and choice
    sys.stdout.write(shtab.complete(args.root_parser, shell=args.shell))
    return 0
