"""Rewrite the results tables from the JSON files in benchmarks/results/ (and two example
scripts' in examples/results/): the headline tables in README.md, every table in
docs/results.md (``TARGETS``).

    python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def rows(tables=None) -> list[str]:
    """The tables (every one by default) as Markdown lines, a blank line between tables."""
    if tables is None:
        tables = [quality_rows, lstm_vs_gpt_rows, throughput_rows, cells_rows,
                  sampling_rows, contention_rows, allocator_rows, prefill_rows, serve_rows,
                  ddp_rows, scheduled_sampling_rows, levers_rows,
                  large_corpus_rows, beam_rows, convlstm_rows, speech_rows, segment_rows,
                  long_range_rows, frame_rows]
    out: list[str] = []
    for table in tables:
        out += table() + [""]
    return out[:-1]


def results(pattern: str):
    for path in sorted((ROOT / "benchmarks" / "results").glob(pattern)):
        yield path, json.loads(path.read_text())


def lstm_vs_gpt_rows() -> list[str]:
    lines = ["| presets at an equal budget (`bench_lstm_vs_gpt.py`) | model | parameters | steps "
             "| wall (training + evaluations) | val loss | val bits/char |",
             "|---|---|---|---|---|---|---|"]
    for path, r in results("lstm_vs_gpt_*.json"):
        cpu = r.get("provenance", {}).get("cpu") or r["cpu"]
        for name, run in r["runs"].items():
            lines.append(
                f"| `{path.name}`: {data_name(r['data'])}, {r['budget_s']:.0f} s each, {cpu}, "
                f"{run['threads']} threads | {name} (`{run['preset']}`), "
                f"{'bf16' if run['bf16'] else 'fp32'} | {run['params']:,} | {run['steps']:,} "
                f"| {run['wall_s']} s | {run['val_loss']} | **{run['val_bpc']}** |")
    for path, r in results("plain_lstm_*.json"):  # the plain script alone, another seed
        lines.append(
            f"| `{path.name}`: tinyshakespeare (built in), {r['budget_s']:.0f} s, "
            f"{r['provenance']['cpu']}, {r['threads']} threads | plain_lstm (`plain nn.LSTM "
            f"{r['layers']}x{r['hidden']}, seed {r['seed']}, weight decay "
            f"{r['weight_decay']:g}`), {'bf16' if r['bf16'] else 'fp32'} | {r['params']:,} "
            f"| {r['steps']:,} | {r['wall_s']} s | {r['val_loss']} | **{r['val_bpc']}** |")
    return lines


def data_name(data: str) -> str:
    """A results file's text: a file's name, or a built-in corpus."""
    return f"{data[7:]} (built in)" if data.startswith("corpus:") else Path(data).name


def machine(r: dict) -> str:
    """The provenance of a result, short: CPU, threads, torch, date."""
    p = r.get("provenance", {})
    threads = p.get("threads", "?")
    return f"{p.get('cpu', '?')}, {threads} thread{'' if threads == 1 else 's'}, " \
           f"torch {p.get('torch', '?')}, {p.get('date', '?')[:10]}"


def cells_rows() -> list[str]:
    lines = ["| cells at equal parameters (`bench_cells.py`) | cell, hidden | parameters "
             "| training chars/s by T (vs LSTM) | sampling chars/s: batch 1, 64 streams |",
             "|---|---|---|---|---|"]
    for path, r in results("cells_*.json"):
        for cell, m in r["models"].items():
            speeds = ", ".join(
                f"{T}: {t['chars_per_sec'][f'{cell} fp32']:,} ({t['vs_lstm'][f'{cell} fp32']}x)"
                for T, t in r["training"].items())
            s = r["sampling_fp32"].get(cell, {})
            sampled = (f"{s['batch1_chars_per_sec']:,}, {s['streams_chars_per_sec']:,}" if s
                       else "-")
            lines.append(f"| `{path.name}`: {r['layers']} layers, fp32, {r['chars_per_step']:,}"
                         f" chars per step, {machine(r)} | {cell}, {m['hidden']} "
                         f"| {m['parameters']:,} | {speeds} | {sampled} |")
    return lines


def prefill_rows() -> list[str]:
    lines = ["| transformer prompt (`bench_prefill.py`) | prompt tokens | one pass | token by "
             "token | speedup |", "|---|---|---|---|---|"]
    for path, r in results("prefill_*.json"):
        for length, row in r["prompt_tokens"].items():
            lines.append(f"| `{path.name}`: {r['model']}, {r['threads']} threads | {length} "
                         f"| {row['one_pass_ms']} ms | {row['token_by_token_ms']} ms "
                         f"| **{row['speedup']}x** |")
    return lines


def beam_rows() -> list[str]:
    lines = ["| beam search (`bench_beam.py`) | model, batch | greedy | beam 1 | beam 4 | beam 8 |",
             "|---|---|---|---|---|---|"]
    for path, r in results("beam_*.json"):
        rate, cost = r["sequences_per_sec"], r["cost_per_sequence_vs_greedy"]
        cells = [f"{rate[k]:,.0f} seq/s ({cost[k]}x)" for k in ("beam_1", "beam_4", "beam_8")]
        lines.append(f"| `{path.name}`, {r['threads']} threads | {r['model']}, {r['batch']} "
                     f"sequences at once | {rate['greedy']:,.0f} seq/s | " + " | ".join(cells)
                     + " |")
    return lines


def throughput_rows() -> list[str]:
    lines = ["| training (`bench_throughput.py`) | shape | chars/s | effective GFLOP/s "
             "| of the fp32 GEMM rate | vs plain `nn.LSTM` fp32 |", "|---|---|---|---|---|---|"]
    for path, r in results("throughput_*.json"):
        gemm = ", ".join(f"{k} {v}" for k, v in r["gemm_gflops"].items())
        for name, row in r["training"].items():
            lines.append(
                f"| `{path.name}` {name.replace('_', ' ')} | {r['model']}, B={r['batch']}, "
                f"T={r['seq_length']}, {r.get('device', 'cpu')}, {r['threads']} threads "
                f"(GEMM GFLOP/s: {gemm}) | {row['chars_per_sec']:,} | {row['effective_gflops']} "
                f"| **{row['of_fp32_gemm']:.0%}** | {row['vs_plain_fp32']}x |")
    return lines


def sampling_rows() -> list[str]:
    lines = ["| sampling (`bench_sampling.py`) | threads | plain `nn.LSTM` loop, batch 1 "
             "| precision | batch 1 chars/s | vs plain | many streams, chars/s in all "
             "| first char |",
             "|---|---|---|---|---|---|---|---|"]
    for path, r in results("sampling_*.json"):
        for threads, row in r["by_threads"].items():
            for precision in ("fp32", "bf16", "int8"):
                if precision not in row:
                    continue
                p = row[precision]
                lines.append(
                    f"| `{path.name}`: {r['model']}, {r.get('device', 'cpu')} | {threads} "
                    f"| {row['naive_nn_lstm_chars_per_sec']:,} | {precision} "
                    f"| {p['batch1_chars_per_sec']:,} | **{p['batch1_vs_naive']}x** "
                    f"| {r['streams']}: {p['streams_chars_per_sec']:,} "
                    f"| {p['first_char_ms']} ms |")
        if "likelihood" in r:
            lk = r["likelihood"]
            costs = ", ".join(f"{k.split('_')[0]} {v:+.4f}" for k, v in lk.items()
                              if k.endswith("_minus_fp32"))
            lines.append(f"| likelihood cost over {lk['text_chars']:,} val characters "
                         f"| | fp32 {lk['fp32_nats_per_char']} nats/char | {costs} "
                         "| | | | |")
        if "command" in r:  # bench_sampling.py --cli: rnnkit sample, timed from outside
            c = r["command"]
            naive_all = c[f"naive_{c['cores']}_threads_chars_per_sec"]
            lines.append(
                f"| `rnnkit sample RUN --length N` as a user runs it, default flags "
                f"(`{path.name}`, {machine(r)}) | 1 | {c['naive_1_threads_chars_per_sec']:,} "
                f"| auto | {c['default_flags_chars_per_sec']:,} "
                f"| **{c['default_vs_naive_same_threads']}x** | | |")
            lines.append(
                f"| the same with `--precision fp32 --threads {c['cores']}` (the former "
                f"defaults) | {c['cores']} | {naive_all:,} "
                f"| fp32 | {c['fp32_all_cores_chars_per_sec']:,} "
                f"| **{c['fp32_all_cores_vs_naive_same_threads']}x** | | |")
    return lines


def ddp_rows() -> list[str]:
    lines = ["| data-parallel training (`bench_ddp.py`) | model | 1 rank, 1 thread "
             "| 1 rank, 2 threads | 2 ranks, 1 thread each | 2 ranks vs 1 rank, 1 thread |",
             "|---|---|---|---|---|---|"]
    for path, r in results("ddp_*.json"):
        rate = r["chars_per_sec"]
        lines.append(
            f"| `{path.name}`: {r['device']}, {r['backend']}, {r['cpu_cores']} cores, "
            f"torch {r['torch']} | {r['model']}, global B={r['global_batch']}, "
            f"T={r['seq_length']} | {rate['1_rank_1_thread']:,} chars/s "
            f"| {rate['1_rank_2_threads']:,} chars/s | {rate['2_ranks_1_thread_each']:,} chars/s "
            f"| **{r['speedup_2_ranks_vs_1']}x** |")
    return lines


def serve_rows() -> list[str]:
    lines = ["| playground load (`bench_serve.py`) | model | `--max-concurrent` | completed "
             "| time to first char p50 / p99 | chars/s in all | health after |",
             "|---|---|---|---|---|---|---|"]
    for path, r in results("serve_*.json"):
        for name, run in r["runs"].items():
            t = run["ttfc_s"]
            lines.append(
                f"| `{path.name}`: {r['requests']} requests x {r['length']} chars, "
                f"{r['machine']} | {r['model']} | {name.rsplit('_', 1)[-1]} "
                f"| {run['completed']} ({run['errors']} errors) | {t['p50']} s / {t['p99']} s "
                f"| {run['chars_per_sec']:,} | {run['health_after'].get('status')} |")
    return lines


def contention_rows() -> list[str]:
    """Speed beside other work (``bench_contention.py``): the default threads, shared with
    other processes, against torch's fixed one per core, in one run; alone, also the median
    ratio of the ABBA pairs."""
    lines = ["| beside other work (`bench_contention.py`) | threads | training alone (steps/s) "
             "| each of two at once | kept | `eval` kept beside two trainings "
             "| `sample` kept | machine |", "|---|---|---|---|---|---|---|---|"]
    for path, r in results("contention*.json"):
        ratio = r["alone_shared_over_fixed"]
        vs_fixed = (f" ({ratio['median']:.2f}x fixed: the median of {len(ratio['pairs'])} "
                    f"ABBA pairs, {min(ratio['pairs']):.2f}-{max(ratio['pairs']):.2f})")
        for key, name, note in (("default_threads_shared", "default: shared", vs_fixed),
                                ("threads_fixed_at_cores", f"fixed at {r['cores']}", "")):
            m = r[key]
            two = " / ".join(f"{x:g}" for x in m["train_steps_per_sec_two_at_once"])
            lines.append(
                f"| `{path.name}`: {r['model']}, {r['seconds']:g} s each | {name} "
                f"| {m['train_steps_per_sec_alone']:g}{note} | {two} "
                f"| **{m['train_share_kept']:.0%}** "
                f"| {m['eval_speed_kept']:.0%} ({m['eval_seconds_alone']} s alone, "
                f"{m['eval_seconds_beside_two_trainings']} s beside) "
                f"| {m['sample_speed_kept']:.0%} | {machine(r)} |")
    return lines


def allocator_rows() -> list[str]:
    """Training steps with freed memory kept by the process (``bench_allocator.py``) against
    glibc's default malloc, per cell, in one run: the medians of the repeats."""
    lines = ["| freed memory kept (`bench_allocator.py`) | cell | s a step: default malloc "
             "| kept | speed-up | system CPU s (default / kept) | peak RSS MB (default / kept) "
             "| machine |", "|---|---|---|---|---|---|---|---|"]
    for path, r in results("allocator*.json"):
        for cell, c in r["cells"].items():
            def median(arm, key, c=c):
                return round(statistics.median(run[key] for run in c[arm]), 4)
            lines.append(
                f"| `{path.name}`: `{r['preset']}`, {r['steps']} steps, {r['repeats']} runs "
                f"of each | {cell} | {median('default', 'seconds_per_step')} "
                f"| {median('kept', 'seconds_per_step')} | **{c['speedup']}x** "
                f"| {median('default', 'system_s'):.1f} / {median('kept', 'system_s'):.1f} "
                f"| {median('default', 'peak_rss_mb'):.0f} / {median('kept', 'peak_rss_mb'):.0f} "
                f"| {machine(r)} |")
    return lines


