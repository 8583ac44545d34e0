"""Data-parallel training: real processes (torchrun, gloo on 127.0.0.1), tiny models.

Run as a script under torchrun, this file is the worker: ``rnnkit train`` with test hooks (a
signal, a hang or a non-finite loss on one rank; each rank's final weights written out).

Tolerance: a 2-rank run and a 1-process run with the same global batch see the same batches,
so their losses differ only by float summation order (measured: under 3e-7 nats over 30
steps); TOL allows 1e-4 nats per record.
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TOL = 1e-4  # nats, per metrics record
HAMLET = Path(__file__).resolve().parent / "fixtures" / "hamlet_excerpt.txt"
LAUNCH_TIMEOUT = 120  # seconds a torchrun launch may take before the test fails


def settings(out, data=HAMLET, **flags) -> list[str]:
    base = {"data": data, "out": out, "rnn-size": 32, "embed-size": 8, "num-layers": 1,
            "dropout": 0.0, "seq-length": 16, "batch-size": 4, "max-steps": 30,
            "eval-every": 10, "log-every": 5, "sample-length": 20, "seed": 7,
            "val-frac": 0.1, "test-frac": 0.05, "learning-rate": 1e-2, "warmup-steps": 5,
            **flags}
    words = []
    for k, v in base.items():
        if v is not None:  # None drops a base setting
            words += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    return words


def torchrun(args: list[str], hooks: dict | None = None, dump=None, env=None,
             nproc: int = 2, shutdown=None) -> subprocess.CompletedProcess:
    """This file as the worker of ``nproc`` processes; ``args`` go to ``rnnkit train``.
    A rank whose interpreter shuts down (atexit) leaves a file rank{r} in ``shutdown``."""
    spec = {"args": args, "hooks": hooks or {}, "dump": str(dump) if dump else None,
            "shutdown": str(shutdown) if shutdown else None}
    # after a failure, torchrun waits 5 s (not 30) for the other processes to exit
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "--shutdown-timeout=5", __file__, json.dumps(spec)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                          env={**os.environ, **launch_env(), **(env or {})})


def launch_env() -> dict:
    return {"OMP_NUM_THREADS": "1"}  # one thread per rank


def cli(args: list[str], **kwargs):
    return subprocess.run([sys.executable, "-m", "rnnkit", "train", *args], capture_output=True,
                          text=True, timeout=LAUNCH_TIMEOUT, env={**os.environ, **launch_env()},
                          **kwargs)


def train_here(args: list[str]) -> None:
    """One process, inside the test process."""
    from rnnkit.cli import main
    assert main(["train", *args]) == 0


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir) -> list[tuple]:
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in records(run_dir)]


def weights(path) -> dict:
    from rnnkit.training.checkpoint import load_checkpoint
    return load_checkpoint(path)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_close_curves(a, b, tol=TOL) -> None:
    a, b = losses(a), losses(b)
    assert [r[0] for r in a] == [r[0] for r in b]
    for (step, train_a, val_a), (_, train_b, val_b) in zip(a, b):
        assert abs(train_a - train_b) <= tol, (step, train_a, train_b)
        assert (val_a is None) == (val_b is None)
        if val_a is not None:
            assert abs(val_a - val_b) <= tol, (step, val_a, val_b)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rnnkit: error:")]


# -- no processes: how the batches are dealt to ranks ----------------------------------------

def test_stream_shards_are_the_rows_of_the_one_process_batch():
    import numpy as np

    from rnnkit.data.batching import StreamBatches
    tokens = np.arange(8 * 40, dtype=np.int64)
    whole = StreamBatches(tokens, 8, 6)
    parts = [StreamBatches(tokens, 8, 6, rank=r, world_size=2) for r in range(2)]
    for step in (0, 1, 5, 6, 7):  # into the second epoch (6 windows each)
        x, y, reset = whole.batch(step)
        shards = [p.batch(step) for p in parts]
        assert torch.equal(torch.cat([s[0] for s in shards]), x)
        assert torch.equal(torch.cat([s[1] for s in shards]), y)
        assert all(s[2] == reset for s in shards)


def test_line_shards_together_are_the_one_process_batch_and_one_process_order_is_kept():
    import numpy as np

    from rnnkit.data.batching import IGNORE, LineBatches, line_spans, pad_lines
    from rnnkit.data.corpus import tokenize
    from rnnkit.data.vocab import BOS, EOS
    ids, vocab = tokenize("".join(f"{i} {'x' * (i % 7)}\n" for i in range(42)), "lines")
    args = (ids, vocab.id_of(BOS), vocab.id_of(EOS), 6, 20)

    def lines(y):
        return sorted(vocab.decode(row[row != IGNORE].tolist()) for row in y)

    whole = LineBatches(*args, seed=3)
    parts = [LineBatches(*args, seed=3, rank=r, world_size=3) for r in range(3)]
    for step in range(0, 15):  # two epochs of 7 batches, and into a third
        assert lines(whole.batch(step)[1]) == sorted(
            sum((lines(p.batch(step)[1]) for p in parts), []))
    # one process reads the shuffle it always has (randperm seeded with seed * 1000003 + epoch)
    starts, ends = line_spans(ids, vocab.id_of(EOS))
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 1)
    order = torch.randperm(42, generator=gen).numpy()
    x, y = pad_lines(ids, np.stack([starts, ends], axis=1)[order[:6]], vocab.id_of(BOS), 20)
    got = LineBatches(*args, seed=3).batch(7)  # epoch 1, batch 0
    assert torch.equal(got[0], x) and torch.equal(got[1], y)


def test_evaluation_shards_cover_every_target_once():
    import numpy as np

    from rnnkit.data.batching import IGNORE, line_eval_batches, stream_eval_batches
    from rnnkit.data.corpus import tokenize
    from rnnkit.data.vocab import BOS, EOS
    tokens = np.arange(203, dtype=np.int64)
    for world in (1, 2, 3, 5):  # 5 ranks for 4 streams: one rank has none
        ys = [y for r in range(world) for _, y in stream_eval_batches(tokens, 4, 10, r, world)]
        kept = torch.cat([y.flatten() for y in ys])
        assert sorted(kept[kept != IGNORE].tolist()) == list(range(1, 203))
    ids, vocab = tokenize("".join(f"{i}\n" for i in range(10)), "lines")
    for world in (1, 2, 3):
        ys = [y for r in range(world)
              for _, y in line_eval_batches(ids, vocab.id_of(BOS), vocab.id_of(EOS), 3, r, world)]
        assert sum(int((y != IGNORE).sum()) for y in ys) == len(ids)


def test_launch_flags_rebuild_the_same_command():
    from rnnkit.cli import build_parser
    from rnnkit.cli.args import as_flags, overrides
    words = ["train", "--out", "r", "--rnn-size", "48", "--no-feedback", "--data=-odd.txt",
             "--learning-rate", "0.003", "--ss-argmax", "--dist-timeout", "7.5"]
    args = build_parser().parse_args(words)
    again = build_parser().parse_args(["train", "--out", "r", *as_flags(args)])
    assert overrides(again) == overrides(args)
    assert overrides(args)["train"]["data"] == "-odd.txt"


def test_a_global_batch_that_does_not_split_is_refused_before_launching(tmp_path, capsys):
    from rnnkit.cli import main
    code = main(["train", *settings(tmp_path / "run", **{"batch-size": 5}), "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(error_lines(err)) == 1 and err.count("\n") == 1
    assert "--batch-size 5 does not split evenly over 2 processes" in err
    assert not (tmp_path / "run").exists()
    for bad, words in ((["--nproc", "0"], "--nproc must be >= 1"),
                       (["--task", "classify", "--nproc", "2"], "--task lm only")):
        assert main(["train", "--out", str(tmp_path / "x"), *bad]) == 2
        assert words in capsys.readouterr().err


# -- 2 processes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same run on 2 ranks (each rank's final weights dumped) and in 1 process."""
    root = tmp_path_factory.mktemp("pair")
    (root / "shutdown").mkdir()
    done = torchrun(settings(root / "two"), dump=root / "dump", shutdown=root / "shutdown")
    assert done.returncode == 0, done.stderr[-3000:]
    train_here(settings(root / "one"))
    return root


