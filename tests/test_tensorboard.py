"""--tensorboard: event files read back as TensorBoard reads them; a resume writes no step
twice; the package missing is one error line. And the progress bar of a clock-limited run."""

import io
import json
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rnnkit
from rnnkit.training.loop import Trainer
from rnnkit.training.progress import StepBar, steps_by_end

from .test_cli import error_of


def tiny(data, **train):
    settings = {"data": str(data), "seq_length": 16, "batch_size": 4, "max_steps": 20,
                "eval_every": 10, "log_every": 5, "sample_length": 30, "seed": 7,
                "learning_rate": 1e-2, "warmup_steps": 5, "tensorboard": "", **train}
    return rnnkit.configs(model={"hidden_size": 32, "embed_size": 8, "num_layers": 1},
                          train=settings)


def events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def steps(acc, tag) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


def records(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_event_files_hold_every_record_and_sample(tmp_path, hamlet):
    out = tmp_path / "run"
    rnnkit.train(*tiny(hamlet), out=out, log=lambda msg: None)
    acc = events(out / "tensorboard")  # the flag alone: RUN_DIR/tensorboard
    recs = records(out)
    for tag in ("train/loss", "train/lr", "train/teacher_forcing_prob", "train/chars_per_sec"):
        assert steps(acc, tag) == [5, 10, 15, 20], tag
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(
        [r["train_loss"] for r in recs], rel=1e-6)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx(
        [r["lr"] for r in recs], rel=1e-6)
    evaluated = [r for r in recs if "val_loss" in r]
    for key in ("val_loss", "val_bpc", "val_ppl"):
        tag = "val/" + key[4:]
        assert steps(acc, tag) == [10, 20], tag
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx(
            [r[key] for r in evaluated], rel=1e-6)
    texts = acc.Tensors("sample/text_summary")
    assert [t.step for t in texts] == [10, 20]
    sample = (out / "samples" / "step_000020.txt").read_text()
    assert sample and sample in texts[1].tensor_proto.string_val[0].decode()
    assert not list(out.glob("step_*"))  # no --keep-checkpoints: no step files


def test_a_resumed_run_writes_no_step_twice(tmp_path, hamlet, monkeypatch):
    out, board = tmp_path / "run", tmp_path / "board"  # a folder of one's own: --tensorboard DIR
    one_step = Trainer._one_step

    def crash_at_17(self):  # a crash: records up to 15 written, last.pt at step 10
        if self.run.step == 17:
            raise RuntimeError("power cut")
        return one_step(self)

    monkeypatch.setattr(Trainer, "_one_step", crash_at_17)
    with pytest.raises(RuntimeError, match="power cut"):
        rnnkit.train(*tiny(hamlet, tensorboard=str(board)), out=out, log=lambda msg: None)
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    assert steps(events(board), "train/loss") == [5, 10, 15]
    rnnkit.train(*tiny(hamlet, tensorboard=str(board), max_steps=25), out=out, resume=True,
                 log=lambda msg: None)
    acc = events(board)
    assert steps(acc, "train/loss") == [5, 10, 15, 20, 25]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(
        [r["train_loss"] for r in records(out)], rel=1e-6)  # the resumed run's values
    assert steps(acc, "val/loss") == [10, 20, 25]


def test_without_the_package_it_is_one_error_line_and_no_folder(tmp_path, hamlet, capsys,
                                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    out = tmp_path / "run"
    err = error_of(capsys, ["train", "--data", str(hamlet), "--out", str(out), "--preset",
                            "tiny", "--max-steps", "5", "--tensorboard"])
    assert err == ("rnnkit: error: --tensorboard needs the tensorboard package: pip install "
                   "tensorboard")
    assert not out.exists()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_clock_limited_run_shows_the_steps_its_clock_allows(monkeypatch):
    # 10 steps in the first 2 s of a 10 s run: 50 steps in all, unless max_steps comes first
    assert steps_by_end(10, 2.0, (0, 0.0), 3000, 10.0) == 50
    assert steps_by_end(10, 2.0, (0, 0.0), 30, 10.0) == 30
    assert steps_by_end(110, 3.0, (100, 1.0), 3000, 10.0) == 145  # a resumed run's own pace
    assert steps_by_end(0, 0.0, (0, 0.0), 3000, 10.0) == 3000  # no pace yet
    assert steps_by_end(10, 2.0, (0, 0.0), 3000, 0.0) == 3000  # no clock limit
    monkeypatch.setattr(sys, "stderr", Terminal())
    _, cfg = rnnkit.configs(train={"max_steps": 3000, "max_time": 10.0})
    bar = StepBar(cfg, 0, 0.0, show=True)
    bar.advance(10, 2.0)
    assert (bar.n, bar.total) == (10, 50)
    bar.advance(5, 2.5)  # rolled back
    assert (bar.n, bar.total) == (5, 20)  # 2 steps a second now, 7.5 s left
    bar.close()
    assert "5/20" in sys.stderr.getvalue()
