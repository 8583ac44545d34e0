"""VisionTrainer: the training loop of loop.py for the image and video tasks (activity,
caption, frames). The run folder is laid out as for the other tasks; samples/ holds the
model's outputs on val examples at each evaluation (a PNG strip for frames)."""

from __future__ import annotations

import torch

from .. import vision_tasks
from ..errors import RnnkitError
from ..fileio import atomic_write_bytes
from ..images import save_strip
from ..models import MODELS
from .checkpoint import TASK_OF_KIND
from .loop import TrainerBase, apply_update
from .precision import autocast, to_device

KINDS = {task: kind for kind, task in TASK_OF_KIND.items()}
SAMPLE_ROWS = 8


class VisionTrainer(TrainerBase):
    rate_unit = "examples"

    def _build(self, model_cfg, payload: dict | None) -> None:
        cfg = self.cfg
        self.kind = KINDS[cfg.task]
        self.data = vision_tasks.VisionData(cfg.task, model_cfg, cfg.data, cfg.batch_size,
                                            cfg.seed, cfg.eval_examples, cfg.val_frac,
                                            cfg.test_frac)
        if payload and payload["meta"].get("classes", []) != self.data.classes:
            raise RnnkitError(f"{cfg.data} now has other classes than the checkpoint's; resume "
                              "with the original file or start a new run")
        if cfg.task == "activity":
            model_cfg.num_classes = len(self.data.classes)
        elif cfg.task == "caption":
            model_cfg.vocab_size = len(vision_tasks.caption_vocab())
        torch.manual_seed(cfg.seed)
        self.model = MODELS[cfg.task][0](model_cfg).to(self.device)

    def _data_meta(self) -> dict:
        return {"classes": self.data.classes}

    def _train_on_batch(self, eps: float) -> tuple[float, bool]:
        batch = to_device(self.data.train_batch(self.run.step), self.device)
        self._chars += next(iter(batch.values())).shape[0]
        with autocast(self.device, self.bf16, self.scaler):
            loss = vision_tasks.loss_of(self.train_model, self.cfg.task, batch, eps, self.cfg)
        outcome = apply_update(self.model, self.optimizer, loss, self.cfg.grad_clip,
                               scaler=self.scaler)
        return loss.item(), outcome

    def _evaluate(self) -> dict:
        report = vision_tasks.evaluate(self.model, self.cfg.task, self.data.val,
                                       self.cfg.batch_size)
        return {f"val_{k}": v for k, v in report.items() if isinstance(v, float)}

    def _write_sample(self) -> None:
        """The model's outputs on the first val examples: a PNG strip (frames) or text."""
        rows = self.data.val.subset(range(min(SAMPLE_ROWS, len(self.data.val))))
        preds = vision_tasks.predict(self.model, self.cfg.task, rows)
        self.model.train()
        (self.out / "samples").mkdir(exist_ok=True)
        stem = self.out / "samples" / f"step_{self.run.step:06d}"
        if self.cfg.task == "frames":
            t = rows.tensors
            save_strip([("input", t["inputs"][0]), ("truth", t["targets"][0]),
                        ("prediction", preds[0])], stem.with_suffix(".png"))
            return
        truths = rows.captions or [rows.classes[i] for i in rows.tensors["label"].tolist()]
        lines = [f"{p}\t(truth: {t})" for p, t in zip(preds, truths)]
        atomic_write_bytes(stem.with_suffix(".txt"), "\n".join(lines).encode() + b"\n")
