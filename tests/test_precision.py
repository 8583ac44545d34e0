"""fp16 with a gradient scaler, pinned-memory batches and --compile, on the CPU.

CPU float16 autocast has no fused LSTM kernel, so ``--precision fp16`` is refused on the CPU.
The scaler's logic (overflow handling, its state in last.pt, exact resume) is still tested
here: ``allow_cpu_fp16`` lifts the refusal and the model uses GRU cells, which run under CPU
fp16 autocast (the output layer in float16, so its gradients overflow like a GPU's would).
"""

import json
import math
import os
import random
import signal

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data.batching import to_device
from rnnkit.errors import RnnkitError
from rnnkit.training import loop, precision
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.distributed import Ranks
from rnnkit.training.loop import Interrupted, Trainer
from rnnkit.training.precision import Update
from rnnkit.training.update import apply_update

from .test_training import assert_same_weights, losses, weights


def small(data, model=None, **train):
    settings = {"data": str(data), "seq_length": 16, "batch_size": 4, "max_steps": 30,
                "eval_every": 10, "log_every": 5, "sample_length": 20, "seed": 7,
                "val_frac": 0.1, "test_frac": 0.05, "learning_rate": 1e-2, "warmup_steps": 5,
                **train}
    return rnnkit.configs(model={"cell": "gru", "hidden_size": 32, "embed_size": 8,
                                 "num_layers": 2, "dropout": 0.1, **(model or {})},
                          train=settings)


@pytest.fixture
def allow_cpu_fp16(monkeypatch):
    monkeypatch.setattr(loop, "check_precision", lambda precision, device: None)


def use_scaler(monkeypatch, **options):
    """Train with a scaler made with these GradScaler options (on the CPU)."""
    def make(precision, device):
        return torch.amp.GradScaler(device.type, enabled=precision == "fp16", **options)
    monkeypatch.setattr(loop, "make_scaler", make)


def interrupted_then_resumed(monkeypatch, configs, out, at):
    one_step = Trainer._one_step

    def interrupt(self):  # Ctrl-C between two evaluations
        rates = one_step(self)
        if self.run.step == at:
            signal.raise_signal(signal.SIGINT)
        return rates

    monkeypatch.setattr(Trainer, "_one_step", interrupt)
    with pytest.raises(Interrupted, match="--resume"):
        rnnkit.train(*configs(), out=out)
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    return rnnkit.train(*configs(), out=out, resume=True)


def error_of(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("rnnkit: error: ") and "\n" not in err, err
    return err


# -- fp16 and the gradient scaler ---------------------------------------------------------------

def test_fp16_on_the_cpu_is_refused_with_one_line_naming_the_alternatives(tmp_path, capsys,
                                                                          hamlet):
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(tmp_path / "run"),
                            "--preset", "tiny", "--device", "cpu", "--precision", "fp16"])
    assert "--precision fp16 needs --device cuda" in err
    assert "--precision bf16 or fp32" in err
    assert not (tmp_path / "run").exists()


def test_fp16_trains_and_its_scaler_state_resumes_exactly(tmp_path, hamlet, monkeypatch,
                                                          allow_cpu_fp16):
    # a scale that grows every 3 good steps until the float16 output layer overflows: the
    # scale and growth tracker at the interruption differ from their start values, so a
    # resume that lost them would skip other steps than the uninterrupted run
    use_scaler(monkeypatch, init_scale=2.0 ** 20, growth_interval=3)
    whole = rnnkit.train(*small(hamlet, precision="fp16"), out=tmp_path / "whole")
    assert whole["overflow_steps"] > 0 and whole["skipped_steps"] == 0
    saved = load_checkpoint(tmp_path / "whole" / "last.pt")["trainer"]["scaler"]
    assert saved["scale"] != 2.0 ** 20 and saved["growth_interval"] == 3

    interrupted_then_resumed(monkeypatch, lambda: small(hamlet, precision="fp16"),
                             tmp_path / "cut", at=17)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")["trainer"]
    assert resumed["scaler"] == saved
    assert resumed["optimizer"]["state"][0]["step"] == 30 - whole["overflow_steps"]


def test_overflow_steps_are_skipped_without_counting_toward_rollback(tmp_path, hamlet,
                                                                     monkeypatch,
                                                                     allow_cpu_fp16):
    # 2**40 x the loss gradient overflows float16 for many steps in a row, far more than
    # --max-bad-steps 2: each halves the scale, none is a bad step
    use_scaler(monkeypatch, init_scale=2.0 ** 40)
    messages = []
    final = rnnkit.train(*small(hamlet, precision="fp16", max_bad_steps=2),
                         out=tmp_path / "run", log=messages.append)
    overflows = final["overflow_steps"]
    assert overflows > 2 and final["skipped_steps"] == 0 and final["step"] == 30
    assert not any("rolled back" in m for m in messages)
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    trainer = payload["trainer"]
    assert trainer["rollbacks"] == 0 and trainer["lr_scale"] == 1.0
    assert trainer["overflows"] == overflows
    assert trainer["scaler"]["scale"] == 2.0 ** (40 - overflows)  # halved once per overflow
    assert trainer["optimizer"]["state"][0]["step"] == 30 - overflows  # those updates skipped
    assert all(torch.isfinite(w).all() for w in payload["model"].values())
    recs = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
            if r]
    assert all(math.isfinite(r["train_loss"]) for r in recs)
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]  # and it learns after them


