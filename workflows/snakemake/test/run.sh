#!/usr/bin/env bash
# End-to-end test of the Snakemake workflow on the fixture models and the
# small test genome: runs it with `snakemake --cores 2` and checks every
# merged output (and the calibration the scores' percentiles come from)
# against a single unsharded run of the same binaries; kills
# a run mid-way and checks that the rerun completes with the same outputs;
# then checks that a rerun after a lost shard redoes only that shard.
#
#   STRAND_BIN=target/release SNAKEMAKE=.venv/bin/snakemake workflows/snakemake/test/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
bin=$(cd "${STRAND_BIN:-$repo/target/release}" && pwd)
snakemake=${SNAKEMAKE:-snakemake}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

model=$repo/test-data/models/ps-tiny
ref=$repo/test-data/genome/ref.fa
vcf=$here/variants.vcf
# shellcheck source=config.sh
. "$here/config.sh"
test_config "$work/config.yaml" 2000

sm() { "$snakemake" -s "$repo/workflows/snakemake/Snakefile" --configfile "$work/config.yaml" \
  -d "$work" --cores 2 "$@"; }
fail() { echo "workflow test: $*" >&2; exit 1; }

echo "workflow test: device cuda:all (dry run)"
# Several GPUs go to strand-embed and strand-score; strand-classify, which
# runs on one device, gets the first.
sm -n -p --forceall all --config device=cuda:all >"$work/dry.log" 2>&1 || { cat "$work/dry.log"; fail "dry run failed"; }
grep -q "strand-embed .*--device cuda:all " "$work/dry.log" || fail "embed does not get cuda:all"
grep -q "strand-score .*--device cuda:all " "$work/dry.log" || fail "score does not get cuda:all"
grep -q "strand-score calibrate .*--device cuda:all " "$work/dry.log" || fail "calibrate does not get cuda:all"
grep -q "strand-score .*--vcf .*--calibration .*/score/model.calib.tsv" "$work/dry.log" ||
  fail "the score jobs do not get the calibration"
grep -q "strand-classify predict .*--device cuda " "$work/dry.log" || fail "classify does not get one GPU"

echo "workflow test: snakemake run"
sm --quiet all >"$work/snakemake.log" 2>&1 || { cat "$work/snakemake.log"; fail "snakemake failed"; }
res=$work/results

echo "workflow test: unsharded runs of the same binaries"
# -@ 1 as in the workflow: the CPU engine's last bits depend on the
# number of threads.
"$bin/strand-embed" -m "$model" --device cpu -@ 1 -q "$ref" --pool bin:64 --window 4096 \
  --format npy --out-dir "$work/whole-embed"
"$bin/strand-score" calibrate -m "$model" --device cpu -@ 1 -q -f "$ref" \
  -R "$repo/test-data/genome/regions.bed" --scores llr,embed_dist --window 1000 --sample 100 \
  -o "$work/whole.calib.tsv"
"$bin/strand-score" -m "$model" --device cpu -@ 1 -q -f "$ref" --vcf "$vcf" --scores llr,embed_dist \
  --window 1000 --skip-missing-contigs --calibration "$work/whole.calib.tsv" -o "$work/whole.vcf.gz"
"$bin/strand-classify" predict -m "$repo/test-data/models/ps-tiny-cls" --device cpu -@ 1 -q \
  "$repo/test-data/sequences.fa" -o "$work/whole-pred.tsv"
body() { gzip -dc "$1" | grep -v '^##'; }

