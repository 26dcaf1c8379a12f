#!/usr/bin/env bash
# Checks what can be checked of the Nextflow modules without Nextflow
# (which cannot be installed on CI machines): every option that a module's
# strand command line passes exists in that binary's --help, and is also
# used by the Snakemake workflow or an end-to-end test, so a renamed or
# misspelled option fails CI. Then the indexes: a module that takes a
# FASTA declares its .fai and .gzi as inputs (Nextflow stages only what is
# declared), main.nf passes them, and the module's command runs in a
# directory holding only what it declares, on the BGZF test genome.
#
#   STRAND_BIN=target/release workflows/nextflow/check.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$(cd "${STRAND_BIN:-$repo/target/release}" && pwd)
status=0
for nf in "$here"/modules/strand/*/main.nf; do
  # The command: the first word of the script block's first line.
  cmd=$(awk '/"""/{getline; print $1; exit}' "$nf")
  sub=$(awk '/"""/{getline; print $2; exit}' "$nf")
  case "$sub" in predict|concat) help=$("$bin/$cmd" "$sub" --help) ;; *) help=$("$bin/$cmd" --help) ;; esac
  # Options between the command and the closing of its line continuation.
  # (and in the script block's `def` lines, which choose some of them).
  opts=$( { awk '/^ *script:/{f=1; next} /"""/{exit} f' "$nf"; awk '/"""/{f=1; next} f && /^ *$/{exit} f' "$nf"; } |
    grep -oE '(^|[[:space:]"'"'"'])-(-[a-z][a-z-]*|[a-zA-Z@])' | tr -d " \"'" | sort -u)
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

# Indexes: what each input needs next to it, declared in the same tuple.
needs() {
  case "$1" in
    fasta) echo "fai gzi" ;;
    bam) echo "bai" ;;
  esac
}
for nf in "$here"/modules/strand/*/main.nf; do
  name=$(basename "$(dirname "$nf")")
  while read -r line; do
    for input in $(grep -oE 'path\(([a-z]+)\)' <<<"$line" | sed -E 's/path\((.*)\)/\1/'); do
      for ix in $(needs "$input"); do
        if ! grep -qF "path($ix)" <<<"$line"; then
          echo "nextflow check: $name: input $input is staged without its .$ix (declare path($ix) next to it)" >&2
          status=1
        fi
      done
    done
  done < <(awk '/^ *input:/{f=1; next} /^ *output:/{exit} f && /tuple|path\(/' "$nf")
done
if ! grep -qE 'fasta, fai, gzi' "$here/main.nf" || ! grep -qF '.gzi' "$here/main.nf"; then
  echo "nextflow check: main.nf does not pass the reference's .gzi to the modules" >&2
  status=1
fi

# Staging: the declared inputs only, named as Nextflow would stage them,
# from the BGZF test genome; the module's command must run there.
stage=$(mktemp -d /tmp/strand-nf-stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
stage_fasta() {  # module dir: links ref.fa.gz and the indexes it declares
  local nf=$1 dir=$2 line
  mkdir -p "$dir"
  line=$(awk '/^ *input:/{f=1; next} /^ *output:/{exit} f && /path\(fasta\)/' "$nf")
  ln -s "$repo/test-data/genome/ref.fa.gz" "$dir/ref.fa.gz"
  grep -qF 'path(fai)' <<<"$line" && ln -s "$repo/test-data/genome/ref.fa.gz.fai" "$dir/ref.fa.gz.fai"
  grep -qF 'path(gzi)' <<<"$line" && ln -s "$repo/test-data/genome/ref.fa.gz.gzi" "$dir/ref.fa.gz.gzi"
  return 0
}
model=$repo/test-data/models/ps-tiny
stage_fasta "$here/modules/strand/score/main.nf" "$stage/score"
ln -s "$repo/workflows/snakemake/test/variants.vcf" "$stage/score/variants.vcf"
if ! (cd "$stage/score" && "$bin/strand-score" -m "$model" --device cpu -@ 1 -q -f ref.fa.gz \
  --vcf variants.vcf -r chrA --window 1000 -o v.chrA.vcf.gz 2>err.txt); then
  echo "nextflow check: score: the command fails on the staged inputs: $(cat "$stage/score/err.txt")" >&2
  status=1
else
  echo "nextflow check: score: runs on its staged inputs (ref.fa.gz $(cd "$stage/score" && ls ref.fa.gz.* | sed 's/ref.fa.gz//' | tr '\n' ' '))"
fi
stage_fasta "$here/modules/strand/embed/main.nf" "$stage/embed"
if ! (cd "$stage/embed" && "$bin/strand-embed" -m "$model" --device cpu -@ 1 -q ref.fa.gz \
  --pool mean --window 1024 --format npy --out-dir embed --shard 3/3 --resume 2>err.txt); then
  echo "nextflow check: embed: the command fails on the staged inputs: $(cat "$stage/embed/err.txt")" >&2
  status=1
else
  echo "nextflow check: embed: runs on its staged inputs (ref.fa.gz $(cd "$stage/embed" && ls ref.fa.gz.* | sed 's/ref.fa.gz//' | tr '\n' ' '))"
fi
exit $status
