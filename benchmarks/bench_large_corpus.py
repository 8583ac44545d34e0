"""Large corpora: preparation time and peak memory for a generated multi-GB text, and the peak
memory of training on it, each beside the same job on a small text (the baseline: torch,
numpy and the model itself).

    python benchmarks/bench_large_corpus.py --size-mb 1024 \
        --save benchmarks/results/large_corpus_1g.json

Prints JSON (with its provenance); the generated files are removed after. The corpus is the
Hamlet excerpt from tests/fixtures repeated (each copy numbered) to the requested size; its
text does not matter here, its size does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit

ROOT = Path(__file__).resolve().parent.parent
SEED_TEXT = ROOT / "tests" / "fixtures" / "hamlet_excerpt.txt"
PREPARE = """
import json, resource, sys, time
from rnnkit.data.corpus import prepare_corpus
t = time.perf_counter()
c = prepare_corpus(__import__("pathlib").Path(sys.argv[1]), "bench", "stream", sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "tokens": len(c.tokens),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate(path: Path, size_mb: int) -> None:
    seed = SEED_TEXT.read_text()
    with open(path, "w", encoding="utf-8") as f:
        copy = 0
        while f.tell() < size_mb << 20:
            f.write(f"[copy {copy}]\n{seed}")
            copy += 1


def prepare(text: Path, cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PREPARE, str(text), str(cache)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def peak_rss_of(cmd: list[str]) -> tuple[float, int]:
    """(peak RSS in MB, exit code) of a command, polling /proc every 20 ms."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
        except (FileNotFoundError, IndexError, ProcessLookupError):
            pass
        time.sleep(0.02)
    return peak / 1024, proc.returncode


def train_rss(text: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "rnnkit", "train", "--data", str(text), "--out", str(out),
           "--preset", "tiny", "--max-steps", "30", "--eval-every", "30", "--val-frac", "0.05",
           "--test-frac", "0", "--eval-max-chars", "100000"]
    rss, code = peak_rss_of(cmd)
    assert code == 0, f"training failed: {cmd}"
    return rss


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--workdir", default=None,
                   help="folder for a temporary folder with the corpus, its caches and the "
                   "runs, removed after (default: the system's temporary folder)")
    p.add_argument("--save", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="rnnkit_large_corpus_") as work:
        return emit(measure(Path(work), args.size_mb), args.save)


def measure(work: Path, size_mb: int) -> dict:
    big, small = work / "big.txt", SEED_TEXT
    t = time.perf_counter()
    generate(big, size_mb)
    generated_s = time.perf_counter() - t
    prep_big, prep_small = prepare(big, work / "cache_big"), prepare(small, work / "cache_small")
    rss_big, rss_small = train_rss(big, work / "run_big"), train_rss(small, work / "run_small")
    return {"benchmark": "large_corpus", "corpus_mb": round(big.stat().st_size / 2**20),
            "generate_s": round(generated_s, 1), "tokens": prep_big["tokens"],
            "prepare_s": round(prep_big["seconds"], 1),
            "prepare_mb_per_s": round(big.stat().st_size / 2**20 / prep_big["seconds"], 1),
            "prepare_peak_rss_mb": round(prep_big["peak_rss_mb"]),
            "prepare_peak_rss_small_mb": round(prep_small["peak_rss_mb"]),
            "train_peak_rss_mb": round(rss_big), "train_peak_rss_small_mb": round(rss_small),
            "train_rss_above_small_mb": round(rss_big - rss_small)}


if __name__ == "__main__":
    main()
