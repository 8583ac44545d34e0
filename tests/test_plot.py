"""rnnkit plot: the loss curve and the samples page of a run folder, finished or in progress."""

from __future__ import annotations

import errno
import html
import json
import re
import shutil
import sys

import pytest

from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.plots import read_metrics, read_samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("loss.png", "samples.html", "samples.md")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real tiny run: 40 steps, evaluations (and samples) at steps 20 and 40."""
    run = tmp_path_factory.mktemp("plot") / "tiny"
    assert main(["train", "--preset", "tiny", "--out", str(run), "--max-steps", "40",
                 "--eval-every", "20", "--device", "cpu"]) == 0
    return run


def copy_run(run, dest):
    """The files plot reads (no checkpoints), so a test can change them."""
    dest.mkdir()
    shutil.copy(run / "metrics.jsonl", dest)
    shutil.copy(run / "config.json", dest)
    shutil.copytree(run / "samples", dest / "samples")
    return dest


def fake_run(folder, records, samples=None, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    for step, text in (samples or {}).items():
        (folder / "samples").mkdir(exist_ok=True)
        (folder / "samples" / f"step_{step:06d}.txt").write_text(text)
    return folder


def val_losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["val_loss"] for r in records if "val_loss" in r}


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    from PIL import Image
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100


def assert_in_order(page, pieces):
    positions = [page.index(p) for p in pieces]
    assert positions == sorted(positions), pieces


def test_plot_real_run_writes_curve_and_samples_by_step(trained_run, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    capsys.readouterr()
    assert main(["plot", str(trained_run)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(trained_run / name) for name in OUTPUTS]
    assert_png(trained_run / "loss.png")
    page = (trained_run / "samples.html").read_text()
    markdown = (trained_run / "samples.md").read_text()
    losses = val_losses(trained_run)
    assert sorted(losses) == [20, 40]
    samples = read_samples(trained_run)
    assert [s.step for s in samples] == [20, 40]
    for doc, quote in ((page, html.escape), (markdown, str)):
        headings = [f"step {s}: val loss {losses[s]:.4f}" for s in (20, 40)]
        assert_in_order(doc, headings)
        for s in samples:
            assert quote(s.text[:600]) in doc
        assert_in_order(doc, [quote(s.text[:600]) for s in samples])
    assert "cell=lstm" in page and "hidden_size=64" in markdown  # the model summary
    assert not re.search(r'(src|href)="(?!data:)', page)  # self-contained: nothing fetched


def test_out_writes_there_and_not_into_the_run(trained_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = copy_run(trained_run, tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    out = tmp_path / "report" / "nested"
    assert main(["plot", str(run), "--out", str(out), "--log-y"]) == 0
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    assert capsys.readouterr().out.splitlines() == [str(out / n) for n in OUTPUTS]
    assert (out / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_plots_a_run_in_progress(trained_run, tmp_path):
    """A half-written last record is skipped; a sample newer than the metrics is still shown."""
    pytest.importorskip("matplotlib")
    run = copy_run(trained_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 50, "train_loss": 2.9')
    (run / "samples" / "step_000060.txt").write_text("newest sample text")
    assert main(["plot", str(run)]) == 0
    metrics = read_metrics(run / "metrics.jsonl")
    assert [s for s, _ in metrics.train] == [10, 20, 30, 40]
    page = (run / "samples.html").read_text()
    assert_in_order(page, ["step 20:", "step 40:", "step 60: val loss not logged yet",
                           "newest sample text"])


def test_rerun_replaces_the_files(tmp_path):
    pytest.importorskip("matplotlib")
    run = fake_run(tmp_path / "run", [{"step": 10, "train_loss": 3.0, "val_loss": 3.1}],
                   {10: "first"})
    assert main(["plot", str(run)]) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 20, "train_loss": 2.0, "val_loss": 2.5}) + "\n")
    (run / "samples" / "step_000020.txt").write_text("second")
    assert main(["plot", str(run)]) == 0
    assert "step 20: val loss 2.5000" in (run / "samples.md").read_text()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_sample_text_is_escaped_and_fenced(tmp_path):
    pytest.importorskip("matplotlib")
    nasty = "<script>alert('x')</script> & ``` not a fence end"
    run = fake_run(tmp_path / "run", [{"step": 5, "train_loss": 4.0, "val_loss": 4.2}],
                   {5: nasty})
    assert main(["plot", str(run)]) == 0
    page = (run / "samples.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in page
    markdown = (run / "samples.md").read_text()
    assert "````text\n" + nasty + "\n````" in markdown


def test_max_chars_trims_each_sample(tmp_path):
    pytest.importorskip("matplotlib")
    run = fake_run(tmp_path / "run", [{"step": 5, "train_loss": 4.0, "val_loss": 4.2}],
                   {5: "a" * 30 + "b" * 70})
    assert main(["plot", str(run), "--max-chars", "30"]) == 0
    page, markdown = (run / "samples.html").read_text(), (run / "samples.md").read_text()
    assert "<pre>" + "a" * 30 + "</pre>" in page
    assert "```text\n" + "a" * 30 + "\n```" in markdown
    assert "first 30 of 100 characters" in page and "first 30 of 100 characters" in markdown


def test_pair_task_metrics_are_shown_generically(tmp_path):
    pytest.importorskip("matplotlib")
    record = {"step": 8, "train_loss": 1.5, "val_loss": 1.25, "val_exact_match": 0.5}
    run = fake_run(tmp_path / "run", [record], {8: "src\tpred\t(truth: t)"})
    assert main(["plot", str(run)]) == 0
    assert "step 8: val loss 1.2500, exact match 0.5" in (run / "samples.md").read_text()


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), err
    return lines[0]


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist; give a folder made by rnnkit train"),
    ("no_metrics", "is not a run folder (no metrics.jsonl); give a folder made by rnnkit train"),
    ("empty_metrics", "has no metric records yet"),
    ("only_a_partial_line", "has no metric records yet"),
])
def test_bad_run_folder_is_one_error_line_and_writes_nothing(case, expected, tmp_path, capsys):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
        (run / "samples").mkdir()
        (run / "samples" / "step_000010.txt").write_text("text")
    if case == "empty_metrics":
        (run / "metrics.jsonl").write_text("")
    if case == "only_a_partial_line":
        (run / "metrics.jsonl").write_text('{"step": 10, "tra')
    out = tmp_path / "out"
    for argv in (["plot", str(run)], ["plot", str(run), "--out", str(out)]):
        before = sorted(tmp_path.rglob("*"))
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert expected in line and str(run) in line
        assert sorted(tmp_path.rglob("*")) == before


def test_a_failed_write_leaves_the_folder_as_it_was(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    run = fake_run(tmp_path / "run", [{"step": 1, "train_loss": 4.0}])
    (run / "samples.md").mkdir()  # one output cannot be written: none is
    assert main(["plot", str(run)]) != 0
    assert "samples.md' is a folder" in one_error_line(capsys)
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "samples.md"]
    from rnnkit import plots

    def full_disk(files):
        raise OSError(errno.ENOSPC, "No space left on device", str(next(iter(files))))

    monkeypatch.setattr(plots, "atomic_write_all", full_disk)
    assert main(["plot", str(run), "--out", str(tmp_path / "new" / "nested")]) == 1
    one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no folder made is left


def test_out_that_is_a_file_is_an_error(tmp_path, capsys):
    run = fake_run(tmp_path / "run", [{"step": 1, "train_loss": 4.0}])
    (tmp_path / "taken").write_text("mine")
    assert main(["plot", str(run), "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in one_error_line(capsys)
    assert (tmp_path / "taken").read_text() == "mine"
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


def test_missing_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    run = fake_run(tmp_path / "run", [{"step": 1, "train_loss": 4.0}])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["plot", str(run)]) == 2
    assert "pip install 'rnnkit[plot]'" in one_error_line(capsys)
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


def test_read_metrics_returns_train_and_val_series_by_step(tmp_path):
    records = [{"step": 10, "train_loss": 4.0, "lr": 0.01},
               {"step": 20, "train_loss": 3.5, "lr": 0.01, "val_loss": 3.6, "val_bpc": 5.2},
               {"step": 30, "train_loss": 3.0, "lr": 0.005},
               {"step": 40, "train_loss": 2.5, "val_loss": 2.8, "val_bpc": 4.0}]
    path = fake_run(tmp_path / "run", records, tail='{"step": 50, "train_loss": 2.') / \
        "metrics.jsonl"
    metrics = read_metrics(path)
    assert metrics.train == [(10, 4.0), (20, 3.5), (30, 3.0), (40, 2.5)]
    assert metrics.val == [(20, 3.6), (40, 2.8)]
    assert metrics.evals[40] == {"val_loss": 2.8, "val_bpc": 4.0}


def test_read_metrics_rejects_a_damaged_line_that_is_not_the_last(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "train_loss": 4.0}\n{"step": 2\n{"step": 30, "train_loss": 3}\n')
    with pytest.raises(RnnkitError, match="line 2"):
        read_metrics(path)


def test_frame_samples_are_embedded_in_the_page_and_linked_from_markdown(tmp_path):
    pytest.importorskip("matplotlib")
    run = fake_run(tmp_path / "run", [{"step": 10, "train_loss": 0.2, "val_loss": 0.3}])
    (run / "samples").mkdir()
    (run / "samples" / "step_000010.png").write_bytes(PNG_MAGIC + b"strip")
    assert main(["plot", str(run), "--out", str(tmp_path / "out")]) == 0
    assert '<img alt="sample at step 10" src="data:image/png;base64,' in \
        (tmp_path / "out" / "samples.html").read_text()
    assert "(../run/samples/step_000010.png)" in (tmp_path / "out" / "samples.md").read_text()