@pytest.mark.parametrize("task", ["classify", "tag", "activity"])
def test_the_pair_and_vision_trainers_use_the_scaler(tmp_path, monkeypatch, allow_cpu_fp16,
                                                     task):
    use_scaler(monkeypatch, init_scale=2.0 ** 40)  # overflows at first, whatever the task
    train = {"task": task, "precision": "fp16", "max_steps": 20, "eval_every": 20,
             "batch_size": 16, "eval_examples": 32, "seed": 1, "max_bad_steps": 2}
    if task == "activity":
        pytest.importorskip("sklearn")  # the generated clips are of sklearn's digits
        model = {"cell": "gru", "frames": 4, "frame_size": 16, "hidden_size": 16}
    else:
        model = {"cell": "gru", "hidden_size": 16, "embed_size": 8}
        train["data"] = str(pair_file(tmp_path / "pairs.tsv", task))
    messages = []
    final = rnnkit.train(*rnnkit.configs(model=model, train=train), out=tmp_path / "run",
                         log=messages.append)
    assert final["overflow_steps"] > 2 and final["skipped_steps"] == 0
    assert not any("rolled back" in m for m in messages)
    trainer = load_checkpoint(tmp_path / "run" / "last.pt")["trainer"]
    assert trainer["scaler"]["scale"] == 2.0 ** (40 - final["overflow_steps"])


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


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def scaled_step(model, scaler, loss_factor=1.0, grad_hook=None):
    optimizer = torch.optim.AdamW(model.parameters())
    hook = model.weight.register_hook(grad_hook) if grad_hook is not None else None
    loss = model(torch.ones(4, 3)).pow(2).mean() * loss_factor
    outcome = apply_update(model, optimizer, loss, 1.0, scaler=scaler)
    if hook is not None:
        hook.remove()
    return outcome


def test_an_overflowing_gradient_halves_the_scale_and_leaves_the_weights():
    model, scaler = tiny_model(), torch.amp.GradScaler("cpu", init_scale=4.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    outcome = scaled_step(model, scaler, grad_hook=lambda g: g * math.inf)
    assert outcome is Update.OVERFLOW and not outcome
    assert scaler.get_scale() == 2.0
    assert_same_weights(model.state_dict(), before)
    assert scaled_step(model, scaler) is Update.APPLIED
    assert not torch.equal(model.weight, before["weight"])


def test_an_overflow_below_scale_one_and_a_nonfinite_loss_are_bad_steps():
    model, scaler = tiny_model(), torch.amp.GradScaler("cpu", init_scale=0.5)
    # scaling down further cannot help: the gradients themselves are not finite
    assert scaled_step(model, scaler, grad_hook=lambda g: g * math.inf) is Update.BAD
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    assert scaled_step(model, scaler, loss_factor=math.nan) is Update.BAD
    assert scaler.get_scale() == 4.0  # a bad loss never reaches the scaler


def test_a_disabled_scaler_leaves_the_fp32_update_as_it_was():
    plain, scaled = tiny_model(), tiny_model()
    assert scaled_step(plain, None) is Update.APPLIED
    assert scaled_step(scaled, torch.amp.GradScaler("cpu", enabled=False)) is Update.APPLIED
    assert_same_weights(plain.state_dict(), scaled.state_dict())


def test_auto_never_picks_fp16():
    assert not precision.make_scaler("auto", torch.device("cpu")).is_enabled()
    assert not precision.make_scaler("bf16", torch.device("cpu")).is_enabled()
    assert precision.make_scaler("fp16", torch.device("cpu")).is_enabled()


# -- pinned memory ------------------------------------------------------------------------------

def test_to_device_is_a_no_op_on_the_cpu(monkeypatch):
    def no_pinning(self):
        raise AssertionError("pin_memory called for a CPU device")

    monkeypatch.setattr(torch.Tensor, "pin_memory", no_pinning)
    x = torch.arange(6).view(2, 3)
    cpu = torch.device("cpu")
    assert to_device(x, cpu) is x
    batch = {"src": x, "src_len": torch.tensor([3, 2])}
    moved = to_device(batch, cpu)
    assert moved.keys() == batch.keys() and all(moved[k] is batch[k] for k in batch)


# -- --compile ----------------------------------------------------------------------------------

def test_compile_is_a_checked_setting_saved_with_the_run():
    _, cfg = rnnkit.configs(train={"compile": True})
    assert cfg.compile is True and rnnkit.configs()[1].compile is False
    with pytest.raises(RnnkitError, match="compile must be true or false"):
        rnnkit.configs(train={"compile": "yes"})
    for task in ("seq2seq", "caption"):
        with pytest.raises(RnnkitError, match=f"compile does not apply to --task {task}"):
            rnnkit.configs(train={"task": task, "compile": True})


def test_compile_with_several_processes_is_refused_with_one_line(tmp_path, capsys, hamlet):
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(tmp_path / "run"),
                            "--preset", "tiny", "--device", "cpu", "--nproc", "2",
                            "--compile"])
    assert "--compile does not combine with multi-process training" in err
    assert not (tmp_path / "run").exists()


