"""The segment task: a label for every frame of a clip (temporal action segmentation).

    clips (B, T, C, H, W) -> a label per frame (B, T); metrics: frame accuracy, the segmental
    edit score and F1@{10,25,50} (Lea et al. 2017, as the MS-TCN evaluation computes them)

Without --data the clips are generated (data/actions.py: one digit moving through 2-4
actions, each frame labelled with the action that moves it to the next frame): training
batches are drawn fresh for every step from (seed, step), so a resumed run reads the same
batches; val and test are fixed sets drawn from digit images that training never sees. With
--data FILE.npz the arrays ``clips`` (N, T, [C,] H, W), uint8 or floats in [0, 1], and
``labels`` (N, T), ints or strings whose sorted distinct values are the classes, are checked,
split with a seeded shuffle and batched like the other vision tasks.

Scales: accuracy is a fraction, like every accuracy in rnnkit; edit and F1 are percentages,
as the segmentation papers report them. Metric names: accuracy, edit, f1_10, f1_25, f1_50
(val_accuracy ... during training).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..data import actions
from ..data.pairs import PairBatches, split_indices
from ..errors import RnnkitError
from ..fileio import atomic_write_bytes, npz_arrays
from ..models import Segmenter, SegmenterConfig
from .base import EvalRequest, PredictRequest, sample_path
from .vision import SEED_STRIDE, Examples, chunks, pixels

NPZ_KEYS = ("clips", "labels")
IOUS = {"f1_10": 0.1, "f1_25": 0.25, "f1_50": 0.5}
SAMPLE_ROWS = 4  # val clips whose labels are written at each evaluation


def generate(model_cfg: SegmenterConfig, n: int, seed: int, split: str) -> Examples:
    """n generated clips in the geometry the model config describes."""
    if model_cfg.in_channels != 1:
        raise RnnkitError(f"generated clips have 1 channel, the model reads "
                          f"{model_cfg.in_channels}; drop --in-channels or give --data")
    clips, labels = actions.action_clips(n, model_cfg.frames, model_cfg.frame_size, seed, split)
    return Examples({"clips": torch.as_tensor(clips), "labels": torch.as_tensor(labels)},
                    classes=list(actions.ACTION_CLASSES))


# -- loading user data -------------------------------------------------------------------------

def load_npz(path: str | Path, model_cfg: SegmenterConfig, classes: list[str] | None = None,
             labelled: bool = True) -> Examples:
    """Clips and their frame labels from a .npz file, checked.

    ``classes``: a trained model's classes, which the labels must be among (None: the file's
    own sorted labels). Not ``labelled`` (predict): only the clips are read, into Examples
    that hold no "labels".
    """
    arrays, p = npz_arrays(path, NPZ_KEYS if labelled else NPZ_KEYS[:1], "segment")
    if arrays["clips"].size == 0:
        raise RnnkitError(f"{p}: clips is empty (shape {arrays['clips'].shape}); give at least "
                          "one clip of one frame")
    clips = pixels(arrays["clips"], 5, "clips", p)
    if clips.shape[2] != model_cfg.in_channels:
        raise RnnkitError(f"{p}: clips have {clips.shape[2]} channels, the model reads "
                          f"{model_cfg.in_channels}; set --in-channels to match")
    if not labelled:
        return Examples({"clips": clips}, classes=list(classes or []))
    names = frame_labels(arrays["labels"], clips.shape[:2], p)
    classes = list(classes) if classes is not None else sorted_classes(arrays["labels"])
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names.ravel().tolist()) - index.keys())
    if unknown:
        raise RnnkitError(f"{p}: labels {unknown[:5]} are not among the model's classes "
                          f"{classes}")
    ids = torch.tensor([[index[x] for x in row] for row in names.tolist()], dtype=torch.long)
    return Examples({"clips": clips, "labels": ids}, classes=classes)


def frame_labels(labels: np.ndarray, clip_shape: tuple[int, int], p: Path) -> np.ndarray:
    """The labels as an (N, T) array of strings, checked against the clips' (N, T)."""
    if labels.ndim != 2:
        raise RnnkitError(f"{p}: labels must have shape (N, T), one label per frame, got "
                          f"{labels.shape}")
    if labels.dtype.kind not in "iubUS":
        raise RnnkitError(f"{p}: labels must be ints or strings, got {labels.dtype}")
    n, t = clip_shape
    if labels.shape[0] != n:
        raise RnnkitError(f"{p}: {n} clips but {labels.shape[0]} rows of labels; give one row "
                          "per clip")
    if labels.shape[1] != t:
        raise RnnkitError(f"{p}: clips have {t} frames but labels have {labels.shape[1]} per "
                          "clip; give one label per frame")
    names = labels.astype(str)
    bad = next((x for x in names.ravel().tolist() if not x or x != "".join(x.split())), None)
    if bad is not None:
        raise RnnkitError(f"{p}: label {bad!r} is empty or holds whitespace; predict writes "
                          "a clip's labels separated by spaces")
    return names


