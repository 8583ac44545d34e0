"""Batches for training and evaluation, each a pure function of the step (so resume is exact).

Stream mode (stateful truncated BPTT, as in char-rnn and word_language_model). The split is cut
into B contiguous streams, one per batch row; step s reads window s mod W of every stream:

    stream 0: a b c d | e f g h | i j ...      x = [a b c d], y = [b c d e]
    stream 1: m n o p | q r s t | u v ...      the next window continues where this one ended,
                                               so the hidden state is carried (and detached)
At the start of each epoch (window 0) the state is reset.

Lines mode: every line is a sequence <bos> c1 .. cn -> c1 .. cn <eos>; batches of B lines in a
seeded per-epoch shuffle, right-padded, with padded targets set to IGNORE so they add no loss.

Data-parallel training (N ranks): B stays the global batch and each rank gets B / N rows of
every batch: its own contiguous block of streams, or its share of the same shuffled lines.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

from ..errors import RnnkitError

IGNORE = -100  # target id that cross_entropy skips


class StreamBatches:
    """TBPTT windows over ``tokens``: ``batch(step) -> (x, y, reset)``, x and y (B, T) int64.

    Rank ``rank`` of ``world_size`` gets rows [rank*b, (rank+1)*b) of them, b = B / world_size:
    its own streams, laid out as for one process.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_length: int, rank: int = 0,
                 world_size: int = 1):
        assert batch_size % world_size == 0, "the global batch must split evenly over ranks"
        per_stream = len(tokens) // batch_size
        if per_stream < seq_length + 1:
            raise RnnkitError(
                f"the training split has {len(tokens)} characters, too few for one batch of "
                f"{batch_size} streams x {seq_length + 1}; lower --batch-size or --seq-length, "
                "or give more text")
        # (B, L) view of the memmap; rows are the streams, nothing is copied yet.
        streams = tokens[:per_stream * batch_size].reshape(batch_size, per_stream)
        b = batch_size // world_size
        self.streams = streams[rank * b:(rank + 1) * b]
        self.seq_length = seq_length
        self.windows_per_epoch = (per_stream - 1) // seq_length

    def batch(self, step: int) -> tuple[Tensor, Tensor, bool]:
        w = step % self.windows_per_epoch
        t0, t1 = w * self.seq_length, (w + 1) * self.seq_length
        chunk = torch.from_numpy(self.streams[:, t0:t1 + 1].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:], w == 0


def stream_eval_batches(tokens: np.ndarray, num_streams: int, seq_length: int, rank: int = 0,
                        world_size: int = 1):
    """Every target of ``tokens`` exactly once: B streams, padded with IGNORE targets at the end.

    Yields (x, y) windows in order; the caller carries the state from one window to the next.
    Rank ``rank`` of ``world_size`` gets its contiguous share of the streams (maybe none).
    """
    inputs = torch.from_numpy(tokens[:-1].astype(np.int64))
    targets = torch.from_numpy(tokens[1:].astype(np.int64))
    m = len(targets)
    num_streams = max(1, min(num_streams, m // seq_length))
    per = -(-m // num_streams)  # ceil
    pad = per * num_streams - m
    inputs = torch.cat([inputs, inputs.new_zeros(pad)]).view(num_streams, per)
    targets = torch.cat([targets, targets.new_full((pad,), IGNORE)]).view(num_streams, per)
    lo, hi = rank * num_streams // world_size, (rank + 1) * num_streams // world_size
    if lo == hi:
        return
    inputs, targets = inputs[lo:hi], targets[lo:hi]
    for t0 in range(0, per, seq_length):
        yield inputs[:, t0:t0 + seq_length], targets[:, t0:t0 + seq_length]


def line_spans(tokens: np.ndarray, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, <eos> included) of every line."""
    ends = np.flatnonzero(tokens == eos) + 1
    starts = np.concatenate([[0], ends[:-1]]) if len(ends) else ends
    return starts, ends


def pad_lines(tokens: np.ndarray, spans, bos: int, max_len: int) -> tuple[Tensor, Tensor]:
    """Lines -> x = <bos> + chars, y = chars + <eos>; right-padded, cut at ``max_len`` steps."""
    lengths = [min(e - s, max_len) for s, e in spans]
    x = torch.full((len(spans), max(lengths)), bos, dtype=torch.int64)
    y = torch.full_like(x, IGNORE)
    for row, ((s, _), n) in enumerate(zip(spans, lengths)):
        line = torch.from_numpy(tokens[s:s + n].astype(np.int64))
        y[row, :n] = line
        x[row, 1:n] = line[:-1]
    return x, y


class LineBatches:
    """``batch(step) -> (x, y, reset)`` over shuffled lines; reset is always True (no carry).

    A DistributedSampler deals each epoch's shuffle to the ranks: rank ``rank`` of
    ``world_size`` gets B / world_size lines of every batch, and the ranks' shares of batch i
    are the lines of the one-process batch i.
    """

    def __init__(self, tokens: np.ndarray, bos: int, eos: int, batch_size: int,
                 seq_length: int, seed: int, rank: int = 0, world_size: int = 1):
        assert batch_size % world_size == 0, "the global batch must split evenly over ranks"
        starts, ends = line_spans(tokens, eos)
        if len(starts) < batch_size:
            raise RnnkitError(
                f"the training split has {len(starts)} lines, too few for one batch of "
                f"{batch_size}; lower --batch-size or give more lines")
        self.tokens, self.spans = tokens, np.stack([starts, ends], axis=1)
        self.bos, self.batch_size, self.seq_length, self.seed = bos, batch_size, seq_length, seed
        self.windows_per_epoch = len(starts) // batch_size
        self.rows_per_rank = batch_size // world_size
        # its permutation is randperm seeded with seed + epoch; rank r takes every N-th line
        self.sampler = DistributedSampler(range(len(starts)), num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=seed * 1_000_003, drop_last=True)
        self._order_epoch, self._order = -1, None

    def batch(self, step: int) -> tuple[Tensor, Tensor, bool]:
        epoch, i = divmod(step, self.windows_per_epoch)
        if epoch != self._order_epoch:
            self.sampler.set_epoch(epoch)
            self._order = np.array(list(self.sampler), dtype=np.int64)
            self._order_epoch = epoch
        rows = self._order[i * self.rows_per_rank:(i + 1) * self.rows_per_rank]
        x, y = pad_lines(self.tokens, self.spans[rows], self.bos, self.seq_length)
        return x, y, True


def line_eval_batches(tokens: np.ndarray, bos: int, eos: int, batch_size: int, rank: int = 0,
                      world_size: int = 1):
    """All lines in order, ``batch_size`` at a time, as padded (x, y), none cut short: every
    character and stop token is scored (training cuts lines at --seq-length). Rank ``rank``
    of ``world_size`` gets every world_size-th batch."""
    starts, ends = line_spans(tokens, eos)
    spans = np.stack([starts, ends], axis=1)
    for i in range(rank * batch_size, len(spans), world_size * batch_size):
        chunk = spans[i:i + batch_size]
        yield pad_lines(tokens, chunk, bos, int((chunk[:, 1] - chunk[:, 0]).max()))


def to_device(batch, device: torch.device):
    """A batch (a tensor, or a dict of them) on ``device``. A CPU tensor bound for CUDA goes
    through pinned memory without blocking, so the copy overlaps the GPU's queued work; on the
    CPU a tensor comes back as it is."""
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
