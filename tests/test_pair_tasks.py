"""The pair tasks end to end: TSV reading and its errors, batching, learning, resume, the CLI."""

import json
import random
import signal

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data.pairs import PairBatches, read_lines, split_indices
from rnnkit.errors import RnnkitError
from rnnkit.tasks import TASKS
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.loop import Interrupted, Trainer

from .test_training import assert_same_weights


def write_pairs(path, n, make, seed=0):
    rng = random.Random(seed)
    path.write_text("".join("\t".join(make(rng)) + "\n" for _ in range(n)))
    return path


def reversal(rng):
    s = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 6)))
    return s, s[::-1]


def has_two_a(rng):  # classify: does the text hold at least two a's?
    s = "".join(rng.choice("abc") for _ in range(rng.randint(3, 9)))
    return s, "yes" if s.count("a") >= 2 else "no"


def vowels(rng):  # tag, chars format: mark vowels; needs no context at all
    s = "".join(rng.choice("bcdae ") for _ in range(rng.randint(2, 9))).strip() or "a"
    return s, " ".join("V" if c in "ae" else "O" for c in s)


SMALL = {"embed_size": 16, "hidden_size": 48, "num_layers": 1}


def run(task, data, out, steps=150, model=None, resume=False, **train):
    settings = {"task": task, "data": str(data), "batch_size": 32, "max_steps": steps,
                "eval_every": 50, "log_every": 10, "seed": 3, "threads": 1, **train}
    model_cfg, cfg = rnnkit.configs(model={**SMALL, **(model or {})}, train=settings)
    return rnnkit.train(model_cfg, cfg, out=out, resume=resume, log=lambda msg: None)


# -- data ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,words", [
    ("abc\tcba\nno tab here\n", "line 2: expected 2 tab-separated fields"),
    ("abc\tcba\na\tb\tc\n", "line 2: expected 2 tab-separated fields .*found 3"),
    ("\tcba\n", "line 1: the input field is empty"),
    ("\n\n", "holds no examples"),
])
def test_malformed_tsv_names_the_line(tmp_path, content, words):
    p = tmp_path / "bad.tsv"
    p.write_text(content)
    with pytest.raises(RnnkitError, match=words):
        read_lines(p)


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes(b"abc\tcba\ncaf\xe9\tx\n")
    with pytest.raises(RnnkitError, match="line 2 is not valid UTF-8"):
        read_lines(p)


def test_crlf_bom_and_blank_lines_are_tolerated(tmp_path):
    p = tmp_path / "windows.tsv"
    p.write_bytes(b"\xef\xbb\xbfab\tba\r\n\r\ncd\tdc\r\n")
    assert read_lines(p) == [(1, "ab", "ba"), (3, "cd", "dc")]


def test_tag_format_is_detected_and_mismatches_are_refused():
    chars = [(1, "ab c", "X O O Y")]
    tokens = [(1, "the cat sat", "D N V")]
    assert TASKS["tag"].parse(chars)[1] == "chars"
    examples, fmt = TASKS["tag"].parse(tokens)
    assert fmt == "tokens" and examples[0].source == ["the", "cat", "sat"]
    with pytest.raises(RnnkitError, match="line 1: 2 labels"):
        TASKS["tag"].parse([(1, "the cat sat", "D N")])
    with pytest.raises(RnnkitError, match="one label per token"):
        TASKS["tag"].parse([(1, "the cat sat", "D N")], "tokens")