def sorted_classes(labels: np.ndarray) -> list[str]:
    """The distinct labels in order (numeric for ints, so 2 comes before 10)."""
    return [str(x) for x in np.unique(labels).tolist()]


# -- the data a run trains on -----------------------------------------------------------------

class SegmentData:
    """Train batches by step, and the fixed val and test sets."""

    def __init__(self, model_cfg: SegmenterConfig, cfg):
        self.model_cfg, self.cfg = model_cfg, cfg
        self.loaded = load_npz(cfg.data, model_cfg) if cfg.data else None
        if self.loaded is None:
            # seeds of their own, past any step's: val and test never repeat a train batch
            n = cfg.eval_examples or 1000
            self.val = generate(model_cfg, n, (cfg.seed + 1) * SEED_STRIDE - 1, "test")
            self.test = generate(model_cfg, n, (cfg.seed + 1) * SEED_STRIDE - 2, "test")
            self.classes = self.val.classes
            return
        split = split_indices(len(self.loaded), cfg.val_frac, cfg.test_frac, cfg.seed)
        self.val, self.test = self.loaded.subset(split["val"]), self.loaded.subset(split["test"])
        self.batches = PairBatches(split["train"], cfg.batch_size, cfg.seed)
        self.classes = self.loaded.classes

    def train_batch(self, step: int) -> dict[str, Tensor]:
        if self.loaded is not None:
            return self.loaded.take(torch.as_tensor(self.batches.batch(step)))
        return generate(self.model_cfg, self.cfg.batch_size,
                        self.cfg.seed * SEED_STRIDE + step, "train").tensors


# -- loss, predictions, metrics ----------------------------------------------------------------

