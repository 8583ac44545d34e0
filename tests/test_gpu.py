"""CUDA checks (cuDNN fused path, training and sampling, fp16 and bf16 with exact resume,
pinned batches, --compile); skipped without a GPU."""

import math
import random

import pytest
import torch

import rnnkit
from rnnkit.data.batching import to_device
from rnnkit.layers import Recurrent
from rnnkit.training import loop
from rnnkit.training.checkpoint import load_checkpoint

from .test_precision import interrupted_then_resumed
from .test_training import assert_same_weights, losses, weights

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cudnn_fused_path_matches_cells_path(kind):
    torch.manual_seed(0)
    fused = Recurrent(kind, 8, 16, num_layers=2).cuda().eval()
    cells = Recurrent(kind, 8, 16, num_layers=2, impl="cells").cuda().eval()
    cells.load_state_dict(fused.state_dict())
    x = torch.randn(4, 10, 8, device="cuda")
    torch.testing.assert_close(fused(x)[0], cells(x)[0], rtol=1e-4, atol=1e-5)


def test_train_and_sample_on_cuda(tmp_path, hamlet):
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={
        "data": str(hamlet), "device": "cuda", "max_steps": 40, "precision": "auto"})
    final = rnnkit.train(model_cfg, cfg, out=tmp_path / "run")
    assert final["val_loss"] < 3.5
    text = rnnkit.sample(tmp_path / "run", prime_text="Ham", length=50, device="cuda")[0]
    assert text.startswith("Ham") and len(text) == 53


# -- fp16, pinned batches, --compile ------------------------------------------------------------

def small_cuda(data, **train):
    # no dropout: cuDNN's RNN dropout keeps its own random state inside the kernel's cache,
    # which no checkpoint holds, so exact resume needs a model without it
    settings = {"data": str(data), "device": "cuda", "seq_length": 32, "batch_size": 8,
                "max_steps": 30, "eval_every": 10, "log_every": 5, "sample_length": 20,
                "seed": 7, "val_frac": 0.1, "test_frac": 0.05, "learning_rate": 1e-2,
                "warmup_steps": 5, **train}
    return rnnkit.configs(model={"hidden_size": 64, "embed_size": 16, "num_layers": 2},
                          train=settings)


@pytest.fixture
def deterministic(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_fp16_and_bf16_runs_resume_exactly_on_cuda(tmp_path, hamlet, monkeypatch, deterministic,
                                                    precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    if precision == "fp16":
        # a scale high enough to overflow float16 at once, growing again every 3 good steps:
        # the scaler's state at the interruption matters, and resume must restore it
        monkeypatch.setattr(loop, "make_scaler", lambda p, d: torch.amp.GradScaler(
            d.type, init_scale=2.0 ** 26, growth_interval=3, enabled=p == "fp16"))
    configs = lambda: small_cuda(hamlet, precision=precision)  # noqa: E731
    whole = rnnkit.train(*configs(), out=tmp_path / "whole")
    interrupted_then_resumed(monkeypatch, configs, tmp_path / "cut", at=17)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))
    assert math.isfinite(whole["val_loss"]) and whole["skipped_steps"] == 0
    trainer = load_checkpoint(tmp_path / "cut" / "last.pt")["trainer"]
    if precision == "fp16":
        assert whole["overflow_steps"] > 0
        assert trainer["scaler"] == load_checkpoint(tmp_path / "whole" / "last.pt")[
            "trainer"]["scaler"]
    else:
        assert "scaler" not in trainer and "overflow_steps" not in whole


def pair_file(path, task):
    """classify: does the text hold two a's? tag: mark each a (one label per character)."""
    rng = random.Random(0)
    rows = ["".join(rng.choice("abc") for _ in range(rng.randint(3, 9))) for _ in range(300)]
    if task == "classify":
        lines = [f"{s}\t{'yes' if s.count('a') >= 2 else 'no'}" for s in rows]
    else:
        lines = [f"{s}\t{' '.join('A' if c == 'a' else 'O' for c in s)}" for s in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("task", ["classify", "tag", "activity"])
def test_fp16_trains_the_pair_and_vision_tasks_on_cuda(tmp_path, task):
    train = {"task": task, "device": "cuda", "precision": "fp16", "max_steps": 20,
             "eval_every": 20, "batch_size": 16, "eval_examples": 64, "seed": 1}
    if task == "activity":
        pytest.importorskip("sklearn")  # the generated clips are of sklearn's digits
        model = {"frames": 6, "frame_size": 24}
    else:
        model = {"hidden_size": 32}
        train["data"] = str(pair_file(tmp_path / "pairs.tsv", task))
    final = rnnkit.train(*rnnkit.configs(model=model, train=train), out=tmp_path / "run",
                         log=lambda msg: None)
    assert math.isfinite(final["val_loss"]) and final["skipped_steps"] == 0
    assert "overflow_steps" in final
    assert "scaler" in load_checkpoint(tmp_path / "run" / "last.pt")["trainer"]


def test_cpu_batches_reach_the_gpu_through_pinned_memory(monkeypatch):
    pinned, real = [], torch.Tensor.pin_memory

    def spy(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        pinned.append(out)
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    x, lengths = torch.arange(12).view(3, 4), torch.tensor([4, 3, 2])
    batch = to_device({"src": x, "src_len": lengths}, torch.device("cuda"))
    torch.cuda.synchronize()
    assert len(pinned) == 2 and all(p.is_pinned() for p in pinned)
    assert batch["src"].is_cuda and torch.equal(batch["src"].cpu(), x)
    assert torch.equal(batch["src_len"].cpu(), lengths)
    on_gpu = batch["src"]
    assert to_device(on_gpu, torch.device("cuda")) is on_gpu and len(pinned) == 2


def test_compiled_training_on_cuda_matches_eager_and_saves_the_plain_module(tmp_path, hamlet):
    settings = {"mode": "lines", "max_steps": 10, "eval_every": 10}
    compiled = rnnkit.train(*small_cuda(hamlet, compile=True, **settings),
                            out=tmp_path / "compiled")
    plain = rnnkit.train(*small_cuda(hamlet, **settings), out=tmp_path / "plain")
    assert compiled["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-2)
    assert compiled["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-2)
    saved = weights(tmp_path / "compiled")
    assert not any("_orig_mod" in k for k in saved) and saved.keys() == weights(
        tmp_path / "plain").keys()