@pytest.mark.timeout(180)
def test_parameters_are_identical_on_both_ranks_after_training(pair):
    ranks = [torch.load(pair / "dump" / f"rank{r}.pt") for r in range(2)]
    assert_same_weights(ranks[0], ranks[1])
    assert_same_weights(ranks[0], weights(pair / "two" / "last.pt"))
    assert json.loads((pair / "two" / "last.json").read_text())["world_size"] == 2


@pytest.mark.timeout(180)
def test_the_ranks_end_without_the_interpreters_shutdown(pair):
    """gloo's threads can abort a process during the interpreter's shutdown (SIGABRT, a
    failed launch after a good run): the ranks skip it."""
    assert (pair / "two" / "last.pt").is_file()
    assert list((pair / "shutdown").iterdir()) == []


@pytest.mark.timeout(180)
def test_two_ranks_follow_the_one_process_loss_curve_with_the_same_global_batch(pair):
    assert_close_curves(pair / "two", pair / "one")
    two, one = weights(pair / "two" / "last.pt"), weights(pair / "one" / "last.pt")
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-4)


@pytest.mark.timeout(180)
def test_rank_zero_alone_writes_the_run_folder(pair):
    def listing(run):
        return sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert listing(pair / "two") == listing(pair / "one")  # no file of rank 1's
    assert [r["step"] for r in records(pair / "two")] == [5, 10, 15, 20, 25, 30]  # not twice


