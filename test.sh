#!/usr/bin/env bash
# Sets up and runs strand's whole test suite on a fresh machine (no GPU
# needed): formatting, lints, then every unit, conformance and end-to-end
# test, then the Snakemake workflow end to end and the Nextflow modules'
# command lines. Needs a Rust toolchain and python3; crates are fetched by cargo,
# and NVRTC (to compile every CUDA kernel, no GPU needed) comes from the
# nvidia-cuda-nvrtc wheel in a local virtualenv.
set -euo pipefail
cd "$(dirname "$0")"
# Nothing here reads the terminal.
exec </dev/null
# Cargo caches the answers of its rustc probes in target/.rustc_info.json,
# failures included. On CI a failed probe was cached during the clippy
# phase (its "source" was another rustc's error text) and then replayed by
# every later cargo command; probing afresh each time costs milliseconds.
export CARGO_CACHE_RUSTC_INFO=0

echo "== NVRTC for the kernel compile tests, snakemake for the workflow test"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "nvidia-cuda-nvrtc==13.0.*" "snakemake>=9,<10"
nvrtc_lib=$(.venv/bin/python -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))')
export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Kernel tests fail rather than skip when NVRTC is missing.
export STRAND_REQUIRE_NVRTC=1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Release mode: the tests run real model arithmetic (fixture conformance,
# property tests, the binaries end to end), which is slow unoptimised.
echo "== cargo test"
cargo test --workspace --release --locked

echo "== workflows"
STRAND_BIN=target/release SNAKEMAKE=.venv/bin/snakemake workflows/snakemake/test/run.sh
STRAND_BIN=target/release workflows/nextflow/check.sh

# GPU tests skip on a machine without one; say so visibly.
cargo test --release --locked -p strand-core --test gpu -- --show-output 2>&1 | grep SKIPPED || true

echo "== all tests passed"