# The workflow's merged outputs must equal the unsharded runs.
check() {
  for f in "$work"/whole-embed/*.npy; do
    cmp -s "$f" "$res/embed/$(basename "$f")" || fail "$1: embed: $(basename "$f") differs from the unsharded run"
  done
  [ "$(ls "$res"/embed/*.npy | wc -l)" = "$(ls "$work"/whole-embed/*.npy | wc -l)" ] || fail "$1: embed: file count"
  cat "$res"/embed/index.shard-*-of-3.tsv | grep -v '^name' | sort >"$work/sharded.idx"
  grep -v '^name' "$work/whole-embed/index.tsv" | sort >"$work/whole.idx"
  cmp -s "$work/sharded.idx" "$work/whole.idx" || fail "$1: embed: shard indexes differ from the unsharded index"
  cmp -s <(grep -v '^#command=' "$res/score/model.calib.tsv") <(grep -v '^#command=' "$work/whole.calib.tsv") ||
    fail "$1: calibrate: the calibration differs from the direct run"
  # (grep -c reads to the end: grep -q could stop gzip with SIGPIPE.)
  [ "$(gzip -dc "$res/score/scored.vcf.gz" | grep -c '^##INFO=<ID=STRAND_LLR_PCTL,Number=A,Type=Float,')" = 1 ] ||
    fail "$1: score: the merged VCF does not declare STRAND_LLR_PCTL"
  [ "$(body "$res/score/scored.vcf.gz" | grep -c 'STRAND_LLR_PCTL=')" -gt 0 ] || fail "$1: score: no percentiles"
  cmp -s <(body "$res/score/scored.vcf.gz") <(body "$work/whole.vcf.gz") ||
    fail "$1: score: merged VCF records differ from the unsharded run"
  [ -s "$res/score/scored.vcf.gz.tbi" ] || fail "$1: score: no index"
  # Every record, those on contigs missing from the reference included.
  records_in=$(grep -vc '^#' "$vcf")
  records_out=$(body "$res/score/scored.vcf.gz" | grep -vc '^#')
  [ "$records_out" = "$records_in" ] || fail "$1: score: $records_in records in, $records_out out"
  [ "$(body "$res/score/scored.vcf.gz" | grep -c 'strand_missing_contig')" = "$(grep -c '^chrZ' "$vcf")" ] ||
    fail "$1: score: records on chrZ (not in the reference) are not marked strand_missing_contig"
  cmp -s "$res/classify/predictions.tsv" "$work/whole-pred.tsv" || fail "$1: classify: predictions differ"
  echo "workflow test: $1: outputs equal the unsharded runs"
}
check "first run"

echo "workflow test: killed mid-way, then rerun"
rm -rf "$res" "$work/.snakemake"
setsid "$snakemake" -s "$repo/workflows/snakemake/Snakefile" --configfile "$work/config.yaml" \
  -d "$work" --cores 2 --quiet all >"$work/killed.log" 2>&1 &
victim=$!
# Kill as soon as the first result exists: some jobs done, others running.
for _ in $(seq 300); do
  compgen -G "$res/embed/*.npy" >/dev/null && break
  sleep 0.05
done
kill -9 -- "-$victim" 2>/dev/null || true
wait "$victim" 2>/dev/null || true
echo "workflow test: killed with $(find "$res" -type f 2>/dev/null | wc -l) output files written"
# Snakemake's own lock survives a hard kill; strand left no complete-looking
# file behind, so whatever exists is whole.
sm --unlock --quiet >/dev/null 2>&1
sm --quiet --rerun-incomplete all >"$work/rerun.log" 2>&1 || { cat "$work/rerun.log"; fail "rerun after kill failed"; }
check "rerun after a kill"

echo "workflow test: a lost shard is redone, nothing else"
rm "$res/embed/index.shard-2-of-3.tsv"
sm -n --quiet rules all >"$work/dry.log" 2>&1 || { cat "$work/dry.log"; fail "dry run failed"; }
grep -qE '^embed_shard +1$' "$work/dry.log" || { cat "$work/dry.log"; fail "expected exactly one embed_shard job"; }
if grep -qE '^(score_calibrate|score_contig|score_other_contigs|score_merge|classify) ' "$work/dry.log"; then
  cat "$work/dry.log"; fail "finished jobs would rerun"
fi
sm --quiet all >"$work/snakemake2.log" 2>&1 || { cat "$work/snakemake2.log"; fail "rerun failed"; }
[ -s "$res/embed/index.shard-2-of-3.tsv" ] || fail "shard 2 not redone"
check "after redoing the shard"
echo "workflow test: records on contigs missing from the reference fail without --skip-missing-contigs"
sed 's/^  extra: "--skip-missing-contigs"$/  extra: ""/' "$work/config.yaml" >"$work/strict.yaml"
grep -q '^  extra: ""$' "$work/strict.yaml" || fail "strict config not made"
if "$snakemake" -s "$repo/workflows/snakemake/Snakefile" --configfile "$work/strict.yaml" -d "$work" \
  --cores 1 --quiet --config outdir="$work/strict" -- "$work/strict/score/other-contigs.vcf.gz" \
  >"$work/strict.log" 2>&1; then
  fail "the other-contigs job succeeded on records on chrZ without --skip-missing-contigs"
fi
grep -q 'contig "chrZ" is not in the reference' "$work/strict/logs/score_other_contigs.log" ||
  { cat "$work/strict/logs/score_other_contigs.log"; fail "no error naming chrZ"; }

echo "workflow test: a contig past 2^29 gives .csi indexes (dry run)"
: >"$work/big.fa"
printf 'big\t600000000\t5\t600000000\t600000001\n' >"$work/big.fa.fai"
sm -n -p --forceall all --config reference="$work/big.fa" >"$work/big.log" 2>&1 || { cat "$work/big.log"; fail "dry run failed"; }
grep -q "strand concat --write-index=csi " "$work/big.log" || fail "the merge does not write a .csi"
grep -q "scored.vcf.gz.csi" "$work/big.log" || fail "the merge's output is not the .csi"
grep -q "strand-score .*--write-index=csi" "$work/big.log" || fail "score jobs do not write a .csi"
echo "workflow test: ok"
