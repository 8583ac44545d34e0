"""What each vision task computes: its data, training forward pass, loss, predictions, metrics.

    activity  clips (B, T, C, H, W) -> a class; metrics accuracy, macro_f1
    caption   an image (B, C, H, W) -> a caption in words; metric exact_match (greedy)
    frames    T_in frames -> the next T_out frames; metrics mse, ssim (free-running)

Without --data the examples are generated (data/vision.py): training batches are drawn fresh
for every step from (seed, step), so data is unlimited and a resumed run reads the same
batches; val and test are fixed sets drawn from digit images that training never sees. With
--data FILE.npz the arrays are checked, split with a seeded shuffle and batched like the pair
tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import metrics
from ..data import vision
from ..data.batching import IGNORE, to_device
from ..data.pairs import BOS, EOS, PairBatches, TokenVocab, pad, split_indices
from ..decoding import beam_search, greedy_decode
from ..errors import RnnkitError
from ..fileio import atomic_write, atomic_write_bytes, npz_arrays
from ..images import save_gif, save_strip
from ..models import (
    ActivityConfig,
    ActivityRecognizer,
    Captioner,
    CaptionerConfig,
    FramePredictor,
    FramePredictorConfig,
)
from ..scheduled_sampling import IMPLEMENTATIONS
from .base import EvalRequest, PredictRequest, sample_path, slices

NPZ_KEYS = {"activity": ("clips", "labels"), "caption": ("images", "captions"),
            "frames": ("sequences",)}
SEED_STRIDE = 1_000_003  # distinct generator seeds per (run seed, step)


def caption_vocab() -> TokenVocab:
    return TokenVocab((*vision.NUMBER_WORDS, "then"))


@dataclass
class Examples:
    """A set of examples as tensors, plus the words that go with them."""
    tensors: dict[str, Tensor]
    classes: list[str] = field(default_factory=list)  # activity: the class of each label id
    captions: list[str] = field(default_factory=list)  # caption: each example's caption

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def take(self, index) -> dict[str, Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    def subset(self, index) -> Examples:
        index = torch.as_tensor(index, dtype=torch.long)
        return Examples(self.take(index), self.classes,
                        [self.captions[i] for i in index.tolist()] if self.captions else [])


def generate(task: str, model_cfg, n: int, seed: int, split: str) -> Examples:
    """n generated examples of ``task`` in the geometry the model config describes."""
    if task == "activity":
        clips, labels = vision.activity_clips(n, frames=model_cfg.frames,
                                              size=model_cfg.frame_size, seed=seed, split=split,
                                              digit_size=max(model_cfg.frame_size // 2, 4))
        return Examples({"clips": torch.as_tensor(clips), "label": torch.as_tensor(labels)},
                        classes=list(vision.ACTIVITY_CLASSES))
    if task == "caption":
        images, captions = vision.caption_images(n, seed=seed, split=split,
                                                 max_digits=model_cfg.max_digits)
        return caption_examples(torch.as_tensor(images), captions)
    c = model_cfg
    # digits at Moving MNIST's scale: 28 pixels in a 64-pixel frame
    seqs = vision.moving_digits(n, frames=c.input_frames + c.output_frames, size=c.frame_size,
                                digits=c.digits, digit_size=max(c.frame_size * 28 // 64, 4),
                                seed=seed, split=split)
    return frame_examples(torch.as_tensor(seqs), c.input_frames)


def caption_examples(images: Tensor, captions: list[str]) -> Examples:
    vocab = caption_vocab()
    words = [vocab.encode(c.split()) for c in captions]
    bos, eos = vocab.id_of(BOS), vocab.id_of(EOS)
    tokens_in = pad([[bos] + w for w in words], 0)[0]
    tokens_out = pad([w + [eos] for w in words], IGNORE)[0]
    return Examples({"images": images, "tokens_in": tokens_in, "tokens_out": tokens_out},
                    captions=list(captions))


def frame_examples(seqs: Tensor, input_frames: int) -> Examples:
    return Examples({"inputs": seqs[:, :input_frames], "targets": seqs[:, input_frames:]})


# -- loading user data -------------------------------------------------------------------------

def load_npz(path: str | Path, task: str, model_cfg) -> Examples:
    """Examples from a .npz file, checked: names the missing key or the bad shape and the fix."""
    arrays, p = npz_arrays(path, NPZ_KEYS[task], task)
    return checked_examples(arrays, task, model_cfg, p)


def pixels(a: np.ndarray, ndim: int, what: str, p: Path) -> Tensor:
    """uint8 (0-255) or float (0-1) pixels, with the channel axis added when it is missing."""
    if a.ndim == ndim - 1:
        a = a[..., None, :, :]
    if a.ndim != ndim or a.shape[0] == 0:
        shape = "(N, T, C, H, W)" if ndim == 5 else "(N, C, H, W)"
        raise RnnkitError(f"{p}: {what} must have shape {shape}, got {a.shape}")
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 255.0)
    if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all() or (
            a.min() < 0 or a.max() > 1):
        raise RnnkitError(f"{p}: {what} must be uint8 or floats in [0, 1] (got {a.dtype}, "
                          "or values outside the range); rescale them first")
    return torch.from_numpy(a.astype(np.float32))


def checked_examples(arrays: dict, task: str, model_cfg, p: Path) -> Examples:
    if task == "frames":
        seqs = pixels(arrays["sequences"], 5, "sequences", p)
        need = model_cfg.input_frames + model_cfg.output_frames
        if seqs.shape[1] != need or seqs.shape[-1] != model_cfg.frame_size:
            raise RnnkitError(f"{p}: sequences have {seqs.shape[1]} frames of "
                              f"{tuple(seqs.shape[-2:])}; the model reads {need} frames of "
                              f"{model_cfg.frame_size}x{model_cfg.frame_size} (set "
                              "--input-frames, --output-frames and --frame-size to match)")
        return frame_examples(seqs, model_cfg.input_frames)
    first, second = NPZ_KEYS[task]
    data = pixels(arrays[first], 5 if task == "activity" else 4, first, p)
    answers = [str(x) for x in arrays[second].tolist()]
    if len(answers) != len(data):
        raise RnnkitError(f"{p}: {len(data)} {first} but {len(answers)} {second}; give one "
                          "per example")
    if task == "caption":
        return caption_examples(data, answers)
    names = sorted(set(answers))
    label = torch.tensor([names.index(a) for a in answers])
    return Examples({"clips": data, "label": label}, classes=names)


# -- the data a run trains on -----------------------------------------------------------------

class VisionData:
    """Train batches by step, and the fixed val and test sets."""

    def __init__(self, task: str, model_cfg, data: str | None, batch_size: int, seed: int,
                 eval_examples: int, val_frac: float, test_frac: float):
        self.task, self.model_cfg, self.batch_size, self.seed = task, model_cfg, batch_size, seed
        self.loaded = load_npz(data, task, model_cfg) if data else None
        n_eval = eval_examples or 1000
        if self.loaded is None:
            # seeds of their own, past any step's: val and test never repeat a train batch
            self.val = generate(task, model_cfg, n_eval, (seed + 1) * SEED_STRIDE - 1, "test")
            self.test = generate(task, model_cfg, n_eval, (seed + 1) * SEED_STRIDE - 2, "test")
            self.classes = self.val.classes
            return
        split = split_indices(len(self.loaded), val_frac, test_frac, seed)
        self.val, self.test = self.loaded.subset(split["val"]), self.loaded.subset(split["test"])
        self.batches = PairBatches(split["train"], batch_size, seed)
        self.classes = self.loaded.classes

    def train_batch(self, step: int) -> dict[str, Tensor]:
        if self.loaded is not None:
            return self.loaded.take(torch.as_tensor(self.batches.batch(step)))
        return generate(self.task, self.model_cfg, self.batch_size,
                        self.seed * SEED_STRIDE + step, "train").tensors


# -- forward, loss, predictions, metrics -------------------------------------------------------

def loss_of(model, task: str, batch: dict, eps: float = 1.0, ss=None) -> Tensor:
    """The training loss: cross entropy (activity, caption words) or per-pixel binary cross
    entropy (frames). eps < 1 feeds the decoder or forecaster some of its own outputs."""
    if task == "activity":
        return torch.nn.functional.cross_entropy(model(batch["clips"]).float(), batch["label"])
    if task == "frames":
        logits = model(batch["inputs"], batch["targets"], eps)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(),
                                                                    batch["targets"])
    state = model.encode(batch["images"])
    forward = IMPLEMENTATIONS[ss.ss_impl] if ss is not None else IMPLEMENTATIONS["parallel"]
    logits = forward(model.decode, batch["tokens_in"], state, eps,
                     ss.ss_argmax if ss else False, ss.ss_skip if ss else 1)[0]
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1),
                                             batch["tokens_out"].flatten(), ignore_index=IGNORE)


def chunks(examples: Examples, size: int):
    for part in slices(len(examples), size):
        yield examples.take(part)


@torch.no_grad()
def predict(model, task: str, examples: Examples, batch_size: int = 64, beam: int = 1,
            max_length: int = 16) -> list:
    """activity: class names; caption: caption strings; frames: (N, T_out, C, H, W) frames."""
    model.eval()
    device = next(model.parameters()).device
    out: list = []
    for batch in chunks(examples, batch_size):
        batch = to_device(batch, device)
        if task == "activity":
            out += [examples.classes[i] for i in model(batch["clips"]).argmax(-1).tolist()]
        elif task == "caption":
            out += write_captions(model, batch["images"], beam, max_length)
        else:
            # a diverged model's NaN frames are drawn black rather than crashing the writer
            out.append(torch.sigmoid(model(batch["inputs"]).float()).nan_to_num(0.0).cpu())
    return torch.cat(out) if task == "frames" else out


def write_captions(model, images: Tensor, beam: int, max_length: int) -> list[str]:
    vocab = caption_vocab()
    bos, eos, rows = vocab.id_of(BOS), vocab.id_of(EOS), images.shape[0]
    state = model.encode(images)
    if beam > 1:
        found = beam_search(model.step, model.reorder_state, state, rows, bos, eos, beam,
                            max_length, device=images.device)
        ids = [hyps[0][0] for hyps in found]
    else:
        ids = greedy_decode(model.step, state, rows, bos, eos, max_length, device=images.device)
    return [" ".join(vocab.decode(row)) for row in ids]


@torch.no_grad()
def evaluate(model, task: str, examples: Examples, batch_size: int = 64, beam: int = 1) -> dict:
    """{"loss", "examples", and the task's metrics}: activity accuracy and macro_f1; caption
    exact_match; frames mse and ssim of free-running forecasts (and the per-frame mse)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        losses = [loss_of(model, task, to_device(b, device)).item() * len(next(iter(b.values())))
                  for b in chunks(examples, batch_size)]
        report = {"loss": sum(losses) / len(examples), "examples": len(examples)}
        preds = predict(model, task, examples, batch_size, beam)
        report.update(task_metrics(task, examples, preds))
    finally:
        model.train(was_training)
    return report


def task_metrics(task: str, examples: Examples, preds) -> dict:
    if task == "activity":
        golds = [examples.classes[i] for i in examples.tensors["label"].tolist()]
        r = metrics.classification_report(preds, golds, examples.classes)
        return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "labels": r["labels"],
                "confusion": r["confusion"]}
    if task == "caption":
        return {"exact_match": metrics.exact_match(preds, examples.captions)}
    truth = examples.tensors["targets"]
    per_frame = ((preds - truth) ** 2).mean(dim=(0, 2, 3, 4))
    return {"mse": float(per_frame.mean()), "ssim": float(metrics.ssim(preds, truth)),
            "mse_per_frame": [round(float(x), 6) for x in per_frame]}


