# The Snakemake workflow's test configuration, shared by the local test
# (run.sh here) and the SLURM test (workflows/slurm/test/run.sh), so that
# both run the same workflow on the same fixtures. Sourced; expects $bin,
# $model, $ref, $vcf, $repo and $work to be set.
#
#   test_config FILE MEM_MB
test_config() {
  cat >"$1" <<YAML
strand_bin: $bin
model: $model
reference: $ref
device: cpu
threads: 1
gpus_per_job: 0
mem_mb: $2
runtime_min: 10
outdir: $work/results
embed:
  shards: 3
  pool: "bin:64"
  extra: "--window 4096"
score:
  vcf: $vcf
  scores: "llr,embed_dist"
  window: 1000
  extra: "--skip-missing-contigs"
  calibrate:
    regions: $repo/test-data/genome/regions.bed
    sample: 100
    extra: ""
classify:
  model: $repo/test-data/models/ps-tiny-cls
  fasta: $repo/test-data/sequences.fa
  extra: ""
YAML
}
