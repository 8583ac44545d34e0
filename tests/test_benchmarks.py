"""The speed benchmarks run end to end on tiny shapes and report what their tables read.

Only that they run and what their JSON holds is checked here; the numbers themselves are
measured on purpose, by hand (benchmarks/README.md), never asserted in a test.
"""

import json
import platform
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_sampling_benchmark_reports_every_precision(tmp_path, capsys):
    import bench_sampling
    save = tmp_path / "sampling.json"
    result = bench_sampling.main(["--hidden", "16", "--length", "40", "--streams", "4",
                                  "--threads", "1", "--repeats", "1", "--save", str(save)])
    row = result["by_threads"]["1"]
    assert row["naive_nn_lstm_chars_per_sec"] > 0
    # bf16 where the CPU has it natively, int8 where torch has its kernels
    assert "fp32" in row and ("bf16" in row) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    for precision in [p for p in ("fp32", "bf16", "int8") if p in row]:
        assert row[precision]["batch1_chars_per_sec"] > 0
        assert row[precision]["streams_chars_per_sec"] > 0
        assert row[precision]["first_char_ms"] > 0
    assert json.loads(save.read_text()) == result
    assert json.loads(capsys.readouterr().out) == result


def test_the_sampling_command_reads_the_benchmarks_model(tmp_path, capsys):
    """--cli times the command on the benchmark's own model, saved as a checkpoint."""
    import bench_sampling

    from rnnkit.cli import main
    from rnnkit.models import CharLM, CharLMConfig
    model = CharLM(CharLMConfig(vocab_size=len(bench_sampling.VOCAB), hidden_size=16))
    bench_sampling.write_checkpoint(model, str(tmp_path / "model.pt"))
    assert main(["sample", str(tmp_path / "model.pt"), "--length", "30", "--threads", "1"]) == 0
    assert len(capsys.readouterr().out) == 31


def test_sampling_benchmark_measures_the_likelihood_cost(tmp_path, hamlet):
    import rnnkit
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": str(hamlet), "max_steps": 5})
    rnnkit.train(model_cfg, cfg, out=tmp_path / "run", log=lambda m: None)
    import bench_sampling
    result = bench_sampling.main(["--checkpoint", str(tmp_path / "run"), "--text", str(hamlet),
                                  "--text-chars", "600", "--length", "20", "--streams", "2",
                                  "--threads", "1", "--repeats", "1"])
    likelihood = result["likelihood"]
    assert 0 < likelihood["fp32_nats_per_char"] < 5
    costs = [v for k, v in likelihood.items() if k.endswith("_minus_fp32")]
    assert costs and all(abs(v) < 0.1 for v in costs)


def test_throughput_benchmark_counts_flops_and_compares(capsys):
    import bench_throughput
    result = bench_throughput.main(["--hidden", "16", "--batch", "4", "--seq", "8",
                                    "--steps", "1", "--rounds", "1", "--gemm-size", "64"])
    # 2x16 LSTM, embed 64, vocab 65: 3 * (2*4*16*(64+16) + 2*4*16*32 + 2*16*65)
    assert result["flops_per_char"] == 3 * (2 * 4 * 16 * 80 + 2 * 4 * 16 * 32 + 2 * 16 * 65)
    rows = result["training"]
    assert rows["plain_nn_lstm_fp32"]["vs_plain_fp32"] == 1.0
    assert all(r["chars_per_sec"] > 0 and r["effective_gflops"] > 0 for r in rows.values())
    assert result["gemm_gflops"]["fp32"] > 0


def test_lstm_vs_gpt_benchmark_reports_both_models(hamlet, capsys):
    import bench_lstm_vs_gpt
    result = bench_lstm_vs_gpt.main(["--data", str(hamlet), "--lstm-preset", "tiny",
                                     "--gpt-preset", "gpt-tiny", "--bpe", "--set",
                                     "train.max_steps=3", "train.eval_every=3"])
    runs = result["runs"]
    assert set(runs) == {"lstm", "gpt", "gpt_bpe"}
    assert all(r["steps"] == 3 and r["val_bpc"] > 0 and r["params"] > 0 for r in runs.values())
    assert runs["gpt_bpe"]["val_tokens"] < runs["gpt"]["val_tokens"] == runs["gpt"]["val_chars"]
    assert json.loads(capsys.readouterr().out) == result


