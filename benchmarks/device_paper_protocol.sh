#!/usr/bin/env bash
# The paper-protocol Office-Caltech grid on a lent GPU machine, in one call of the device
# tool, as parallel processes sharing the GPU (benchmarks/parallel_grid.py).
#
# Before the call, here (the data must travel inside the repo; .devdata/ is git-ignored):
#     mkdir -p .devdata && cp ../shared/data/office_*.npz .devdata/
# The call (device tool `run`, carry [".devdata"], timeout_s 600):
#     bash benchmarks/device_paper_protocol.sh
# Optional environment: ALGORITHMS, SEEDS (most wanted first), JOBS, MINUTES (deadline).
# Brings back $OUT/office_paper_protocol_gpu.tgz (run folders without checkpoints, logs,
# parallel_runs.json with every run's wall time); unpack it under benchmarks/results/.
# Runs still going at the deadline are stopped; their checkpoints stay on that machine and
# are lost with it (too large to bring back), so size the grid to finish: see the README.
set -euo pipefail
ALGORITHMS=${ALGORITHMS:-fpl-fedheal,fpl,fedproto,fedavg}
SEEDS=${SEEDS:-0,1,2}
JOBS=${JOBS:-12}
MINUTES=${MINUTES:-8.5}
OUT=${OUT:-/tmp/protofl_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 benchmarks/parallel_grid.py --algorithms "$ALGORITHMS" --seeds "$SEEDS" \
    --jobs "$JOBS" --deadline-minutes "$MINUTES" --out office_paper_protocol_gpu \
    --archive "$OUT/office_paper_protocol_gpu.tgz" \
    -- --preset paper-office --data-dir .devdata --device cuda --set threads=1 \
    | tee "$OUT/grid.log"
