#!/usr/bin/env bash
# The GPU checks, in one run on a lent GPU machine (no Ray, no MLflow there). From here:
#   bash scripts/device-wheels.sh
#   run(command="bash scripts/device-check.sh", carry=[".whl"], timeout_s=540)
# then copy the GPU figures from $OUT/gpu.json into benchmarks/results/gpu-<device>.json.
# bench_trainer: bf16 trial throughput, Lightning / plain loop and KV-cache decode on the GPU
# (it measures its CPU figures too); bench_gpu: 4 trials packed on one GPU / one alone, and
# bf16 + fused attention / fp32.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
# divsweep from the wheel (the checkout's divsweep/ folder is only the package root: its other
# subpackages are mapped in by pyproject), benchmarks/ from the checkout; run outside the
# checkout so that its folder does not shadow the wheel
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
export DIVSWEEP_BENCH_RESULTS="$OUT/gpu.json"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/device.txt"
(cd /tmp && python3 -m benchmarks bench_trainer bench_gpu) 2>&1 | tee "$OUT/bench.log"
