"""Rewrite the README's results table from the JSON files in benchmarks/results/.

    python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def rows() -> list[str]:
    return quality_rows() + [""] + scheduled_sampling_rows() + [""] + large_corpus_rows()


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
