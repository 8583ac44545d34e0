"""Generation for the playground: every running request is one row of a single batch.

A recurrent step reads all its weights whatever the batch, so 50 rows cost a few times one
row, not 50 times. One thread (started when work arrives, gone when there is none) steps all
running generations together: a new request joins between two steps once its prompt is read,
and a finished, stopped or timed-out one leaves.

Each row keeps its own sampling settings and random generator (``decoding.sample_rows``), so a
request running alone draws exactly what ``rnnkit sample`` draws with its seed. Beside other
requests its logits come out of a wider matrix product and may differ in the last bits, so a
long text can, rarely, part from the one it would get alone.

Each generated character becomes one record (see ``Batcher``); a job's ``push`` gets its
records, then ``END``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..data.tokenizers import TextStream
from ..data.vocab import EOS, CharVocab
from ..decoding import SamplingConfig, prompt_ids, read_prompt, sample_rows

END = object()  # a job's last item


@dataclass(eq=False)
class Job:
    """One request: what to generate, and where its records go."""

    prompt: str
    length: int
    cfg: SamplingConfig
    seed: int
    top: int
    """Alternatives per record."""
    watch: tuple[int, int, int] | None
    """(layer, state index, unit) whose activation each record carries as "act"."""
    push: Callable[[object], None]
    stop: threading.Event
    """Set when nobody listens any more: the row leaves at the next step."""
    steps: int = 0
    chars: int = 0
    ended: bool = False
    start: float = field(default_factory=time.monotonic)
    generator: torch.Generator | None = None
    text: TextStream | None = None


@dataclass
class Batch:
    """The running rows and what the next step needs: their state and last logits."""

    jobs: list[Job] = field(default_factory=list)
    state: tuple[Tensor, ...] | None = None
    logits: Tensor | None = None

    def add(self, job: Job, logits: Tensor, state: tuple[Tensor, ...]) -> None:
        if self.logits is not None:  # both joined first: a failure leaves the batch whole
            logits = torch.cat([self.logits, logits])
            state = tuple(torch.cat(pair, dim=1) for pair in zip(self.state, state))
        self.logits, self.state = logits, state
        self.jobs.append(job)

    def keep(self, rows: list[int]) -> None:
        if len(rows) == len(self.jobs):
            return
        self.jobs = [self.jobs[r] for r in rows]
        if not rows:
            self.logits = self.state = None
            return
        index = torch.tensor(rows, device=self.logits.device)
        self.logits = self.logits[index]
        self.state = tuple(s[:, index] for s in self.state)


class Batcher:
    """Steps every running generation as one batch, on one thread.

    A record is {"text", "prob", "top": [[char, prob], ...]} per generated character, plus
    "act" when the job watches a unit (its activation after reading the character; an LSTM's
    c as tanh(c)). ``prob`` is the character's probability at the sampling temperature, before
    top-k/top-p. A job ends with {"done": true, "chars", "seed", "seconds"}, or with
    {"error": ...} past ``timeout_s``; in lines mode it ends at <eos>. ``on_end()`` is called
    once per job as it leaves (the server frees its slot).
    """

    def __init__(self, model, vocab: CharVocab, timeout_s: float,
                 on_end: Callable[[], None] = lambda: None):
        self.model, self.vocab, self.timeout_s, self.on_end = model, vocab, timeout_s, on_end
        self.device = next(model.parameters()).device
        self.stop_id = vocab.id_of(EOS) if EOS in vocab.specials else None
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._thread: threading.Thread | None = None
        self._step = None

    def submit(self, job: Job) -> None:
        with self._lock:
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rnnkit-batch",
                                                daemon=True)
                self._thread.start()

    @torch.inference_mode()
    def _run(self) -> None:
        batch = Batch()
        try:
            while self._next(batch):
                pass
        except BaseException:  # a bug of ours: no request may be left waiting on this thread
            with self._lock:
                left, self._pending, self._thread = batch.jobs + self._pending, [], None
            for job in left:
                self._end(job, {"error": "generation stopped by an internal error; retry"})
            raise

    def _next(self, batch: Batch) -> bool:
        """Admit the waiting jobs and step the batch once; False when there is nothing to do
        (the thread then ends, and the next submit starts a fresh one)."""
        with self._lock:
            jobs, self._pending = self._pending, []
            if not jobs and not batch.jobs:
                self._thread = None  # under the lock: a submit from now on starts a thread
                return False
        for job in jobs:
            self._admit(batch, job)
        try:
            if batch.jobs:
                self._advance(batch)
        except Exception as e:  # noqa: BLE001  the clients get the reason, the server lives
            for job in batch.jobs:
                self._end(job, failure(e))
            batch.keep([])
        return True

    def _admit(self, batch: Batch, job: Job) -> None:
        """Read the job's prompt and add it to the batch (or end it at once)."""
        if job.stop.is_set():  # the client left while it waited
            self._end(job, None)
            return
        job.start = time.monotonic()  # its time limit counts the prompt's reading too
        try:
            if self._step is None:  # copies the weights: once, on the first request
                self._step = self.model.stepper()
            ids = torch.tensor([prompt_ids(self.vocab, job.prompt)], device=self.device)
            logits, state = read_prompt(self.model, self._step, ids)
            job.generator = torch.Generator(self.device).manual_seed(job.seed)
            job.text = TextStream(self.vocab)
            batch.add(job, logits, state)
        except Exception as e:  # noqa: BLE001  the client gets the reason, the server lives
            self._end(job, failure(e))

    def _advance(self, batch: Batch) -> None:
        """One step for every row: sample, read the tokens, send each row its record."""
        tokens = sample_rows(batch.logits, [j.cfg for j in batch.jobs],
                             [j.generator for j in batch.jobs])
        shown = Shown(batch.logits, tokens, batch.jobs, self.vocab)
        batch.logits, batch.state = self._step(tokens, batch.state)
        tokens = tokens.tolist()
        batch.keep([row for row, job in enumerate(batch.jobs)
                    if self._deliver(job, tokens[row], shown, row, batch.state)])

    def _deliver(self, job: Job, token: int, shown: Shown, row: int, state) -> bool:
        """Send ``job`` its record for ``token``; False when the job has ended."""
        job.steps += 1
        if job.stop.is_set():
            return self._end(job, None)
        if time.monotonic() - job.start > self.timeout_s:
            return self._end(job, {"error": f"timed out after {self.timeout_s:g} s and "
                                            f"{job.chars} characters; ask for fewer characters"})
        if token == self.stop_id:
            return self._end(job, self._done(job))
        if token >= len(self.vocab.specials):  # a sampled <bos> is no text (decode drops it)
            job.push(shown.record(row, job.text.feed(token), job.watch, state))
            job.chars += 1
        return job.steps < job.length or self._end(job, self._done(job))

    @staticmethod
    def _done(job: Job) -> dict:
        return {"done": True, "chars": job.chars, "seed": job.seed,
                "seconds": round(time.monotonic() - job.start, 3)}

    def _end(self, job: Job, last: dict | None) -> bool:
        if job.ended:  # a failure after some rows had ended in the same step
            return False
        job.ended = True
        try:
            if last is not None:
                job.push(last)
            job.push(END)
        finally:
            self.on_end()
        return False


