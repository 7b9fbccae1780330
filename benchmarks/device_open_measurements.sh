#!/usr/bin/env bash
# The measurements issues 20 and 21 still miss, on a lent GPU machine, in one call of the
# device tool: the leave-one-domain-out grid on Office-Caltech (reduced protocol, FedAvg,
# FPL, FPL + FedHEAL, seeds 0-2) and the robustness grid on the embedded benchmark (3 seeds),
# side by side as parallel processes sharing the GPU. (Issue 19's paper-protocol seeds:
# benchmarks/device_paper_protocol.sh.)
#
# Before the call, here (the data must travel inside the repo; .devdata/ is git-ignored):
#     mkdir -p .devdata && cp ../shared/data/office_*.npz .devdata/
# The call (device tool `run`, carry [".devdata"], timeout_s 600):
#     bash benchmarks/device_open_measurements.sh
# Brings back $OUT/open_measurements.tgz: both results folders without checkpoints, with
# their logs; unpack under benchmarks/results/ and commit. A cell not finished by the
# deadline is lost with the machine (its checkpoint stays there); the same command on the
# next machine runs what is missing, since finished run folders are skipped.
# Environment: DEVICE (cuda), MINUTES (8.5, the deadline of each grid), LODO_JOBS (9),
# GRID_JOBS (6), SEEDS (0,1,2), EXTRA (more arguments for every run; a smoke test on a CPU:
# DEVICE=cpu MINUTES=3 SEEDS=0 EXTRA="--rounds 1 --local-epochs 1").
set -euo pipefail
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-8.5}
LODO_JOBS=${LODO_JOBS:-9}
GRID_JOBS=${GRID_JOBS:-6}
SEEDS=${SEEDS:-0,1,2}
EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/protofl_out}
RESULTS=${RESULTS:-open_measurements}
mkdir -p "$OUT" "$RESULTS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

lodo_settings=(--preset reduced-office --data-dir .devdata --device "$DEVICE" --set threads=1)
# shellcheck disable=SC2206  # EXTRA is a list of words on purpose
extra=($EXTRA)

# 1. Leave one domain out: one `protofl compare --holdout each` per (algorithm, seed), in
#    parallel; each runs its four held-out domains in turn.
python3 benchmarks/parallel_grid.py --algorithms fpl-fedheal,fpl,fedavg --seeds "$SEEDS" \
    --jobs "$LODO_JOBS" --deadline-minutes "$MINUTES" --out "$RESULTS/lodo_office_reduced" \
    --no-report -- --holdout each --no-plots "${lodo_settings[@]}" "${extra[@]}" \
    > "$OUT/lodo.log" 2>&1 &
lodo=$!

# 2. Attacks x defences on the embedded benchmark, 2 of 8 clients lying, 10 rounds x 1 epoch
#    (the protocol of benchmarks/results/robustness_embedded), stopped at the deadline.
timeout --signal=INT "$(python3 -c "print(int(60 * $MINUTES))")" \
    python3 benchmarks/robustness_grid.py --out "$RESULTS/robustness_embedded" \
    --algorithms fpl,fedavg,fpl-fedheal --seeds "$SEEDS" \
    --jobs "$GRID_JOBS" -- --rounds 10 --local-epochs 1 --device "$DEVICE" --set threads=1 \
    "${extra[@]}" > "$OUT/robustness.log" 2>&1 || echo "robustness grid stopped at the deadline"
wait "$lodo" || echo "leave-one-domain-out grid ended with status $?"

# The tables from whatever finished (finished runs are skipped, so nothing trains again;
# an unfinished cell would, so the leave-one-out table is written only when all are done).
python3 benchmarks/robustness_grid.py --out "$RESULTS/robustness_embedded" \
    --algorithms fpl,fedavg,fpl-fedheal --seeds "$SEEDS" \
    --summarise-only >> "$OUT/robustness.log" 2>&1 || true
if ! grep -q "stopped\|failed\|not started" "$RESULTS/lodo_office_reduced/parallel_runs.json"; then
    python3 -m protofl compare --algorithms fedavg,fpl,fpl-fedheal --seeds "$SEEDS" \
        --holdout each --out "$RESULTS/lodo_office_reduced" -q --no-plots \
        "${lodo_settings[@]}" "${extra[@]}" >> "$OUT/lodo.log" 2>&1 || true
fi
tail -n 25 "$OUT/lodo.log" "$OUT/robustness.log"
tar --exclude=checkpoint.pt -czf "$OUT/open_measurements.tgz" "$RESULTS"
ls -la "$OUT"
