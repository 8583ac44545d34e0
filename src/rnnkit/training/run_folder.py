"""The run folder's rules: one process at a time (RunLock), what a new run refuses to
overwrite, what a resume must keep.

A run folder holds:
    config.json     the resolved {"model": ..., "train": ...} configuration
    metrics.jsonl   one JSON record per line: step, train_loss, lr, ... (+ val_* at evaluations)
    samples/        step_XXXXXX.txt (or .png), written at every evaluation
    last.pt/.json   the latest checkpoint, with optimizer, RNG, carried state: resume from it
    best.pt/.json   the weights with the lowest val loss so far
    step_XXXXXX.pt  (+ .json) --keep-checkpoints N: the last N evaluations' weights (stages.py)
    tensorboard/    --tensorboard: TensorBoard event files (tensorboard.py)
    .lock           held by the process training in it: one at a time (RunLock, below)
A language model's text is prepared once in the shared cache (data/corpus.py), not here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from ..errors import RnnkitError
from ..fileio import remove_temp_files
from .checkpoint import load_checkpoint
from .config import TrainConfig, data_sized_fields, to_dict

# Settings that decide which batch each step reads: a resumed run must keep them.
SAME_RUN_KEYS = ("task", "data", "corpus", "mode", "tag_format", "batch_size", "seq_length",
                 "val_frac", "test_frac", "seed", "ema")


def check_run_folder(out: Path, resume: bool) -> None:
    """An error that says what to do when ``out`` does not suit a new run (or a resume)."""
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise RnnkitError(f"--resume: no run to resume in {str(out)!r} (no last.pt); "
                              "drop --resume to start a new run there")
    elif last.is_file() or (out / "config.json").is_file():
        raise RnnkitError(f"{str(out)!r} already holds a run; add --resume to continue "
                          "it, or choose a new --out")
    elif out.exists() and not out.is_dir():
        raise RnnkitError(f"--out {str(out)!r} is a file, not a folder; choose another --out")


def open_run_folder(out: Path, resume: bool, log) -> tuple[RunLock, bool, dict | None]:
    """Check ``out``, create it if needed and lock it: (the lock, whether this call created
    the folder, the checkpoint to resume or None). Nothing is created when a check fails."""
    RunLock.check_free(out)  # first: "in use" says more than "already holds a run"
    check_run_folder(out, resume)
    try:
        out.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    lock = RunLock(out)
    try:
        check_run_folder(out, resume)  # again: another process may have started a run there
        left = remove_temp_files(out)
        if left:
            log(f"removed {len(left)} unfinished temp file(s) that a stopped run left in {out}")
        # RNG states must stay on the CPU; weights and optimizer state move on loading
        payload = load_checkpoint(out / "last.pt", map_location="cpu") if resume else None
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        lock.release()
        raise
    return lock, created, payload


def check_same_run(saved: dict, model_cfg, cfg: TrainConfig) -> None:
    now = to_dict(model_cfg, cfg)
    sized = data_sized_fields(type(model_cfg))  # filled in from the data, not chosen
    changed = [k for k in saved["model"]
               if k not in sized and saved["model"][k] != now["model"].get(k)]
    changed += [k for k in SAME_RUN_KEYS if saved["train"].get(k) != now["train"][k]]
    if changed:
        then = ", ".join(f"{k}={saved_value(saved, k)!r}" for k in changed)
        asked = ", ".join(f"{k}={saved_value(now, k)!r}" for k in changed)
        raise RnnkitError(f"--resume cannot change {', '.join(changed)} (last.pt was trained "
                          f"with {then}; now {asked}): drop the flags that change it (or, if "
                          "you passed none, set it back in the run's config.json), or start a "
                          "new run with another --out")


def saved_value(saved: dict, key: str):
    return saved["model"][key] if key in saved["model"] else saved["train"].get(key)


def world_change(payload: dict, now: int) -> str:
    """What a resume on another number of processes changes, for the log."""
    saved = payload["meta"].get("world_size", 1)
    if saved == now:
        return ""
    return (f", saved by {saved} process(es), now {now}: the same batches and carried "
            "state (the global batch is kept); dropout and sampling draws differ (each rank "
            "has its own random stream), and sums run in another order")


LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on a run folder for the life of the process that trains in it.

    flock(2) on ``RUN_DIR/.lock``: the kernel releases it when the process ends, however it
    ends (kill -9 included), so a lock is never stale; the file holds the owner's PID for the
    error message, and is removed on release.
    """

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._in_use(fd, folder) from None
            except BaseException:
                os.close(fd)
                raise
            # a holder that released (and removed the file) between our open and our lock
            # leaves us locking a file no one else will ever see: open the path again
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd: int | None = fd

    @staticmethod
    def _in_use(fd: int, folder: Path) -> RnnkitError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return RnnkitError(f"run folder {str(folder)!r} is in use by another rnnkit process "
                           f"(PID {holder}); wait for it to finish or stop it, or choose "
                           "another --out")

    @staticmethod
    def check_free(folder: Path) -> None:
        """The in-use error if a process holds ``folder``'s lock; creates nothing."""
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
        except OSError:  # no lock file (or no folder): no one holds it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLock._in_use(fd, folder) from None
        os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: no one can take it half-gone
            os.close(self.fd)
            self.fd = None