def test_lstm_vs_gpt_adds_the_mingru_preset_and_a_plain_lstm_of_the_presets_shape(capsys):
    import bench_lstm_vs_gpt
    result = bench_lstm_vs_gpt.main(["--lstm-preset", "tiny", "--gpt-preset", "gpt-tiny",
                                     "--mingru", "--mingru-preset", "tiny", "--plain", "--budget",
                                     "2", "--set", "train.max_steps=3", "train.eval_every=3"])
    runs = result["runs"]
    assert set(runs) == {"lstm", "gpt", "mingru", "plain_lstm"}
    plain = runs["plain_lstm"]
    # the LSTM preset's shape (tiny's here), on the built-in corpus's 65 characters: embedding,
    # the layers (two biases each, as rnnkit's), the head
    import rnnkit
    model, train = rnnkit.configs(preset="tiny")
    E, H, L = model.embed_size, model.hidden_size, model.num_layers
    assert plain["params"] == 65 * E + 4 * H * (E + H + 2) + (L - 1) * 4 * H * (2 * H + 2) \
        + H * 65 + 65
    assert f"{L}x{H}" in plain["preset"] and f"{train.batch_size} x {train.seq_length}" \
        in plain["preset"]
    assert plain["steps"] >= 1 and 0 < plain["val_bpc"] < 8
    assert plain["weight_decay"] == train.weight_decay
    assert plain["warmup"] == train.warmup_steps == 10  # the preset's, not the script's 50
    capsys.readouterr()


def test_the_plain_lstm_decays_its_weights_when_asked():
    import plain_lstm_budget
    norms = {}
    for decay in (0.0, 0.5):
        args = plain_lstm_budget.parse_args(["--hidden", "8", "--layers", "1", "--embed", "4",
                                             "--batch-size", "2", "--seq-length", "4",
                                             "--weight-decay", str(decay), "--lr", "0.01"])
        torch.manual_seed(0)
        model = plain_lstm_budget.PlainLM(5, args)
        args.budget = 0.5
        plain_lstm_budget.train(model, torch.randint(0, 5, (2, 64)), args)
        norms[decay] = torch.cat([p.detach().flatten() for p in model.parameters()]).norm()
    assert norms[0.5] < 0.99 * norms[0.0]


def test_levers_benchmark_reports_every_average(capsys):
    import bench_levers
    result = bench_levers.main(["--hidden", "16", "--steps", "6", "--lever", "weight_drop",
                                "--p", "0.3", "--ema", "0.5,0.9", "--swa-from", "0.5",
                                "--threads", "1"])
    assert set(result["val_loss"]) == {"final", "swa", "ema_0.5", "ema_0.9"}
    assert all(0 < v < 8 for v in result["val_loss"].values())
    assert len(set(result["val_loss"].values())) > 1  # the averages are other weights
    assert json.loads(capsys.readouterr().out) == result


def test_the_levers_mask_as_their_papers_say():
    import argparse

    import bench_levers
    torch.manual_seed(0)
    args = argparse.Namespace(lever="locked_dropout", p=0.5, embed=8, hidden=16, layers=2)
    model = bench_levers.LeverLM(10, args)
    x = torch.randint(0, 10, (3, 7))
    embedded = model.embed(x)
    masked = model.locked(embedded)
    dropped = masked == 0
    assert dropped.any() and (dropped == dropped[:, :1]).all()  # one mask for every step
    model.eval()
    assert torch.equal(model.locked(embedded), embedded)
    # DropConnect: a fresh mask on W_hh each call in training, gradients reach W_hh, none in eval
    model.train()
    model.lever = "weight_drop"
    first, second = model(x)[0], model(x)[0]
    assert not torch.allclose(first, second)
    first.sum().backward()
    assert model.layers[0].weight_hh_l0.grad.abs().sum() > 0
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])


def test_readme_table_renders_every_saved_result():
    import readme_table
    text = "\n".join(readme_table.rows())
    for path in (BENCHMARKS / "results").glob("*.json"):
        assert f"`{path.name}" in text, f"{path.name} has no row in the README's tables"


@pytest.mark.parametrize("folder", ["benchmarks/results", "examples/results"])
def test_every_saved_result_says_where_and_how_it_was_measured(folder):
    """A number in the docs is traced through its file to the date, commit, CPU, threads,
    torch and command that gave it (report.provenance)."""
    need = {"date", "commit", "cpu", "threads", "torch", "command"}
    paths = sorted((BENCHMARKS.parent / folder).glob("*.json"))
    assert paths
    for path in paths:
        found = json.loads(path.read_text()).get("provenance") or {}
        assert need <= set(found), f"{path.name} lacks {sorted(need - set(found))}"
        assert found["command"].startswith(("python benchmarks/", "python examples/")), path.name