@pytest.mark.timeout(180)
def test_a_two_rank_checkpoint_resumes_in_one_process(pair, tmp_path, capsys):
    """Same global batch, same streams: extended by 10 steps in 1 process, the 2-rank run
    stays on the curve of the 1-process run extended the same way."""
    shutil.copytree(pair / "two", tmp_path / "two")
    shutil.copytree(pair / "one", tmp_path / "one")
    carried = torch.load(tmp_path / "two" / "last.pt")["trainer"]["carried"]
    assert [tuple(s.shape) for s in carried] == [(1, 4, 32)] * 2  # every rank's streams
    train_here(settings(tmp_path / "two", **{"max-steps": 40, "resume": True}))
    assert "saved by 2 process(es), now 1" in capsys.readouterr().err
    train_here(settings(tmp_path / "one", **{"max-steps": 40, "resume": True}))
    assert_close_curves(tmp_path / "two", tmp_path / "one")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """rnnkit train --nproc 2, with dropout (each rank draws its own masks)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    return out, cli([*settings(out, dropout=0.2, **{"max-steps": 20}), "--nproc", "2"])


@pytest.mark.timeout(180)
def test_cli_nproc_2_trains_and_rank_zero_reports(cli_run):
    out, done = cli_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"step 20: val loss "
                                        f"{records(out)[-1]['val_loss']:.4f} nats/char "
                                        f"({records(out)[-1]['val_bpc']:.3f} bpc); run folder "
                                        f"{out}"]
    evaluations = [line for line in done.stderr.splitlines() if line.startswith("step ")]
    assert len(evaluations) == 2  # steps 10 and 20, said once, not once per rank
    assert json.loads((out / "last.json").read_text())["world_size"] == 2


@pytest.mark.timeout(180)
def test_a_signal_to_one_rank_stops_both_and_resume_on_two_ranks_is_exact(cli_run, tmp_path):
    whole, done = cli_run
    assert done.returncode == 0
    out = tmp_path / "cut"
    args = settings(out, dropout=0.2, **{"max-steps": 20})
    (tmp_path / "shutdown").mkdir()
    cut = torchrun(args, hooks={"signal": [1, 13]}, shutdown=tmp_path / "shutdown")
    assert cut.returncode != 0
    assert list((tmp_path / "shutdown").iterdir()) == []
    stops = [line for line in error_lines(cut.stderr) if "stopped by" in line]
    assert len(stops) == 1, cut.stderr[-3000:]  # rank 0 speaks for both
    assert "stopped by a signal to another process at step 13" in stops[0]
    assert "--resume --nproc 2" in stops[0]
    assert json.loads((out / "last.json").read_text())["step"] == 13
    again = torchrun([*args, "--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert losses(out) == losses(whole)
    assert_same_weights(weights(out / "last.pt"), weights(whole / "last.pt"))


@pytest.mark.timeout(180)
def test_lines_mode_two_ranks_follow_the_one_process_curve(tmp_path):
    """Lines of different lengths: each rank holds a different number of real targets, and
    the loss must still be the global batch's mean (not the mean of the ranks' means)."""
    args = {"mode": "lines", "batch-size": 8, "seq-length": 64, "max-steps": 20}
    done = torchrun(settings(tmp_path / "two", **args))
    assert done.returncode == 0, done.stderr[-3000:]
    train_here(settings(tmp_path / "one", **args))
    assert_close_curves(tmp_path / "two", tmp_path / "one")


@pytest.mark.timeout(180)
def test_a_transformer_on_bpe_tokens_follows_the_one_process_curve(tmp_path):
    args = {"model": "gpt", "tokenizer": "bpe", "tokenizer-size": 300, "n-layer": 1,
            "n-head": 2, "n-embd": 16, "block-size": 16, "max-steps": 10, "rnn-size": None,
            "embed-size": None, "num-layers": None}
    done = torchrun(settings(tmp_path / "two", **args))
    assert done.returncode == 0, done.stderr[-3000:]
    train_here(settings(tmp_path / "one", **args))
    assert_close_curves(tmp_path / "two", tmp_path / "one")


@pytest.mark.timeout(180)
def test_a_non_finite_loss_on_one_rank_is_skipped_on_every_rank(tmp_path):
    done = torchrun(settings(tmp_path / "run", **{"max-steps": 10}), hooks={"nan": [1, 4]},
                    dump=tmp_path / "dump")
    assert done.returncode == 0, done.stderr[-3000:]
    assert records(tmp_path / "run")[-1]["skipped_steps"] == 1
    ranks = [torch.load(tmp_path / "dump" / f"rank{r}.pt") for r in range(2)]
    assert_same_weights(ranks[0], ranks[1])


@pytest.mark.timeout(180)
def test_a_hung_rank_stops_the_others_within_the_timeout(tmp_path):
    start = time.monotonic()
    done = torchrun(settings(tmp_path / "run", **{"max-steps": 1000, "dist-timeout": 3}),
                    hooks={"hang": [1, 5]})
    assert done.returncode != 0
    assert time.monotonic() - start < 60
    lost = [line for line in error_lines(done.stderr) if "lost contact" in line]
    assert lost and "--dist-timeout 3 s" in lost[0], done.stderr[-3000:]


@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks in /proc")
def test_a_killed_rank_makes_nproc_exit_with_one_clear_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "train",
         *settings(out, **{"max-steps": 100000, "eval-every": 100000}), "--nproc", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **launch_env()})
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "training never started"
            time.sleep(0.1)
        os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - killed < 30
    assert proc.returncode == 128 + signal.SIGKILL
    assert err.strip().splitlines()[-1].startswith(
        "rnnkit: error: training process rank 1 was killed by SIGKILL"), err[-3000:]


@pytest.mark.gpu
@pytest.mark.timeout(300)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_ranks_on_cuda_stay_identical_and_follow_one_process(tmp_path):
    """nccl with a GPU per rank where there are two; otherwise gloo, both ranks on one GPU."""
    backend = "nccl" if torch.cuda.device_count() >= 2 else "gloo"
    flags = {"device": "cuda", "max-steps": 20}
    done = torchrun(settings(tmp_path / "two", **flags, **{"dist-backend": backend}),
                    dump=tmp_path / "dump")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / "dump" / f"rank{r}.pt", map_location="cpu")
             for r in range(2)]
    assert_same_weights(ranks[0], ranks[1])
    train_here(settings(tmp_path / "one", **flags))
    assert_close_curves(tmp_path / "two", tmp_path / "one", tol=1e-3)  # cuDNN sums differ


def rank_pid(parent: int, rank: int) -> int:
    """The process with RANK=rank among the children of ``parent``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    raise AssertionError(f"no rank {rank} under {parent}")


