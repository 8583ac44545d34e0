"""The run folder's rules: what a new run refuses to overwrite, what a resume must keep."""

from __future__ import annotations

from pathlib import Path

from ..errors import RnnkitError
from .checkpoint import load_checkpoint
from .config import TrainConfig, data_sized_fields, to_dict

# Settings that decide which batch each step reads: a resumed run must keep them.
SAME_RUN_KEYS = ("task", "data", "corpus", "mode", "tag_format", "batch_size", "seq_length",
                 "val_frac", "test_frac", "seed")


def check_run_folder(out: Path, resume: bool) -> dict | None:
    """The checkpoint to resume (None for a new run), or an error that says what to do."""
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise RnnkitError(f"--resume: no run to resume in {str(out)!r} (no last.pt); "
                              "drop --resume to start a new run there")
        # RNG states must stay on the CPU; weights and optimizer state move on loading
        return load_checkpoint(last, map_location="cpu")
    if last.is_file() or (out / "config.json").is_file():
        raise RnnkitError(f"{str(out)!r} already holds a run; add --resume to continue "
                          "it, or choose a new --out")
    return None


def check_same_run(saved: dict, model_cfg, cfg: TrainConfig) -> None:
    now = to_dict(model_cfg, cfg)
    sized = data_sized_fields(type(model_cfg))  # filled in from the data, not chosen
    changed = [k for k in saved["model"]
               if k not in sized and saved["model"][k] != now["model"].get(k)]
    changed += [k for k in SAME_RUN_KEYS if saved["train"].get(k) != now["train"][k]]
    if changed:
        raise RnnkitError(f"--resume cannot change {', '.join(changed)} (the run used "
                          f"{', '.join(f'{k}={saved_value(saved, k)!r}' for k in changed)}); "
                          "drop those flags, or start a new run with another --out")


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