# -- the three tasks --------------------------------------------------------------------------

SAMPLE_ROWS = 8  # val examples whose outputs are written at each evaluation


class VisionTask:
    """One vision task; ``generate``, ``VisionData``, ``loss_of``, ``predict`` and
    ``evaluate`` above do the work for its name."""

    meta_keys = ("classes",)
    units = "examples"
    data_parallel = False
    tokenized = False

    def __init__(self, name: str, model_classes: tuple[type, type], help: str,
                 compilable: bool = True, predicts_files: bool = False):
        self.name, self.help, self.kind = name, help, f"rnnkit.{name}"
        self.models = {"rnn": model_classes}
        self.compilable, self.predicts_files = compilable, predicts_files

    def check(self, cfg) -> None:
        pass

    def prepare(self, model_cfg, cfg, out: Path, meta: dict | None, ranks) -> VisionRun:
        data = VisionData(self.name, model_cfg, cfg.data, cfg.batch_size, cfg.seed,
                          cfg.eval_examples, cfg.val_frac, cfg.test_frac)
        if meta and meta.get("classes", []) != data.classes:
            raise RnnkitError(f"{cfg.data} now has other classes than the checkpoint's; resume "
                              "with the original file or start a new run")
        fill_sizes(self.name, model_cfg, data)
        return VisionRun(self.name, cfg, data)

    def vocab(self, meta: dict, model) -> list[str]:
        return meta["classes"]

    def evaluate(self, model, classes, meta: dict, cfg, request: EvalRequest) -> dict:
        """The metrics on a fresh generated test set (or val), on the run's own .npz (its
        test split by default) or on all of another .npz file."""
        rows = request.batch_size or cfg.batch_size
        if request.data is not None:
            examples = load_npz(request.data, self.name, model.config)
            split = request.split or "all"
            if split != "all":
                examples = examples.subset(split_indices(len(examples), cfg.val_frac,
                                                         cfg.test_frac, cfg.seed)[split])
        else:
            split = request.split or "test"
            sets = VisionData(self.name, model.config, cfg.data, rows, cfg.seed,
                              cfg.eval_examples, cfg.val_frac, cfg.test_frac)
            examples = sets.val if split == "val" else sets.test
        if not len(examples):
            raise RnnkitError(f"the {split} split is empty; use --split all or another --data")
        report = evaluate(model, self.name, examples, rows, request.beam)
        return {"task": self.name, "split": split, **report}

    def predict(self, model, classes, meta: dict, cfg, request: PredictRequest):
        """Class names or captions, one line each; forecast frames as a ``FrameForecasts``."""
        if request.input is not None:
            examples = load_npz(request.input, self.name, model.config)
            examples.classes = classes  # the model's own class ids
        else:
            if request.count < 1:
                raise RnnkitError(f"--count must be >= 1, got {request.count}")
            seed = cfg.seed + 7  # a set apart from the run's val and test
            examples = generate(self.name, model.config, request.count, seed, "test")
        preds = predict(model, self.name, examples, request.batch_size,
                        request.settings.beam)
        return FrameForecasts(examples, preds) if self.predicts_files else preds


