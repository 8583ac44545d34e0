"""The speech model: the conv front end's lengths, padding, direction, and CTC's loss."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models.transcriber import (
    Transcriber,
    TranscriberConfig,
    conv_lengths,
    spec_augment,
)


def model(**kw) -> Transcriber:
    torch.manual_seed(0)
    cfg = TranscriberConfig(vocab_size=6, feature_size=20, conv_channels=4, hidden_size=8,
                            num_layers=2, dropout=0.0, **kw)
    return Transcriber(cfg).eval()


@pytest.mark.parametrize("frames", range(1, 70))
def test_front_end_gives_the_lengths_it_reports(frames):
    m = model()
    x = torch.randn(1, frames, 20)
    log_probs, out_lengths = m(x, torch.tensor([frames]))
    assert log_probs.shape[1] == out_lengths.item() == conv_lengths(torch.tensor(frames))
    # two stride-2 convolutions: ceil(ceil(T / 2) / 2), never zero steps for a frame
    assert out_lengths.item() == -(-(-(-frames // 2)) // 2) >= 1


@pytest.mark.parametrize("bidirectional", [True, False])
def test_a_padded_batch_computes_what_each_utterance_alone_does(bidirectional):
    m = model(bidirectional=bidirectional)
    lengths = [37, 12, 5, 64, 1]
    xs = [torch.randn(n, 20) for n in lengths]
    batch = torch.zeros(len(xs), max(lengths), 20)
    for i, x in enumerate(xs):
        batch[i, :len(x)] = x
    out, out_lengths = m(batch, torch.tensor(lengths))
    for i, x in enumerate(xs):
        alone, n = m(x[None], torch.tensor([len(x)]))
        assert out_lengths[i] == n.item()
        torch.testing.assert_close(out[i, :n.item()], alone[0], atol=1e-5, rtol=1e-5)


def test_only_the_bidirectional_model_reads_the_future():
    """A change to the last frames moves the first output step only when the recurrent
    layers read backwards too (the convolutions see one frame either side)."""
    x = torch.randn(1, 80, 20)
    later = x.clone()
    later[:, 60:] += 1.0
    lengths = torch.tensor([80])
    for bidirectional, moves in ((True, True), (False, False)):
        m = model(bidirectional=bidirectional)
        first = m(x, lengths)[0][0, 0]
        assert torch.allclose(first, m(later, lengths)[0][0, 0]) is not moves


def test_equal_parameter_counts_are_reachable():
    """The bidirectional comparison trains a unidirectional stack of about the same size."""
    bi = sum(p.numel() for p in model(bidirectional=True).parameters())
    uni = sum(p.numel() for p in model(bidirectional=False).parameters())
    assert uni < bi  # H per direction: the backward copies are what the bidirectional pays


def test_ctc_loss_learns_a_fixed_mapping():
    """The model, CTC and greedy decoding end to end: two made-up 'utterances' are learnt."""
    from rnnkit.ctc import greedy_decode
    from rnnkit.tasks.transcribe import ctc_loss
    torch.manual_seed(1)
    m = model().train()
    feats = torch.randn(2, 40, 20)
    batch = {"features": feats, "lengths": torch.tensor([40, 32]),
             "targets": torch.tensor([[1, 2, 3, 3], [5, 4, 0, 0]]),
             "target_lengths": torch.tensor([4, 2])}
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = ctc_loss(*m(batch["features"], batch["lengths"]), batch)
        loss.backward()
        opt.step()
    m.eval()
    log_probs, lengths = m(feats, batch["lengths"])
    assert greedy_decode(log_probs, lengths) == [[1, 2, 3, 3], [5, 4]]


def test_spec_augment_masks_bands_and_spans_inside_each_utterance():
    torch.manual_seed(0)
    x = torch.ones(64, 100, 80)
    lengths = torch.full((64,), 100)
    y = spec_augment(x, lengths)
    masked_bins = (y == 0).all(dim=1).sum(dim=1)  # bins zero in every frame
    masked_frames = (y == 0).all(dim=2).sum(dim=1)  # frames zero in every bin
    assert masked_bins.max() <= 30 and masked_frames.max() <= 10
    assert masked_bins.float().mean() > 5 and masked_frames.float().mean() > 1
    assert ((y == 0) | (y == 1)).all()
