"""PairTrainer: the training loop of loop.py for the TSV pair tasks (seq2seq, classify, tag).

The run folder is laid out as for the language model (config.json, metrics.jsonl, samples/,
last.pt, best.pt); the checkpoint's meta holds the vocabularies and the tag format. Batches
are shuffled examples, a pure function of the step, so resume stays exact.
"""

from __future__ import annotations

import torch

from .. import tasks
from ..data.pairs import (
    PairBatches,
    TokenVocab,
    build_vocabs,
    collate,
    parse_examples,
    read_lines,
    split_indices,
)
from ..data.tokenizers import TextSplitter
from ..errors import RnnkitError
from ..fileio import atomic_write_bytes
from ..models import MODELS
from .checkpoint import TASK_OF_KIND
from .loop import TrainerBase, apply_update
from .precision import autocast, to_device

KINDS = {task: kind for kind, task in TASK_OF_KIND.items()}
SAMPLE_ROWS = 8  # val predictions written at each evaluation


def set_sizes(model_cfg, task: str, vocabs: dict[str, TokenVocab]) -> None:
    """Fill the model's vocabulary and label counts in from the data."""
    model_cfg.vocab_size = len(vocabs["source"])
    field = {"seq2seq": "tgt_vocab_size", "classify": "num_classes", "tag": "num_tags"}[task]
    setattr(model_cfg, field, len(vocabs["target"]))


def decode_limit(examples) -> int:
    """Longest output a seq2seq model may write: twice the longest training target, plus 10."""
    return 2 * max((len(e.target) for e in examples), default=0) + 10


class PairTrainer(TrainerBase):
    def _build(self, model_cfg, payload: dict | None) -> None:
        cfg = self.cfg
        if cfg.data is None:
            raise RnnkitError(f"--task {cfg.task} needs --data FILE.tsv (lines of "
                              "input<TAB>output)")
        self.kind = KINDS[cfg.task]
        rows = read_lines(cfg.data)
        splitter = (vocabs_from_meta(payload["meta"])["source"].splitter if payload
                    else text_splitter(cfg, rows))
        examples, self.tag_format = parse_examples(rows, cfg.task, cfg.tag_format, splitter)
        self.vocabs = build_vocabs(examples, cfg.task, splitter)
        if payload and self.vocabs != vocabs_from_meta(payload["meta"]):
            raise RnnkitError(f"{cfg.data} now has other characters or labels than the "
                              "checkpoint's; resume with the original file or start a new run")
        split = split_indices(len(examples), cfg.val_frac, cfg.test_frac, cfg.seed)
        self.examples, self.val = examples, [examples[i] for i in split["val"]]
        self.batches = PairBatches(split["train"], cfg.batch_size, cfg.seed)
        self.max_length = decode_limit(examples)
        set_sizes(model_cfg, cfg.task, self.vocabs)
        torch.manual_seed(cfg.seed)
        self.model = MODELS[cfg.task][0](model_cfg).to(self.device)

    def _data_meta(self) -> dict:
        return {"vocabs": {k: v.to_json() for k, v in self.vocabs.items()},
                "tag_format": self.tag_format, "max_length": self.max_length}

    def _train_on_batch(self, eps: float) -> tuple[float, bool]:
        part = [self.examples[i] for i in self.batches.batch(self.run.step)]
        batch = collate(part, self.vocabs, self.cfg.task)
        self._chars += int(batch["src_len"].sum())
        batch = to_device(batch, self.device)
        with autocast(self.device, self.bf16, self.scaler):
            logits = tasks.forward(self.train_model, self.cfg.task, batch, eps, self.cfg)
        loss = tasks.loss_of(logits, batch, self.cfg.task)
        outcome = apply_update(self.model, self.optimizer, loss, self.cfg.grad_clip,
                               scaler=self.scaler)
        return loss.item(), outcome

    def _evaluate(self) -> dict:
        if not self.val:
            return {}
        report = tasks.evaluate(self.model, self.cfg.task, self.vocabs, self.val,
                                self.cfg.batch_size, self.max_length, self.cfg.eval_examples)
        return {f"val_{k}": v for k, v in report.items()
                if isinstance(v, float) or k == "loss"}

    def _write_sample(self) -> None:
        """A few val inputs with the model's output and the truth, for reading progress."""
        rows = self.val[:SAMPLE_ROWS]
        if not rows:
            return
        settings = tasks.DecodeSettings(max_length=self.max_length)
        preds = tasks.predict(self.model, self.cfg.task, self.vocabs, rows, settings)
        self.model.train()
        task = self.cfg.task
        lines = [f"{tasks.source_text(e, self.tag_format)}\t{tasks.format_prediction(task, p)}"
                 f"\t(truth: {tasks.format_prediction(task, tasks.truth_of(e, task))})"
                 for e, p in zip(rows, preds)]
        (self.out / "samples").mkdir(exist_ok=True)
        path = self.out / "samples" / f"step_{self.run.step:06d}.txt"
        atomic_write_bytes(path, "\n".join(lines).encode() + b"\n")


def text_splitter(cfg, rows) -> TextSplitter | None:
    """--tokenizer for the texts of a pair file; a BPE is trained on every input text (and
    every seq2seq output), as the vocabularies are built from the whole file."""
    if cfg.tokenizer == "char":
        return None
    texts = [a for _, a, _ in rows] + ([b for _, _, b in rows] if cfg.task == "seq2seq" else [])
    return TextSplitter.build(cfg.tokenizer, cfg.tokenizer_size, texts)


def vocabs_from_meta(meta: dict) -> dict[str, TokenVocab]:
    return {k: TokenVocab.from_json(v) for k, v in meta["vocabs"].items()}
