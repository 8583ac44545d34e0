"""Rewrite the README's results table from the JSON files in benchmarks/results/.

    python benchmarks/readme_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def rows() -> list[str]:
    lines = ["| benchmark | data | budget | val loss (nats/char) | bpc | steps | train chars/s "
             "| peak RSS | machine |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
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
