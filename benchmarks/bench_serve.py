"""Load on rnnkit serve: 50 concurrent streaming generations on loopback.

    python benchmarks/bench_serve.py [--run RUN_DIR] [--requests 50 --length 200]
                                     [--workers 4,50] [--save results/serve_load.json]

Starts ``rnnkit serve`` in its own process (one per --workers value), opens --requests
streaming POST /api/generate requests at once (asyncio + httpx), and measures each one's time
to first character and the total characters per second; then checks that /api/health still
answers. Without --run the model is a 2x256 LSTM trained for one step on a 40 kB text (so
its weights are as good as random: speed does not depend on them). Every request and the
whole run are bounded in time (--request-timeout, --budget).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from report import emit

import rnnkit

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hamlet_excerpt.txt"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="serve this run folder instead of a 2x256 LSTM")
    p.add_argument("--requests", type=int, default=50, help="concurrent requests (default 50)")
    p.add_argument("--length", type=int, default=200, help="characters per request")
    p.add_argument("--workers", default="4,50",
                   help="comma-separated --max-concurrent values, one server each")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--budget", type=float, default=300.0, help="seconds for each load run")
    p.add_argument("--save", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def random_lstm(root: Path) -> Path:
    model_cfg, cfg = rnnkit.configs(
        model={"hidden_size": 256, "num_layers": 2, "embed_size": 64},
        train={"data": str(FIXTURE), "max_steps": 1, "eval_every": 1, "batch_size": 8,
               "seq_length": 32})
    rnnkit.train(model_cfg, cfg, out=root / "run", log=lambda m: None)
    return root / "run"


def start_server(run: Path, workers: int, requests: int, timeout: float):
    """``rnnkit serve`` on a free loopback port; returns (process, base URL)."""
    cmd = [sys.executable, "-m", "rnnkit", "serve", str(run), "--port", "0",
           "--max-concurrent", str(workers), "--max-waiting", str(requests),
           "--timeout", str(timeout), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if " on http://" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split(" on ")[1].split()[0].rstrip("/")


async def one_request(http: httpx.AsyncClient, url: str, i: int, length: int) -> dict:
    """Stream one generation; its time to first character, characters and any error."""
    t0, first, chars, error = time.perf_counter(), None, 0, None
    body = {"prompt": "The ", "length": length, "seed": i, "temperature": 0.8}
    try:
        async with http.stream("POST", f"{url}/api/generate", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"}
            async for line in r.aiter_lines():
                record = json.loads(line) if line else {}
                if "text" in record:
                    first = first or time.perf_counter() - t0
                    chars += 1
                error = record.get("error", error)
    except (httpx.HTTPError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
    return {"ttfc": first, "chars": chars, "seconds": time.perf_counter() - t0, "error": error}


async def load_run(url: str, args) -> dict:
    limits = httpx.Limits(max_connections=args.requests, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        t0 = time.perf_counter()
        jobs = [one_request(http, url, i, args.length) for i in range(args.requests)]
        results = await asyncio.wait_for(asyncio.gather(*jobs), args.budget)
        wall = time.perf_counter() - t0
        health = (await http.get(f"{url}/api/health")).json()
    return summarise(results, wall, health)


def summarise(results: list[dict], wall: float, health: dict) -> dict:
    ok = [r for r in results if not r.get("error") and r.get("ttfc") is not None]
    ttfc = np.array([r["ttfc"] for r in ok]) if ok else np.array([np.nan])
    chars = sum(r.get("chars", 0) for r in results)
    return {
        "completed": len(ok), "errors": len(results) - len(ok),
        "error_examples": sorted({str(r["error"]) for r in results if r.get("error")})[:3],
        "ttfc_s": {"p50": round(float(np.percentile(ttfc, 50)), 4),
                   "p99": round(float(np.percentile(ttfc, 99)), 4),
                   "max": round(float(ttfc.max()), 4)},
        "wall_s": round(wall, 3), "chars": chars, "chars_per_sec": round(chars / wall, 1),
        "health_after": health,
    }


def describe(run: Path, trained: bool) -> str:
    model, vocab, _ = rnnkit.load(run)
    c = model.config
    return (f"{c.num_layers}x{c.hidden_size} {c.cell.upper()}{'' if trained else ' (untrained)'}"
            f", {len(vocab)} symbols")


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews the rates
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else random_lstm(Path(tmp))
        for workers in (int(w) for w in args.workers.split(",")):
            proc, url = start_server(run, workers, args.requests, args.request_timeout)
            try:
                runs[f"max_concurrent_{workers}"] = asyncio.run(load_run(url, args))
            finally:
                proc.terminate()
                proc.wait(30)
        model = describe(run, trained=args.run is not None)
    return emit({
        "model": model,
        "requests": args.requests, "length": args.length, "server_threads": 1,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}",
        "load_average_before": load_before,
        "runs": runs,
    }, args.save)


if __name__ == "__main__":
    main()
