#!/usr/bin/env bash
# Sets up and runs strand's whole test suite on a fresh machine (no GPU
# needed): formatting, lints, then every unit, conformance and end-to-end
# test. Needs only a Rust toolchain; crates are fetched by cargo.
set -euo pipefail
cd "$(dirname "$0")"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Release mode: the tests run real model arithmetic (fixture conformance,
# property tests, the binaries end to end), which is slow unoptimised.
echo "== cargo test"
cargo test --workspace --release --locked

echo "== all tests passed"
