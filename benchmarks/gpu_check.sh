#!/usr/bin/env bash
# The GPU check, in one go: the gpu-marked tests, training throughput, the scan cells against
# the LSTM, sampling speed, the gpu-marked DDP tests and the quality benchmark on CUDA, in
# that order (what they decide first, so a cut run keeps the most). Each step prints JSON and
# is bounded by its own timeout, so one failure leaves the others' numbers: 580 s for the
# steps in all, 5 s more each for a step that ignores the stop signal, and 50 s for the two
# lines that name the card and torch. Runs from a source checkout on a machine with torch
# (CUDA build), numpy, tqdm, safetensors and pytest:
#
#     bash benchmarks/gpu_check.sh [RESULTS_DIR]     # default: benchmarks/results/gpu
#
# Then record the numbers in docs/results.md with the card's name (RESULTS_DIR/gpu.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-benchmarks/results/gpu}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# the built-in tinyshakespeare unless RNNKIT_BENCH_DATA names another text
DATA_FLAGS=()
if [ -n "${RNNKIT_BENCH_DATA:-}" ]; then DATA_FLAGS=(--data "$RNNKIT_BENCH_DATA"); fi
status=0

step() {  # step NAME SECONDS COMMAND...: run, keep going on failure, remember it
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s)"
    if ! timeout -k 5 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"; then
        echo "== $name FAILED" >&2
        status=1
    fi
}

timeout -k 5 20 nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
timeout -k 5 30 python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$OUT_DIR/gpu.txt"

step tests 90 python -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
step throughput_b64 45 python benchmarks/bench_throughput.py --device cuda --batch 64 \
    --steps 20 --gemm-size 8192 --save "$OUT_DIR/throughput_b64.json"
step throughput_b256 45 python benchmarks/bench_throughput.py --device cuda --batch 256 \
    --steps 20 --gemm-size 8192 --save "$OUT_DIR/throughput_b256.json"
# the parallel-scan cells beside the LSTM at equal parameters, T = 128, 512, 2048
step cells 75 python benchmarks/bench_cells.py --device cuda --chars 65536 --steps 5 \
    --save "$OUT_DIR/cells.json"
step sampling 45 python benchmarks/bench_sampling.py --device cuda --threads 1 \
    --save "$OUT_DIR/sampling.json"
step ddp_tests 120 python -m pytest -m gpu -q -p no:cacheprovider tests/test_ddp.py
# the CPU preset as shipped (a fast GPU reaches its cap of steps before its budget), then a
# larger model with the clock as the limit
step quality_5min_preset 90 python benchmarks/bench_quality.py "${DATA_FLAGS[@]}" \
    --set 'train.device="cuda"' --save "$OUT_DIR/quality_5min_preset.json"
step quality_40s 70 python benchmarks/bench_quality.py "${DATA_FLAGS[@]}" --budget 50 \
    --set 'train.device="cuda"' 'train.max_time=40' 'train.max_steps=100000' \
    'model.hidden_size=1024' 'model.num_layers=3' 'model.dropout=0.2' \
    'train.batch_size=128' 'train.learning_rate=0.002' 'train.eval_every=1000' \
    --save "$OUT_DIR/quality_40s.json"
exit $status