# -- the worker (this file run by torchrun) ---------------------------------------------------

def worker(spec: dict) -> int:
    from rnnkit.cli import main
    from rnnkit.training import loop, update
    rank = int(os.environ["RANK"])
    hooks = {name: at for name, at in spec["hooks"].items() if at[0] == rank}
    one_step = loop.Trainer._one_step

    def step_with_hooks(self):
        if "nan" in hooks and self.run.step + 1 == hooks["nan"][1]:
            poison_next_loss(update)
        rates = one_step(self)
        if "signal" in hooks and self.run.step == hooks["signal"][1]:
            signal.raise_signal(signal.SIGINT)
        if "hang" in hooks and self.run.step == hooks["hang"][1]:
            # torchrun SIGTERMs the others when one fails, and SIGKILLs them 30 s later; this
            # rank hangs where a SIGTERM still ends it, to keep the test short
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(600)
        return rates

    loop.Trainer._one_step = step_with_hooks
    if spec["shutdown"]:
        atexit.register(lambda: (Path(spec["shutdown"]) / f"rank{rank}").write_text(""))
    if spec["dump"]:
        dump_weights_after_fit(loop, Path(spec["dump"]), rank)
    return main(["train", *spec["args"]])


def poison_next_loss(update) -> None:
    share = update.share_of_mean

    def poisoned(total, count):
        update.share_of_mean = share
        return share(total * float("nan"), count)
    update.share_of_mean = poisoned


def dump_weights_after_fit(loop, folder: Path, rank: int) -> None:
    fit = loop.Trainer.fit

    def fit_and_dump(self):
        result = fit(self)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / f"rank{rank}.pt")
        return result
    loop.Trainer.fit = fit_and_dump


if __name__ == "__main__":
    sys.exit(worker(json.loads(sys.argv[1])))