def failure(e: Exception) -> dict:
    return {"error": f"generation failed: {type(e).__name__}: {e}"}


class Shown:
    """What the records show of one step, computed for all rows at once: the sampled token's
    probability at each row's temperature and each row's top alternatives."""

    def __init__(self, logits: Tensor, tokens: Tensor, jobs: list[Job], vocab: CharVocab):
        logits = logits.float()
        # shift first, as the sampler does: a tiny temperature must give 0, never nan
        temps = torch.tensor([[max(j.cfg.temperature, 1e-30)] for j in jobs],
                             device=logits.device)
        probs = ((logits - logits.max(dim=-1, keepdim=True).values) / temps).softmax(dim=-1)
        k = min(max(j.top for j in jobs), probs.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)
        self.top_p, self.top_i = top_p.tolist(), top_i.tolist()
        self.prob = probs.gather(1, tokens[:, None]).squeeze(1).tolist()
        self.tops = [j.top for j in jobs]
        self.itos = vocab.itos

    def record(self, row: int, text: str, watch, state) -> dict:
        k = self.tops[row]
        record = {"text": text, "prob": round(self.prob[row], 4),
                  "top": [[self.itos[i], round(p, 4)]
                          for i, p in zip(self.top_i[row][:k], self.top_p[row][:k])]}
        if watch is not None:
            layer, s, unit = watch
            value = float(state[s][layer, row, unit])
            record["act"] = round(value if s == 0 else math.tanh(value), 4)
        return record