def test_split_is_seeded_and_disjoint():
    a, b = split_indices(1000, 0.1, 0.05, 7), split_indices(1000, 0.1, 0.05, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    parts = [set(a[k].tolist()) for k in ("train", "val", "test")]
    assert [len(p) for p in parts] == [850, 100, 50] and set.union(*parts) == set(range(1000))
    assert not split_indices(1000, 0.1, 0.05, 8)["val"].tolist() == a["val"].tolist()


def test_batches_cover_every_example_once_per_epoch_and_depend_only_on_the_step():
    indices = np.arange(10, 30)
    batches = PairBatches(indices, 4, seed=1)
    epoch = [i for step in range(5) for i in batches.batch(step)]
    assert sorted(epoch) == list(range(10, 30))
    later = PairBatches(indices, 4, seed=1)  # a fresh object (a resumed run) at step 7
    assert later.batch(7) == batches.batch(7)
    assert batches.batch(5) != batches.batch(0)  # the next epoch is reshuffled


# -- learning -----------------------------------------------------------------------------------

def test_seq2seq_learns_to_reverse(tmp_path):
    data = write_pairs(tmp_path / "rev.tsv", 3000, reversal)
    final = run("seq2seq", data, tmp_path / "run")
    assert final["val_exact_match"] >= 0.9 and final["val_cer"] < 0.05, final


def test_classifier_learns_to_count(tmp_path):
    data = write_pairs(tmp_path / "cls.tsv", 3000, has_two_a)
    final = run("classify", data, tmp_path / "run", steps=200, model={"pool": "mean"})
    assert final["val_accuracy"] >= 0.9 and final["val_macro_f1"] >= 0.85, final


def test_tagger_learns_and_reports_span_f1(tmp_path):
    data = write_pairs(tmp_path / "tag.tsv", 2000, vowels)
    final = run("tag", data, tmp_path / "run", steps=100)
    assert final["val_accuracy"] >= 0.98 and final["val_span_f1"] >= 0.95, final


def test_seq2seq_trains_with_scheduled_sampling(tmp_path):
    data = write_pairs(tmp_path / "rev.tsv", 3000, reversal)
    final = run("seq2seq", data, tmp_path / "run", scheduled_sampling="linear", ss_c=0.002,
                ss_min=0.5)
    assert records(tmp_path / "run")[-1]["teacher_forcing_prob"] < 1.0
    assert final["val_exact_match"] >= 0.8, final


@pytest.mark.parametrize("extra", [{}, {"scheduled_sampling": "constant", "ss_k": 0.7}])
def test_interrupted_pair_run_resumes_exactly(tmp_path, monkeypatch, extra):
    data = write_pairs(tmp_path / "rev.tsv", 500, reversal)
    settings = {"steps": 40, "eval_every": 20, "model": {"dropout": 0.2}, **extra}
    run("seq2seq", data, tmp_path / "whole", **settings)
    one_step = Trainer._one_step

    def interrupt_at_27(self):  # Ctrl-C between two evaluations
        rates = one_step(self)
        if self.run.step == 27:
            signal.raise_signal(signal.SIGINT)
        return rates

    monkeypatch.setattr(Trainer, "_one_step", interrupt_at_27)
    with pytest.raises(Interrupted):
        run("seq2seq", data, tmp_path / "cut", **settings)
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    run("seq2seq", data, tmp_path / "cut", resume=True, **settings)
    assert_same_weights(load_checkpoint(tmp_path / "whole" / "last.pt")["model"],
                        load_checkpoint(tmp_path / "cut" / "last.pt")["model"])
    assert records(tmp_path / "whole") == records(tmp_path / "cut")


def records(run_dir) -> list[dict]:
    """metrics.jsonl without the timings, which differ between runs."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed" and not k.endswith("_per_sec")}
            for r in rows]


# -- the command line (the contract other tools rely on) ----------------------------------------

@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    makers = {"seq2seq": reversal, "classify": has_two_a, "tag": vowels}
    runs = {}
    for task, make in makers.items():
        data = write_pairs(root / f"{task}.tsv", 600, make)
        out = root / task
        argv = ["train", "--task", task, "--data", str(data), "--out", str(out),
                "--max-steps", "20", "--eval-every", "10", "--rnn-size", "24",
                "--num-layers", "1", "--batch-size", "16", "--threads", "1"]
        assert main(argv) == 0
        runs[task] = (data, out)
    return runs


@pytest.mark.parametrize("task,keys", [("seq2seq", {"exact_match", "cer", "bleu"}),
                                       ("classify", {"accuracy", "macro_f1"}),
                                       ("tag", {"accuracy", "span_f1"})])
def test_eval_json_holds_the_task_metrics(cli_runs, capsys, task, keys):
    data, out = cli_runs[task]
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert keys <= set(report) and report["split"] == "val" and report["examples"] == 30
    for k in keys - {"cer"}:  # a character error rate may exceed 1 (long wrong outputs)
        assert 0 <= report[k] <= (100 if k == "bleu" else 1), (k, report[k])
    assert report.get("cer", 0) >= 0


def test_eval_on_another_file_uses_all_of_it(cli_runs, capsys, tmp_path):
    other = write_pairs(tmp_path / "other.tsv", 50, reversal, seed=9)
    capsys.readouterr()
    assert main(["eval", str(cli_runs["seq2seq"][1]), "--data", str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "all" and report["examples"] == 50


@pytest.mark.parametrize("task", ["seq2seq", "classify", "tag"])
def test_predict_writes_one_line_per_input_line(cli_runs, capsys, tmp_path, task):
    data, out = cli_runs[task]
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n\nbca\nab\n")
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(inputs)]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 5 and lines[-1] == "" and lines[1] == ""  # the empty input stays empty
    if task == "tag":
        assert [len(x.split()) for x in lines[:4]] == [3, 0, 3, 2]


def test_predict_beam_n_best_and_output_file(cli_runs, tmp_path):
    _, out = cli_runs["seq2seq"]
    inputs, result = tmp_path / "in.txt", tmp_path / "out.txt"
    inputs.write_text("abc\tcba\nfed\tdef\n")  # a TSV: the first field is the input
    assert main(["predict", str(out), "--input", str(inputs), "--beam", "4", "--n-best", "3",
                 "--output", str(result)]) == 0
    rows = result.read_text().splitlines()
    assert len(rows) == 2 and all(len(r.split("\t")) == 3 for r in rows)


@pytest.mark.parametrize("argv_tail,words", [
    (["--beam", "2", "--n-best", "3"], "n-best"),
    (["--beam", "3", "--temperature", "0.5"], "exclude each other"),
    (["--temperature", "0"], "temperature must be > 0"),
])
def test_bad_decoding_flags_get_one_line(cli_runs, capsys, tmp_path, argv_tail, words):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n")
    code = main(["predict", str(cli_runs["seq2seq"][1]), "--input", str(inputs), *argv_tail])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("rnnkit: error:") and "\n" not in err and words in err


def test_language_model_commands_refuse_pair_models_and_back(cli_runs, capsys, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("abc\n")
    assert main(["sample", str(cli_runs["tag"][1])]) == 2
    assert "use rnnkit predict" in capsys.readouterr().err


def test_resume_refuses_a_changed_task_setting(cli_runs, capsys):
    data, out = cli_runs["classify"]
    code = main(["train", "--task", "classify", "--data", str(data), "--out", str(out),
                 "--resume", "--pool", "max"])
    assert code == 2 and "--resume cannot change pool" in capsys.readouterr().err


def test_missing_data_for_a_pair_task_is_one_clear_error(tmp_path, capsys):
    code = main(["train", "--task", "tag", "--out", str(tmp_path / "run")])
    assert code == 2 and "needs --data FILE.tsv" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing behind


def test_pair_checkpoint_rebuilds_its_model(cli_runs):
    model, vocabs, meta = rnnkit.load(cli_runs["tag"][1])
    assert meta["kind"] == "rnnkit.tag" and meta["tag_format"] == "chars"
    assert set(vocabs) == {"source", "target"} and vocabs["target"].itos == ["O", "V"]
    assert isinstance(model, torch.nn.Module) and not model.training


def test_eval_with_a_beam_decodes_with_it(cli_runs, capsys):
    data, out = cli_runs["seq2seq"]
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data), "--json", "--beam", "3"]) == 0
    beam = json.loads(capsys.readouterr().out)
    model, vocabs, meta = rnnkit.load(out)
    examples, _ = TASKS["seq2seq"].parse(read_lines(data))
    val = [examples[i] for i in split_indices(len(examples), 0.05, 0.05, 1337)["val"]]
    from rnnkit import metrics, tasks
    settings = tasks.DecodeSettings(beam=3, max_length=meta["max_length"])
    preds = [h[0] for h in TASKS["seq2seq"].predict_examples(model, vocabs, val, settings)]
    assert beam["exact_match"] == metrics.exact_match(preds, ["".join(e.target) for e in val])
