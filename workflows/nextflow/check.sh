#!/usr/bin/env bash
# Checks what can be checked of the Nextflow modules without Nextflow
# (which cannot be installed on CI machines): every option that a module's
# strand command line passes exists in that binary's --help, and is also
# used by the Snakemake workflow or an end-to-end test, so a renamed or
# misspelled option fails CI.
#
#   STRAND_BIN=target/release workflows/nextflow/check.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${STRAND_BIN:-$repo/target/release}
status=0
for nf in "$here"/modules/strand/*/main.nf; do
  # The command: the first word of the script block's first line.
  cmd=$(awk '/"""/{getline; print $1; exit}' "$nf")
  sub=$(awk '/"""/{getline; print $2; exit}' "$nf")
  case "$sub" in predict|concat) help=$("$bin/$cmd" "$sub" --help) ;; *) help=$("$bin/$cmd" --help) ;; esac
  # Options between the command and the closing of its line continuation.
  opts=$(awk '/"""/{f=1; next} f && /^ *$/{exit} f' "$nf" | grep -oE '(^|[[:space:]])-(-[a-z][a-z-]*|[a-zA-Z@])' | tr -d ' ' | sort -u)
  for o in $opts; do
    if ! grep -qE "(^|[[:space:],])$o([[:space:],=]|$)" <<<"$help"; then
      echo "nextflow check: $nf: $cmd has no option $o" >&2; status=1
    fi
    if ! grep -rqF -- "$o" "$repo/workflows/snakemake/Snakefile" "$repo/tests/cli"; then
      echo "nextflow check: $nf: $cmd $o is not exercised by the Snakemake workflow or tests/cli" >&2; status=1
    fi
  done
  case "$sub" in predict|concat) shown="$cmd $sub" ;; *) shown=$cmd ;; esac
  echo "nextflow check: $(basename "$(dirname "$nf")"): $shown options ok: $(echo $opts)"
done
exit $status