def fill_sizes(task: str, model_cfg, data: VisionData) -> None:
    if task == "activity":
        model_cfg.num_classes = len(data.classes)
    elif task == "caption":
        model_cfg.vocab_size = len(caption_vocab())


class FrameForecasts:
    """Forecast frames, written into a folder as strip_NNN.png (input | truth | prediction),
    sequence_NNN.gif and predictions.npz."""

    def __init__(self, examples: Examples, preds: Tensor):
        self.examples, self.preds = examples, preds

    def __len__(self) -> int:
        return len(self.preds)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        inputs, truth = self.examples.tensors["inputs"], self.examples.tensors["targets"]
        for i, pred in enumerate(self.preds):
            save_strip([("input", inputs[i]), ("truth", truth[i]), ("prediction", pred)],
                       out / f"strip_{i:03d}.png")
            save_gif([truth[i], pred], out / f"sequence_{i:03d}.gif")
        frames = (self.preds.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        atomic_write(out / "predictions.npz", lambda f: np.savez_compressed(f, frames=frames))


class VisionRun:
    """A vision task's data for one run: train batches by step, the val set."""

    carries_state = False

    def __init__(self, task: str, cfg, data: VisionData):
        self.task, self.cfg, self.data = task, cfg, data

    def meta(self) -> dict:
        return {"classes": self.data.classes}

    def batch(self, step: int):
        return self.data.train_batch(step), True

    def count(self, batch: dict) -> int:
        return next(iter(batch.values())).shape[0]

    def forward(self, model, batch: dict, state, eps: float):
        # the loss is the forward's output: the frames and caption losses need the batch
        return loss_of(model, self.task, batch, eps, self.cfg), None

    def loss(self, loss: Tensor, batch: dict) -> Tensor:
        return loss

    def evaluate(self, model, ranks) -> dict:
        report = evaluate(model, self.task, self.data.val, self.cfg.batch_size)
        return {f"val_{k}": v for k, v in report.items() if isinstance(v, float)}

    def write_sample(self, model, folder: Path, step: int) -> None:
        """The model's outputs on the first val examples: a PNG strip (frames) or text."""
        rows = self.data.val.subset(range(min(SAMPLE_ROWS, len(self.data.val))))
        preds = predict(model, self.task, rows)
        model.train()
        if self.task == "frames":
            t = rows.tensors
            save_strip([("input", t["inputs"][0]), ("truth", t["targets"][0]),
                        ("prediction", preds[0])], sample_path(folder, step, ".png"))
            return
        truths = rows.captions or [rows.classes[i] for i in rows.tensors["label"].tolist()]
        lines = [f"{p}\t(truth: {t})" for p, t in zip(preds, truths)]
        atomic_write_bytes(sample_path(folder, step), "\n".join(lines).encode() + b"\n")


ACTIVITY = VisionTask("activity", (ActivityRecognizer, ActivityConfig),
                      "clips of moving digits (or a .npz) -> an activity class")
# caption's training forward is the encoder and decoder, not one module call
CAPTION = VisionTask("caption", (Captioner, CaptionerConfig),
                     "an image of digits (or a .npz) -> a caption", compilable=False)
FRAMES = VisionTask("frames", (FramePredictor, FramePredictorConfig),
                    "the next frames of moving digits (or a .npz), ConvLSTM", predicts_files=True)