def test_prefill_benchmark_times_both_ways_of_reading_a_prompt(tmp_path, capsys):
    import bench_prefill
    save = tmp_path / "prefill.json"
    result = bench_prefill.main(["--lengths", "5,130", "--repeats", "1", "--save", str(save)])
    for row in result["prompt_tokens"].values():
        assert row["one_pass_ms"] > 0 and row["token_by_token_ms"] > 0 and row["speedup"] > 0
    assert set(result["prompt_tokens"]) == {"5", "130"}
    assert json.loads(save.read_text()) == result == json.loads(capsys.readouterr().out)


def test_cells_benchmark_matches_parameters_and_reports_every_cell(capsys):
    import bench_cells
    result = bench_cells.main(["--cells", "lstm", "mingru", "lru", "--lengths", "8", "16",
                               "--hidden", "128", "--chars", "64", "--rounds", "1", "--steps",
                               "1", "--length", "10", "--streams", "2", "--repeats", "1"])
    sizes = [m["parameters"] for m in result["models"].values()]
    assert max(sizes) / min(sizes) < 1.1  # equal budgets, within one hidden-size step
    for row in result["training"].values():
        assert row["vs_lstm"]["lstm fp32"] == 1.0
        assert all(rate > 0 for rate in row["chars_per_sec"].values())
    assert set(result["sampling_fp32"]) == {"lstm", "mingru", "lru"}
    assert json.loads(capsys.readouterr().out) == result


def test_readme_tables_are_what_the_saved_results_give():
    """README.md (the headline tables) and docs/results.md (every table) show exactly what
    benchmarks/results/*.json give, and every saved result is shown somewhere."""
    import readme_table
    assert set(readme_table.TARGETS) == {"README.md", "docs/results.md"}
    assert readme_table.quality_rows in readme_table.TARGETS["README.md"]
    everything = ""
    for name, tables in readme_table.TARGETS.items():
        text = (BENCHMARKS.parent / name).read_text()
        assert text.count(readme_table.START) == 1 and text.count(readme_table.END) == 1, name
        shown = text.split(readme_table.START, 1)[1].split(readme_table.END, 1)[0].strip("\n")
        assert shown == "\n".join(readme_table.rows(tables)), (
            f"the results tables in {name} differ from benchmarks/results/*.json: run "
            "python benchmarks/readme_table.py")
        everything += shown
    for path in (BENCHMARKS / "results").glob("*.json"):
        assert f"`{path.name}" in everything, f"{path.name} is in no results table"


def test_allocator_benchmark_runs_both_arms(hamlet, capsys):
    import bench_allocator
    result = bench_allocator.main(["--preset", "tiny", "--data", str(hamlet), "--cells", "lstm",
                                   "--steps", "4", "--warm-steps", "2", "--repeats", "1"])
    lstm = result["cells"]["lstm"]
    glibc = platform.libc_ver()[0] == "glibc"
    assert [r["memory_kept"] for r in lstm["default"] + lstm["kept"]] == [False, glibc]
    for run in lstm["default"] + lstm["kept"]:
        assert run["seconds_per_step"] > 0 and run["peak_rss_mb"] > 0
    assert lstm["speedup"] > 0
    assert json.loads(capsys.readouterr().out) == result


def test_quality_benchmark_scores_the_trained_weights_beside_their_average(hamlet, capsys):
    import bench_quality
    result = bench_quality.main(["--preset", "tiny", "--data", str(hamlet), "--set",
                                 "train.max_steps=20", "train.eval_every=20", "train.ema=0.9"])
    # the checkpoint's model is the average; the trained weights score differently
    assert result["val_loss"] > 0 and result["val_loss_trained_weights"] > 0
    assert result["val_loss"] != result["val_loss_trained_weights"]
    assert "val_loss_trained_weights" not in bench_quality.main(
        ["--preset", "tiny", "--data", str(hamlet), "--set", "train.max_steps=5"])


def test_quality_benchmark_records_the_steps_a_budget_fitted(hamlet):
    import bench_quality
    result = bench_quality.main(["--preset", "tiny", "--data", str(hamlet), "--budget", "13",
                                 "--reserve", "10", "--set", "train.time_budget=30",
                                 "train.max_steps=100000", "train.eval_every=100000"])
    fit = result["budget_fit"]  # the preset's budget capped at --budget less --reserve
    assert fit["seconds"] == 3 and fit["final"] and fit["cap"] == 100000
    assert 0 < result["steps"] <= fit["steps"] < 100000
    assert "budget_fit" not in bench_quality.main(
        ["--preset", "tiny", "--data", str(hamlet), "--set", "train.max_steps=3"])


def test_quality_benchmark_leaves_no_run_folder_behind(hamlet, tmp_path, monkeypatch):
    import tempfile

    import bench_quality
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench_quality.main(["--preset", "tiny", "--data", str(hamlet), "--set", "train.max_steps=3"])
    assert list(tmp_path.iterdir()) == []