def convlstm_rows() -> list[str]:
    lines = ["| ConvLSTM (`bench_convlstm.py`) | shape | ConvLSTM frames/s (GFLOP/s) "
             "| conv2d stack, same FLOPs | ConvLSTM / stack |", "|---|---|---|---|---|"]
    for path, r in results("convlstm_*.json"):
        s, c, k, ratio = r["shape"], r["convlstm"], r["conv_stack"], r["convlstm_over_conv_stack"]
        lines.append(
            f"| `{path.name}` | {s['layers']}x{s['hidden']} ch, {s['size']}x{s['size']}, "
            f"B={s['batch']}, T={s['frames']}, {r['threads']} threads | train "
            f"{c['train_frames_per_sec']} ({c['train_gflops_per_sec']}), inference "
            f"{c['inference_frames_per_sec']} ({c['inference_gflops_per_sec']}) | train "
            f"{k['train_frames_per_sec']}, inference {k['inference_frames_per_sec']} "
            f"| train **{ratio['train']}**, inference **{ratio['inference']}** |")
    return lines


def large_corpus_rows() -> list[str]:
    lines = ["| large corpus (`bench_large_corpus.py`) | prepare | prepare peak RSS "
             "| training peak RSS |", "|---|---|---|---|"]
    for path in sorted((ROOT / "benchmarks" / "results").glob("large_corpus_*.json")):
        r = json.loads(path.read_text())
        lines.append(
            f"| `{path.name}`: {r['corpus_mb']:,} MB, {r['tokens']:,} tokens "
            f"| {r['prepare_s']} s ({r['prepare_mb_per_s']} MB/s) "
            f"| {r['prepare_peak_rss_mb']} MB ({r['prepare_peak_rss_small_mb']} MB for a 40 kB "
            f"text) | {r['train_peak_rss_mb']} MB (**+{r['train_rss_above_small_mb']} MB** over "
            "the same run on a 40 kB text) |")
    return lines


