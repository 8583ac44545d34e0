"""Activity recognizer, captioner and frame predictor: shapes, the parts they are built from,
decoding consistency and scheduled sampling on frames."""

import pytest
import torch

from rnnkit.models import (
    ActivityConfig,
    ActivityRecognizer,
    Captioner,
    CaptionerConfig,
    FramePredictor,
    FramePredictorConfig,
)


def test_activity_shapes_and_single_frame_baseline_reads_one_frame():
    torch.manual_seed(0)
    model = ActivityRecognizer(ActivityConfig(num_classes=5, cnn_width=4, hidden_size=8)).eval()
    clips = torch.rand(3, 6, 1, 16, 16)
    assert model(clips).shape == (3, 5)
    base = ActivityRecognizer(ActivityConfig(num_classes=5, cnn_width=4, single_frame=True))
    base.eval()
    changed = clips.clone()
    changed[:, [0, 1, 2, 4, 5]] = torch.rand(3, 5, 1, 16, 16)  # all but the middle frame
    torch.testing.assert_close(base(clips), base(changed))
    assert not torch.allclose(model(clips), model(changed))


def test_activity_features_are_the_cnn_applied_frame_by_frame():
    torch.manual_seed(0)
    model = ActivityRecognizer(ActivityConfig(num_classes=3, cnn_width=4, hidden_size=8)).eval()
    clips = torch.rand(2, 4, 1, 12, 12)
    per_frame = torch.stack([model.frames.module(clips[:, t]) for t in range(4)], dim=1)
    torch.testing.assert_close(model.frames(clips), per_frame)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_caption_decoding_step_by_step_equals_the_teacher_forced_pass(cell):
    torch.manual_seed(0)
    model = Captioner(CaptionerConfig(vocab_size=9, cnn_width=4, hidden_size=8, num_layers=2,
                                      cell=cell)).eval()
    images, tokens = torch.rand(3, 1, 16, 32), torch.tensor([[2, 5, 6], [2, 7, 7], [2, 4, 8]])
    with torch.no_grad():
        full = model(images, tokens).log_softmax(-1)
        state, steps = model.encode(images), []
        for t in range(3):
            logp, state = model.step(tokens[:, t], state)
            steps.append(logp)
        picked = Captioner.reorder_state(model.encode(images), torch.tensor([2, 0]))
        again, _ = model.step(tokens[[2, 0], 0], picked)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, steps[0][[2, 0]], atol=1e-6, rtol=1e-5)


def small_predictor(**kw):
    torch.manual_seed(0)
    cfg = FramePredictorConfig(frame_size=16, patch_size=4, hidden_size=8, num_layers=2,
                               input_frames=3, output_frames=4, **kw)
    return FramePredictor(cfg).eval()


@pytest.mark.parametrize("arch,peephole,head", [("convlstm", "none", "pixels"),
                                                ("convlstm", "full", "pixels"),
                                                ("convlstm", "none", "warp"),
                                                ("fclstm", "none", "pixels")])
def test_teacher_forced_forecast_equals_feeding_the_truth_step_by_step(arch, peephole, head):
    model = small_predictor(arch=arch, peephole=peephole, head=head)
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        parallel = model(inputs, targets, eps=1.0)
        stepwise = model(inputs, targets, eps=0.999999)  # the loop, but always the truth
        free = model(inputs)
    assert parallel.shape == (2, 4, 1, 16, 16)
    torch.testing.assert_close(parallel, stepwise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(free[:, 0], parallel[:, 0])  # the first step reads the data
    assert not torch.allclose(free[:, 1:], parallel[:, 1:])


def test_free_running_forecast_reads_its_own_frames():
    model = small_predictor()
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        free = model(inputs)
        own = torch.sigmoid(free)
        forced = model(inputs, torch.cat([own[:, :3], targets[:, 3:]], dim=1), eps=1.0)
    torch.testing.assert_close(free, forced, atol=1e-5, rtol=1e-5)


def test_patches_round_trip_and_bad_geometry_is_refused():
    model = small_predictor()
    frames = torch.rand(2, 3, 1, 16, 16)
    torch.testing.assert_close(model._frames(model._patches(frames)), frames)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        FramePredictorConfig(frame_size=30, patch_size=4)


def warp_predictor(offset, channels=1, size=5):
    """A warp-head predictor whose every kernel is one-hot at ``offset`` (row, col) from the
    centre: the head's weights zeroed, its bias a large logit at that kernel entry."""
    model = small_predictor(head="warp", warp_size=size, in_channels=channels)
    k, patch = size, model.config.patch_size
    entry = (k // 2 + offset[0]) * k + (k // 2 + offset[1])
    with torch.no_grad():
        model.head.weight.zero_()
        bias = torch.full((k * k, patch * patch), -50.0)  # pixel_shuffle's channel order
        bias[entry] = 50.0
        model.head.bias.copy_(bias.reshape(-1))
    return model


@pytest.mark.parametrize("channels", [1, 2])
def test_the_warp_head_moves_the_previous_frame_by_its_kernels(channels):
    inputs = torch.rand(2, 3, channels, 16, 16)
    with torch.no_grad():
        still = torch.sigmoid(warp_predictor((0, 0), channels)(inputs))[:, 0]
        moved = torch.sigmoid(warp_predictor((1, -2), channels)(inputs))[:, 0]
    last = inputs[:, -1]
    torch.testing.assert_close(still, last, atol=2e-4, rtol=0)  # (eps, 1 - eps) squeeze
    # each pixel takes the one a row below and two columns left: the frame moves up, right
    torch.testing.assert_close(moved[..., :-1, 2:], last[..., 1:, :-2], atol=2e-4, rtol=0)
    assert moved[..., -1, :].max() < 2e-4 and moved[..., :, :2].max() < 2e-4  # background


def test_the_warp_head_is_a_convlstm_option_with_an_odd_kernel():
    with pytest.raises(ValueError, match="head warp needs arch convlstm"):
        FramePredictorConfig(arch="fclstm", head="warp")
    with pytest.raises(ValueError, match="warp_size must be odd"):
        FramePredictorConfig(head="warp", warp_size=4)


def test_scheduled_sampling_on_frames_sends_no_gradient_through_the_fed_back_frame():
    model = small_predictor().train()
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    targets.requires_grad_(True)
    torch.manual_seed(1)
    out = model(inputs, targets, eps=0.0)  # every step reads the model's own frame
    out.sum().backward()
    assert targets.grad is None or not targets.grad.any()
    assert all(p.grad is not None for p in model.parameters())
