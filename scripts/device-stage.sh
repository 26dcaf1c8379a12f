#!/usr/bin/env bash
# Builds the release binaries and test executables and copies them into
# dev-out/ (git-ignored) for scripts/device-check.sh on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release
mkdir -p dev-out
cp "$target/release/strand" "$target/release/strand-embed" "$target/release/strand-score" "$target/release/strand-classify" dev-out/
cargo test --release --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    exe = m.get("executable")
    if exe and m["target"]["kind"] == ["test"]:
        shutil.copy(exe, "dev-out/" + m["target"]["name"])
    # strand-core'"'"'s unit tests hold the per-op GPU-vs-CPU harness.
    if exe and m["target"]["name"] == "strand_core" and m["target"]["kind"] == ["lib"]:
        shutil.copy(exe, "dev-out/core_unit")
'
# The carry limit is 64 MiB: drop debug info.
strip dev-out/* 2>/dev/null || true
pwd >dev-out/built_at
ls -la dev-out