def scheduled_sampling_rows() -> list[str]:
    lines = ["| one training step (`bench_scheduled_sampling.py`) | shape | teacher forcing "
             "| parallel SS | sequential SS |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "benchmarks" / "results").glob("ss_*.json")):
        r = json.loads(path.read_text())
        s, sec = r["shape"], r["seconds_per_step"]
        lines.append(
            f"| `{path.name}`, eps {s['eps']} | {s['layers']}x{s['hidden']} LSTM, "
            f"B={s['batch']}, T={s['seq']}, {r['threads']} threads | {sec['teacher_forcing']} s "
            f"| {sec['parallel']} s (**{r['parallel_over_teacher_forcing']}x**) "
            f"| {sec['sequential']} s ({r['sequential_over_teacher_forcing']}x) |")
    return lines


def quality_rows() -> list[str]:
    lines = ["| benchmark | data | budget | val loss (nats per token) | bits per char | steps "
             "| train tokens/s | peak RSS | machine |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((ROOT / "benchmarks" / "results").glob("quality_*.json")):
        r = json.loads(path.read_text())
        data = data_name(r["data"])
        tokens = r["config"]["train"].get("tokenizer", "char")
        lines.append(
            f"| `{r['preset']}`, {shape(r['config']['model'])}{decay(r['config']['train'])}, "
            f"{tokens} tokens (`{path.name}`) "
            f"| {data} | {r['budget_s']:.0f} s "
            f"(ran {r['wall_s']:.0f} s) | **{r['val_loss']:.3f}**{trained(r)} | {r['val_bpc']:.3f} "
            f"| {r['steps']} | {r['train_chars_per_sec']:,.0f} | {r['peak_rss_mb']:.0f} MB "
            f"| {r.get('provenance', {}).get('cpu') or r['cpu']}, {r['threads']} threads, "
            f"bf16={r['bf16']}, torch {r['torch']} |")
    return lines


def levers_rows() -> list[str]:
    """bench_levers.py: one row per saved trial, its val loss by weights used."""
    lines = ["| levers (`bench_levers.py`, step-limited) | lever | weight decay | steps "
             "| final weights | SWA | EMA (decay: val loss) | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for path, r in results("levers_*.json"):
        v = r["val_loss"]
        emas = ", ".join(f"{k[4:]}: {x}" for k, x in v.items() if k.startswith("ema_"))
        lever = r["lever"] if r["lever"] == "none" else f"{r['lever']} {r['p']:g}"
        lines.append(
            f"| `{path.name}`: {r['layers']} x {r['hidden']} LSTM, {r['batch_size']} x "
            f"{r['seq_length']}, peak LR {r['lr']:g}, {'bf16' if r['bf16'] else 'fp32'} "
            f"| {lever} | {r['weight_decay']:g} | {r['steps']:,} | **{v['final']}** "
            f"| {v['swa']} (last {1 - r['swa_from']:.0%}) | {emas} | {machine(r)} |")
    return lines


def shape(model: dict) -> str:
    """Layers x width of a saved run's model: a run may override its preset's (--set)."""
    if model.get("hidden_size"):
        return f"{model['num_layers']} x {model['hidden_size']}"
    return f"{model['n_layer']} x {model['n_embd']}"


def trained(r: dict) -> str:
    """Beside an --ema run's val loss (its average's), that of the weights it averaged."""
    loss = r.get("val_loss_trained_weights")
    return f" (trained weights: {loss:.3f})" if loss is not None else ""


def decay(train: dict) -> str:
    """A saved run's weight decay and weight average, where it has them (the presets differ
    in them)."""
    wd = f", weight decay {train['weight_decay']:g}" if train.get("weight_decay") else ""
    return wd + (f", EMA {train['ema']:g}" if train.get("ema") else "")


def example(name: str) -> dict:
    return json.loads((ROOT / "examples" / "results" / f"{name}.json").read_text())


def speech_rows() -> list[str]:
    """The lecture's case for bidirectional RNNs, from examples/speech_bidirectional.py."""
    r = example("speech_bidirectional")
    lines = ["| speech, held-out voices (`examples/results/speech_bidirectional.json`) "
             "| parameters | steps in the same time | greedy CER / WER | beam CER / WER "
             "| beam + char LM CER / WER | machine |", "|---|---|---|---|---|---|---|"]
    for name, run in r["results"].items():
        t = run["test"]
        cells = " | ".join(f"{100 * t[k]['cer']:.2f}% / {100 * t[k]['wer']:.2f}%"
                           for k in ("greedy", "beam", "beam_lm"))
        lines.append(f"| {name} LSTM, {run['hidden_size']} units, {r['args']['text']}, "
                     f"{run['train_seconds']:.0f} s | {run['parameters']:,} | {run['steps']:,} "
                     f"| {cells} | {machine(r)} |")
    return lines


def segment_rows() -> list[str]:
    """A label per video frame, from examples/segment_video.py."""
    r = example("segment_video")
    lines = ["| a label per frame (`examples/results/segment_video.json`) | parameters "
             "| frame accuracy | edit | F1@10 | F1@25 | F1@50 | machine |",
             "|---|---|---|---|---|---|---|---|"]
    names = {"single_frame": "CNN on each frame", "lstm": "CNN -> LSTM",
             "bilstm": "CNN -> bidirectional LSTM"}
    for name, m in r["results"].items():
        lines.append(f"| {names.get(name, name)}, {r['args']['steps']:,} steps "
                     f"| {m['parameters']:,} | {m['accuracy']:.3f} | {m['edit']:.1f} "
                     f"| {m['f1_10']:.1f} | {m['f1_25']:.1f} | {m['f1_50']:.1f} | {machine(r)} |")
    return lines


def long_range_rows() -> list[str]:
    """Gated and parallel-scan cells against a vanilla RNN over long gaps, from
    examples/long_range.py: the adding problem (long_range.json) and the copy task
    (long_range_copy.json; long_range_copy_scan.json for the scan cells), the bar of each
    beside the cells' held-out scores."""
    cells = ("rnn", "gru", "lstm", "mingru", "minlstm", "lru")
    lines = ["| long gaps (`examples/long_range.py`), held-out | recipe | "
             + " | ".join(cells) + " | no memory | bar | machine |",
             "|---" * (len(cells) + 5) + "|"]
    for name, task, key, bar, fmt in (
            ("long_range", "adding", "mse", "< 0.01", "{:.4f}"),
            ("long_range_copy", "copy", "accuracy", "> 0.95", "{:.3f}"),
            ("long_range_copy_scan", "copy", "accuracy", "> 0.95", "{:.3f}")):
        if not (ROOT / "examples" / "results" / f"{name}.json").exists():
            continue
        r = example(name)
        a = r["args"]
        steps = f"{a['steps']:,} steps"
        if a.get("scan_steps") and set(a["cells"]) & {"mingru", "minlstm", "lru"}:
            steps += f" ({a['scan_steps']:,} for the scan cells)"
        recipe = (f"H {a['hidden']}, batch {a['batch_size']}, lr {a['learning_rate']:g} "
                  f"{a.get('schedule', 'constant')}, {steps}"
                  + (f", lag curriculum over {a['curriculum']:.0%}" if a.get("curriculum")
                     else "") + (", chrono LSTM" if a.get("chrono") else ""))
        for lag, scores in r["results"][task].items():
            row = " | ".join(fmt.format(scores[c][key]) if c in scores else "-"
                             for c in cells)
            base = next(iter(scores.values()))["baseline"]
            what = "test MSE" if task == "adding" else "per-symbol accuracy"
            # the copy task's bar is set at lag 100, the adding problem's at every T
            lines.append(f"| {task}, {'T' if task == 'adding' else 'lag'} {lag}: {what} "
                         f"(`{name}.json`) | {recipe} | {row} | {fmt.format(base[key])} "
                         f"| {bar if task == 'adding' or lag == '100' else '-'} "
                         f"| {machine(r)} |")
    return lines


def frame_rows() -> list[str]:
    """Video prediction, from examples/frame_prediction.py: the two encoder-forecasters and
    the forecasts that need no model, scored free-running on held-out digits."""
    r = example("frame_prediction")
    a, s = r["args"], r["summary"]
    setting = (f"{a.get('digits', 2)} digit(s), {a['frame_size']} x {a['frame_size']}, "
               f"{a['frames']} -> {a['frames']} frames")
    lines = [f"| frame prediction, {setting} (`examples/results/frame_prediction.json`) "
             "| parameters | steps (train s) | MSE | SSIM | MSE step 1 / last "
             "| SSIM step 1 / last | machine |", "|---|---|---|---|---|---|---|---|"]
    names = {"convlstm": f"ConvLSTM, {a.get('head', 'pixels')} head",
             "fclstm": "FC-LSTM", "copy_last": "copy the last input frame",
             "mean_frame": "the mean training frame", "blank": "an empty frame"}
    for key, name in names.items():
        m = s[key]
        trained = (f"{m['params']:,} | {m['steps']:,} ({m['train_seconds']:.0f})"
                   if "params" in m else "- | -")
        lines.append(f"| {name} | {trained} | {m['mse']:.4f} | {m['ssim']:.3f} "
                     f"| {m['mse_per_frame'][0]:.4f} / {m['mse_per_frame'][-1]:.4f} "
                     f"| {m['ssim_per_frame'][0]:.3f} / {m['ssim_per_frame'][-1]:.3f} "
                     f"| {machine(r)} |")
    return lines


# file (from the repository root) -> its tables, between START and END; None: every table
TARGETS = {"README.md": [quality_rows, lstm_vs_gpt_rows, speech_rows, segment_rows,
                         long_range_rows, frame_rows],
           "docs/results.md": None}


def main() -> None:
    for name, tables in TARGETS.items():
        path = ROOT / name
        text = path.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        path.write_text(head + START + "\n" + "\n".join(rows(tables)) + "\n" + END + tail)


if __name__ == "__main__":
    main()
