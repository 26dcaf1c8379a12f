#!/usr/bin/env bash
# Sets up and runs strand's whole test suite on a fresh machine (no GPU
# needed): formatting, lints, then every unit, conformance and end-to-end
# test, then the Snakemake workflow end to end, the Nextflow modules'
# command lines and staged indexes, and SLURM: a one-node cluster on this
# machine running the sbatch array and the Snakemake workflow (Debian's
# slurm-wlm, installed when missing: root). Needs a Rust toolchain and
# python3; crates are fetched by cargo, and NVRTC (to compile every CUDA
# kernel, no GPU needed) comes from the nvidia-cuda-nvrtc wheel in a local
# virtualenv.
set -euo pipefail
cd "$(dirname "$0")"
# /dev/null must be the null device. Rust's Stdio::null() opens it, so
# cargo's rustc probe (`rustc -`, whose stdin is "null") reads it as the
# source of an empty crate. On CI machines it has been found replaced by a
# regular file collecting other programs' output, and the probe then fails
# ("failed to run `rustc` to learn about target-specific information").
# A test script must never modify system devices, so we only detect this
# and stop: repairing /dev/null is the machine administrator's job.
# STRAND_NULL_DEVICE overrides the path so the check itself can be tested.
null_device() {
  local dev=${STRAND_NULL_DEVICE:-/dev/null}
  [ -c "$dev" ] && return 0
  echo "test.sh: $dev is not a character device: the null device is broken on this machine; ask an administrator to restore it, then rerun" >&2
  exit 1
}
null_device

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
null_device
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
null_device
cargo clippy --workspace --all-targets --locked -- -D warnings

# Release mode: the tests run real model arithmetic (fixture conformance,
# property tests, the binaries end to end), which is slow unoptimised.
echo "== cargo test"
null_device
cargo test --workspace --release --locked

echo "== workflows"
STRAND_BIN=target/release SNAKEMAKE=.venv/bin/snakemake workflows/snakemake/test/run.sh
STRAND_BIN=target/release workflows/nextflow/check.sh

# SLURM for real: a one-node cluster on this machine (Debian's slurm-wlm,
# installed here when missing; CI runs as root), the sbatch array and the
# Snakemake workflow through its SLURM executor plugin.
echo "== SLURM"
if [ -n "${STRAND_SKIP_SLURM:-}" ]; then
  echo "SKIPPED: the SLURM test (STRAND_SKIP_SLURM is set)"
else
  if ! command -v slurmd >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm >/dev/null
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "snakemake-executor-plugin-slurm>=2.8,<3"
  STRAND_BIN=target/release SNAKEMAKE=.venv/bin/snakemake workflows/slurm/test/run.sh
fi

# GPU tests skip on a machine without one; say so visibly.
null_device
cargo test --release --locked -p strand-core --test gpu -- --show-output 2>&1 | grep SKIPPED || true

echo "== all tests passed"
