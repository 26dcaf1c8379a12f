#!/usr/bin/env bash
# GPU checks and benchmarks, run on a CUDA machine that has no Rust
# toolchain. Build here first with scripts/device-stage.sh, which copies
# the release binaries and test executables into dev-out/; then run this
# script from the repository root on the GPU machine:
#
#   scripts/device-check.sh [tests|bench|tune|long|all]   (logs under $OUT or dev-out/logs)
set -uo pipefail
what=${1:-all}
out=${OUT:-dev-out/logs}
mkdir -p "$out"
# Test executables find test-data/ through the absolute path they were
# built at; point that path at this checkout.
built_at=$(cat dev-out/built_at)
if [ ! -e "$built_at" ]; then mkdir -p "$(dirname "$built_at")" && ln -s "$PWD" "$built_at"; fi
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
export STRAND_KERNEL_CACHE=/tmp/strand-kernels
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$out/gpu.txt"
dev-out/strand doctor 2>&1 | tee "$out/doctor.txt"

run() { # name, command...
  local name=$1; shift
  echo "== $name"
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc ($((SECONDS - t0)) s)"
  grep -E "test result|FAILED|panicked|SKIPPED|rel L2|max \|diff\|" "$out/$name.log" | tail -40
}

if [ "$what" = tests ] || [ "$what" = all ]; then
  run gpu dev-out/gpu --show-output --test-threads 1
  STRAND_TEST_DEVICE=cuda STRAND_TEST_PRECISION=fp32 run conformance-gpu dev-out/conformance --test-threads 1
  STRAND_TEST_DEVICE=cuda STRAND_TEST_PRECISION=fp32 run rc-gpu dev-out/rc_equivariance --test-threads 1
  STRAND_TEST_DEVICE=cuda STRAND_TEST_PRECISION=fp32 run variants-gpu dev-out/variants --test-threads 1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  echo "== bench"
  dev-out/strand bench --device cuda --precision bf16,fp32 --kind ps,ph \
    --lengths 1024,16384,131072,1048576 --repeat 3 --profile 131072 2>&1 | tee "$out/bench.tsv"
  echo "== bench: many short sequences, one batch"
  dev-out/strand bench --device cuda --precision bf16,fp32 --kind ps,ph \
    --lengths 1024 --batch 1024 --repeat 3 2>&1 | tee "$out/bench-batch.tsv"
fi
if [ "$what" = tune ] || [ "$what" = all ]; then
  for b in 1 4 5 6; do
    echo "== bench: STRAND_SCAN_MIN_BLOCKS=$b"
    STRAND_SCAN_MIN_BLOCKS=$b dev-out/strand bench --device cuda --precision bf16 --kind ps \
      --lengths 131072,1048576 --repeat 3 2>&1 | tee "$out/bench-blocks$b.tsv"
  done
fi
if [ "$what" = long ] || [ "$what" = all ]; then
  echo "== bench: longest single passes"
  dev-out/strand bench --device cuda --precision bf16 --kind ps \
    --lengths 4194304,8388608 --repeat 1 2>&1 | tee "$out/bench-long.tsv"
fi