def loss_of(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross entropy of (B, T, K) logits against (B, T) labels, over every frame."""
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                             reduction=reduction)


@torch.no_grad()
def logits_of(model, examples: Examples, batch_size: int) -> Iterator[tuple[dict, Tensor]]:
    """(batch, its (B, T, K) logits) for consecutive batches, the model in eval mode (its
    mode is restored once every batch was read)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in chunks(examples, batch_size):
            yield batch, model(batch["clips"].to(device)).cpu()
    finally:
        model.train(was_training)


def label_frames(model, examples: Examples, batch_size: int = 64) -> list[list[str]]:
    """Every clip's predicted labels, one class name per frame."""
    return [[examples.classes[i] for i in row] for _, logits in
            logits_of(model, examples, batch_size) for row in logits.argmax(-1).tolist()]


def evaluate(model, examples: Examples, batch_size: int = 64) -> dict:
    """{"loss" (per frame), "examples", "frames", "accuracy", "edit", "f1_10", "f1_25",
    "f1_50"}."""
    total, preds = 0.0, []
    for batch, logits in logits_of(model, examples, batch_size):
        total += loss_of(logits, batch["labels"], "sum").item()
        preds += logits.argmax(-1).tolist()
    labels = examples.tensors["labels"]
    names = examples.classes
    report = {"loss": total / labels.numel(), "examples": len(examples),
              "frames": labels.numel()}
    return {**report, **segment_scores([[names[i] for i in row] for row in preds],
                                       [[names[i] for i in row] for row in labels.tolist()])}


def segment_scores(preds: list[list[str]], golds: list[list[str]]) -> dict:
    """Frame accuracy (a fraction), edit score and F1@{10,25,50} (percentages)."""
    return {"accuracy": metrics.tag_accuracy(preds, golds),
            "edit": metrics.edit_score(preds, golds),
            **{name: metrics.segment_f1(preds, golds, iou) for name, iou in IOUS.items()}}


# -- the task ---------------------------------------------------------------------------------

class SegmentTask:
    """--task segment: generated or .npz clips, ``Segmenter`` models, per-frame metrics."""

    name = "segment"
    kind = "rnnkit.segment"
    help = "a label for every frame of moving-digit clips (or a .npz): action segmentation"
    models = {"rnn": (Segmenter, SegmenterConfig)}
    meta_keys = ("classes",)
    units = "examples"
    data_parallel = False
    compilable = True
    tokenized = False
    predicts_files = False

    def check(self, cfg) -> None:
        pass

    def prepare(self, model_cfg, cfg, out: Path, meta: dict | None, ranks) -> SegmentRun:
        data = SegmentData(model_cfg, cfg)
        if meta and meta.get("classes", []) != data.classes:
            raise RnnkitError(f"{cfg.data} now has other classes than the checkpoint's; resume "
                              "with the original file or start a new run")
        model_cfg.num_classes = len(data.classes)
        return SegmentRun(cfg, data)

    def vocab(self, meta: dict, model) -> list[str]:
        classes = meta["classes"]
        if len(classes) != model.config.num_classes:
            raise RnnkitError(f"the checkpoint names {len(classes)} classes but its model has "
                              f"{model.config.num_classes}; it is damaged")
        return classes

    def evaluate(self, model, classes, meta: dict, cfg, request: EvalRequest) -> dict:
        """The metrics on a fresh generated test set (or val), on the run's own .npz (its
        test split by default) or on all of another .npz file."""
        if request.data is not None:
            examples = load_npz(request.data, model.config, classes)
            split = request.split or "all"
            if split != "all":
                examples = examples.subset(split_indices(len(examples), cfg.val_frac,
                                                         cfg.test_frac, cfg.seed)[split])
        else:
            split = request.split or "test"
            sets = SegmentData(model.config, cfg)
            examples = sets.val if split == "val" else sets.test
        if not len(examples):
            raise RnnkitError(f"the {split} split is empty; use --split all or another --data")
        report = evaluate(model, examples, request.batch_size or cfg.batch_size)
        return {"task": self.name, "split": split, **report}

    def predict(self, model, classes, meta: dict, cfg, request: PredictRequest) -> list[str]:
        """One line per clip: its frames' labels separated by spaces."""
        if request.input is not None:
            examples = load_npz(request.input, model.config, classes, labelled=False)
        else:
            if request.count < 1:
                raise RnnkitError(f"--count must be >= 1, got {request.count}")
            seed = cfg.seed + 7  # a set apart from the run's val and test
            examples = generate(model.config, request.count, seed, "test")
        examples.classes = classes  # the model's own class ids
        return [" ".join(row) for row in label_frames(model, examples, request.batch_size)]


class SegmentRun:
    """The segment task's data for one run: train batches by step, the val set."""

    carries_state = False

    def __init__(self, cfg, data: SegmentData):
        self.cfg, self.data = cfg, data

    def meta(self) -> dict:
        return {"classes": self.data.classes}

    def batch(self, step: int):
        return self.data.train_batch(step), True

    def count(self, batch: dict) -> int:
        return batch["clips"].shape[0]

    def forward(self, model, batch: dict, state, eps: float):
        return model(batch["clips"]), None

    def loss(self, logits: Tensor, batch: dict) -> Tensor:
        return loss_of(logits, batch["labels"])

    def evaluate(self, model, ranks) -> dict:
        report = evaluate(model, self.data.val, self.cfg.batch_size)
        return {f"val_{k}": v for k, v in report.items() if isinstance(v, float)}

    def write_sample(self, model, folder: Path, step: int) -> None:
        """"pred <labels> | truth <labels>" for the first val clips."""
        rows = self.data.val.subset(range(min(SAMPLE_ROWS, len(self.data.val))))
        preds = label_frames(model, rows)
        truths = [[rows.classes[i] for i in row] for row in rows.tensors["labels"].tolist()]
        lines = [f"pred {' '.join(p)} | truth {' '.join(t)}" for p, t in zip(preds, truths)]
        atomic_write_bytes(sample_path(folder, step), "\n".join(lines).encode() + b"\n")


SEGMENT = SegmentTask()
