"""--keep-checkpoints N: the weights of the last N evaluations, step_XXXXXX.pt (+ .json),
beside last.pt and best.pt, to sample from several stages of training.

A stage holds what best.pt holds (weights and meta, no optimizer: a third of last.pt's size);
when best.pt was written at the same evaluation, the stage is a hard link to its bytes.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..fileio import with_filename

STAGE = re.compile(r"step_(\d{6,})\.pt")


def stage_name(step: int) -> str:
    """step_XXXXXX, as the samples are named."""
    return f"step_{step:06d}"


def keep_stage(folder: Path, step: int, keep: int, from_best: bool, save) -> None:
    """Keep this evaluation's weights as step_XXXXXX.pt: best.pt's bytes when it was just
    written (``from_best``), else ``save(name)`` (False: not written, the weights are not
    finite); then delete the stages beyond the newest ``keep``."""
    name = stage_name(step)
    if from_best:
        link_checkpoint(folder / "best.pt", name)
    elif not save(name):
        return
    prune_stages(folder, keep)


def link_checkpoint(source: Path, name: str) -> None:
    """NAME.pt/.json beside ``source`` (a .pt file): the same bytes, without a copy where the
    file system has hard links. Each appears whole (linked or copied, then renamed)."""
    for suffix in (".pt", ".json"):
        src, dst = source.with_suffix(suffix), source.with_name(name + suffix)
        tmp = dst.with_name(f".{dst.name}.link.tmp")  # fileio's temp-file pattern: swept
        tmp.unlink(missing_ok=True)                   # away if a kill leaves it
        try:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise with_filename(e, dst) from None


def stages(folder: Path) -> list[int]:
    """The steps of the stages in ``folder``, oldest first: files named exactly as
    ``stage_name`` names them (step_000500.pt, not step_500.pt or step_500_old.pt)."""
    steps = [int(m[1]) for p in folder.glob("step_*.pt") if (m := STAGE.fullmatch(p.name))]
    return sorted({s for s in steps if (folder / f"{stage_name(s)}.pt").is_file()})


def prune_stages(folder: Path, keep: int) -> list[int]:
    """Delete the stages beyond the newest ``keep`` (with their .json); returns their steps."""
    old = stages(folder)[:-keep] if keep > 0 else []
    for step in old:
        for suffix in (".pt", ".json"):
            (folder / (stage_name(step) + suffix)).unlink(missing_ok=True)
    return old