def test_compile_with_a_process_group_is_refused_on_every_rank(tmp_path, hamlet, monkeypatch):
    monkeypatch.setattr(Ranks, "current", classmethod(lambda cls: cls(0, 2)))
    with pytest.raises(RnnkitError, match="--compile does not combine") as info:
        Trainer(*small(hamlet, compile=True), out=tmp_path / "run")
    assert getattr(info.value, "same_on_every_rank", False)  # rank 0 alone reports it
    assert not (tmp_path / "run").exists()


def compile_eagerly(monkeypatch):
    """torch.compile's graph capture, with a backend that runs the captured graphs as they
    are: the wiring, in seconds. Returns (the models compiled, the graphs captured)."""
    calls, graphs = [], []

    def backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    def compiled(model):
        calls.append(model)
        return torch.compile(model, backend=backend, dynamic=True)

    torch._dynamo.reset()  # no graphs cached by an earlier test
    monkeypatch.setattr(loop, "compile_model", compiled)
    return calls, graphs


@pytest.mark.parametrize("mode", ["stream", "lines"])
def test_compile_trains_the_compiled_forward_and_saves_the_plain_module(tmp_path, hamlet,
                                                                        monkeypatch, mode):
    calls, graphs = compile_eagerly(monkeypatch)
    trainer = Trainer(*small(hamlet, mode=mode, compile=True), out=tmp_path / "compiled")
    assert calls == [trainer.model] and trainer.train_model is not trainer.model
    trainer.fit()
    assert graphs  # the training forward ran through the compiled module
    rnnkit.train(*small(hamlet, mode=mode), out=tmp_path / "plain")
    config = json.loads((tmp_path / "compiled" / "config.json").read_text())
    assert config["train"]["compile"] is True
    # the eager backend runs the captured ops as they are: the same numbers as no compile
    assert losses(tmp_path / "compiled") == losses(tmp_path / "plain")
    assert_same_weights(weights(tmp_path / "compiled"), weights(tmp_path / "plain"))
    assert not any("_orig_mod" in k for k in weights(tmp_path / "compiled", "best.pt"))


def test_a_compiled_run_resumes_exactly(tmp_path, hamlet, monkeypatch):
    graphs = compile_eagerly(monkeypatch)[1]
    rnnkit.train(*small(hamlet, compile=True), out=tmp_path / "whole")
    assert graphs
    interrupted_then_resumed(monkeypatch, lambda: small(hamlet, compile=True),
                             tmp_path / "cut", at=17)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))


def test_a_failing_compiler_gets_one_error_line(tmp_path, capsys, hamlet, monkeypatch):
    def no_compiler(graph, example_inputs):
        raise RuntimeError("Compiler: cc not found. Please install a C++ compiler")

    monkeypatch.setattr(loop, "compile_model",
                        lambda model: torch.compile(model, backend=no_compiler))
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(tmp_path / "run"),
                            "--preset", "tiny", "--device", "cpu", "--compile"])
    assert "--compile failed" in err and "cc not found" in err and "--no-compile" in err


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RNNKIT_TEST_COMPILE"),
                    reason="inductor compiles for a minute or more on a small CPU; set "
                    "RNNKIT_TEST_COMPILE=1 to run it")
def test_inductor_compiled_training_matches_eager_closely(tmp_path, hamlet):
    # no dropout: compiled kernels draw their dropout masks from another random stream
    settings = {"model": {"dropout": 0.0}, "mode": "lines", "max_steps": 10, "eval_every": 10}
    rnnkit.train(*small(hamlet, compile=True, **settings), out=tmp_path / "compiled")
    rnnkit.train(*small(hamlet, **settings), out=tmp_path / "plain")
    compiled, plain = losses(tmp_path / "compiled"), losses(tmp_path / "plain")
    assert [r[0] for r in compiled] == [r[0] for r in plain]
    for (_, a, va), (_, b, vb) in zip(compiled, plain):
        assert a == pytest.approx(b, rel=1e-3)
        assert (va is None and vb is None) or va == pytest.approx(vb, rel=1e-3)
    assert not any("_orig_mod" in k for k in weights(tmp_path / "compiled"))
