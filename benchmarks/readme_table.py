"""Rewrite the README's results table from the JSON files in benchmarks/results/.

    python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def rows() -> list[str]:
    return (quality_rows() + [""] + scheduled_sampling_rows() + [""] + large_corpus_rows()
            + [""] + beam_rows() + [""] + convlstm_rows())


def results(pattern: str):
    for path in sorted((ROOT / "benchmarks" / "results").glob(pattern)):
        yield path, json.loads(path.read_text())


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
    lines = ["| benchmark | data | budget | val loss (nats/char) | bpc | steps | train chars/s "
             "| peak RSS | machine |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((ROOT / "benchmarks" / "results").glob("quality_*.json")):
        r = json.loads(path.read_text())
        data = Path(r["data"]).name
        lines.append(
            f"| `{r['preset']}` (`{path.name}`) | {data} | {r['budget_s']:.0f} s "
            f"(ran {r['wall_s']:.0f} s) | **{r['val_loss']:.3f}** | {r['val_bpc']:.3f} "
            f"| {r['steps']} | {r['train_chars_per_sec']:,.0f} | {r['peak_rss_mb']:.0f} MB "
            f"| {r['cpu']}, {r['threads']} threads, bf16={r['bf16']}, torch {r['torch']} |")
    return lines


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + "\n".join(rows()) + "\n" + END + tail)


if __name__ == "__main__":
    main()
