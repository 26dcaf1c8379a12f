#!/usr/bin/env bash
# SLURM for real: starts a one-node cluster on this machine (munge,
# slurmctld and slurmd on localhost, no cgroups: proctrack/linuxproc,
# task/none), then on the fixture model and the small test genome:
#
#  1. workflows/slurm: embed-array.sbatch as a 3-task array and merge.sbatch
#     after it (afterok); the outputs equal a local unsharded run;
#  2. one array task cancelled (scancel), the merge left waiting on it,
#     the task resubmitted alone, the merge resubmitted: identical outputs;
#  3. the Snakemake workflow with its SLURM executor plugin
#     (snakemake-executor-plugin-slurm): the merged VCF equals the local
#     workflow's (the Snakemake test's unsharded run of the same binaries).
#
# Needs root (the daemons run as root, like on a CI machine) and Debian's
# slurm-wlm (`apt-get install slurm-wlm`). Stops the daemons it started,
# by their pid files, however it ends; STRAND_SLURM_KEEP=1 keeps its
# directory (logs, outputs) for a look.
#
#   STRAND_BIN=target/release SNAKEMAKE=.venv/bin/snakemake workflows/slurm/test/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
bin=$(cd "${STRAND_BIN:-$repo/target/release}" && pwd)
snakemake=$(command -v "${SNAKEMAKE:-snakemake}") || { echo "slurm test: snakemake not found" >&2; exit 1; }
case $snakemake in /*) ;; *) snakemake=$PWD/$snakemake ;; esac
fail() { echo "slurm test: $*" >&2; exit 1; }
say() { echo "slurm test: $*"; }

for c in slurmctld slurmd munged sbatch squeue scancel scontrol sinfo; do
  command -v "$c" >/dev/null || fail "$c not found: install Debian's slurm-wlm (apt-get install slurm-wlm)"
done
[ "$(id -u)" = 0 ] || fail "needs root: slurmd runs jobs as their user and must start as root"

work=$(mktemp -d /tmp/strand-slurm.XXXXXX)
chmod 755 "$work"
started_munge=
stop() {
  local rc=$?
  if [ -n "${SLURM_CONF:-}" ] && [ -s "$work/slurmctld.pid" ]; then
    scancel --user=root >/dev/null 2>&1 || true
  fi
  for p in "$work/slurmd.pid" "$work/slurmctld.pid" ${started_munge:+/run/munge/munged.pid}; do
    if [ -s "$p" ]; then
      pid=$(cat "$p")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  if [ "$rc" != 0 ]; then
    for log in slurmctld.log slurmd.log; do
      [ -s "$work/$log" ] && { echo "--- $log (last lines)" >&2; tail -n 15 "$work/$log" >&2; }
    done
  fi
  if [ -n "${STRAND_SLURM_KEEP:-}" ]; then echo "slurm test: kept $work" >&2; else rm -rf "$work"; fi
}
trap stop EXIT

# munge: the daemon that authenticates slurm's messages.
if ! { [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
  mkdir -p /run/munge
  # As root, with the package's key; --force accepts the package's
  # munge-owned log and state paths.
  munged --force 2>"$work/munged.err" || fail "munged did not start: $(cat "$work/munged.err")"
  started_munge=1
fi

host=$(hostname -s)
cpus=$(nproc)
# What slurmd will find, less a margin: a node claiming more memory than
# it has is drained.
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
export SLURM_CONF=$work/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=strandtest
# Addresses given, so that nothing depends on the host name resolving.
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=${STRAND_SLURMCTLD_PORT:-16817}
SlurmdPort=${STRAND_SLURMD_PORT:-16818}
ReturnToService=2
# Finished jobs stay visible to squeue (the executor plugin's status
# source here: there is no accounting database).
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$work/state" "$work/spool"

say "starting slurmctld and slurmd ($host, $cpus CPUs, $mem MB)"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start (see $work/slurmctld.log above)"
if ! slurmd -f "$SLURM_CONF" 2>"$work/slurmd.err"; then
  fail "slurmd did not start: $(cat "$work/slurmd.err") $(tail -n 3 "$work/slurmd.log" 2>/dev/null)"
fi
ready=
for _ in $(seq 60); do
  if [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; then ready=1; break; fi
  sleep 0.5
done
[ -n "$ready" ] || fail "the node did not become idle: $(sinfo -N -o '%N %t %E' 2>&1 | tr '\n' ' ')"
say "cluster up: $(sinfo -h -o '%P %a %D %t')"

# Waits until none of the jobs is pending (for a reason other than a
# dependency that can never be met), running or completing.
wait_jobs() {
  local deadline=$((SECONDS + ${2:-180}))
  while squeue -h -j "$1" -t PD,R,CG -o '%T %r' 2>/dev/null | grep -v DependencyNeverSatisfied | grep -q .; do
    [ "$SECONDS" -lt "$deadline" ] || fail "jobs $1 still running after ${2:-180}s: $(squeue -j "$1" 2>&1 | tr '\n' ' ')"
    sleep 0.5
  done
}
# The states of the jobs (array tasks) of a job id, counted; finished
# ones stay listed for MinJobAge.
states() { squeue -h -t all -j "$1" -o '%T' 2>/dev/null | sort | uniq -c | tr -s ' ' | tr '\n' ' '; }

model=$repo/test-data/models/ps-tiny
ref=$repo/test-data/genome/ref.fa
export PATH="$bin:$PATH"
# The batch scripts ask for a GPU node's resources; here: one CPU, no GPU.
small=(--gres=none --cpus-per-task=1 --mem=500M --time=10)

say "local run: the same embedding, unsharded"
strand-embed -m "$model" -@ 1 -q "$ref" --pool bin:128 --rc-average --dtype f16 \
  --format npy --out-dir "$work/local"

# Compares the embeddings and the merged index with the local run.
same_as_local() {
  local dir=$1 what=$2 f
  for f in "$work"/local/*.npy; do
    cmp -s "$f" "$dir/$(basename "$f")" || fail "$what: $(basename "$f") differs from the local run"
  done
  [ "$(ls "$dir"/*.npy | wc -l)" = "$(ls "$work"/local/*.npy | wc -l)" ] || fail "$what: .npy count differs"
  cmp -s "$dir/index.tsv" "$work/local/index.tsv" || fail "$what: index.tsv differs from the local run"
  say "$what: outputs equal the local run ($(ls "$dir"/*.npy | wc -l) .npy files, index.tsv)"
}

say "1. sbatch array (3 tasks) + merge (afterok)"
cd "$work"
jid=$(sbatch --parsable "${small[@]}" --array=1-3 --output="$work/embed.%A_%a.log" \
  "$repo/workflows/slurm/embed-array.sbatch" "$ref" "$model" "$work/emb" 3)
mid=$(sbatch --parsable --dependency=afterok:"$jid" --output="$work/merge.%j.log" \
  "$repo/workflows/slurm/merge.sbatch" "$work/emb" 3)
wait_jobs "$jid,$mid"
[ "$(states "$jid")" = " 3 COMPLETED " ] || { tail -n 5 "$work"/embed.*.log >&2; fail "array $jid: $(states "$jid")"; }
[ "$(states "$mid")" = " 1 COMPLETED " ] || fail "merge $mid: $(states "$mid"); log: $(cat "$work"/merge.*.log)"
same_as_local "$work/emb" "array + merge"

say "2. one task cancelled (scancel), resubmitted alone"
jid=$(sbatch --parsable --hold "${small[@]}" --array=1-3 --output="$work/embed2.%A_%a.log" \
  "$repo/workflows/slurm/embed-array.sbatch" "$ref" "$model" "$work/emb2" 3)
mid=$(sbatch --parsable --dependency=afterok:"$jid" --output="$work/merge2.%j.log" \
  "$repo/workflows/slurm/merge.sbatch" "$work/emb2" 3)
scancel "${jid}_2"
scontrol release "$jid"
wait_jobs "$jid"
# Task 2, cancelled before it started, never ran; 1 and 3 did.
tasks=$(squeue -h -t all -j "$jid" -o '%K %T' | sort | tr '\n' ' ')
[ "$tasks" = "1 COMPLETED 3 COMPLETED " ] || fail "array $jid after scancel of task 2: $tasks"
# The merge cannot run: one task did not complete.
for _ in $(seq 20); do
  scontrol show job "$mid" | grep -q 'Reason=DependencyNeverSatisfied' && break
  sleep 0.5
done
scontrol show job "$mid" | grep -q 'JobState=PENDING Reason=DependencyNeverSatisfied' ||
  fail "merge $mid should wait forever on the cancelled task: $(scontrol show job "$mid" | grep JobState)"
[ ! -e "$work/emb2/index.tsv" ] || fail "index.tsv written although a task was cancelled"
[ ! -e "$work/emb2/index.shard-2-of-3.tsv" ] || fail "the cancelled task left its shard index"
scancel "$mid"
rid=$(sbatch --parsable "${small[@]}" --array=2 --output="$work/embed2.%A_%a.log" \
  "$repo/workflows/slurm/embed-array.sbatch" "$ref" "$model" "$work/emb2" 3)
mid=$(sbatch --parsable --dependency=afterok:"$rid" --output="$work/merge2.%j.log" \
  "$repo/workflows/slurm/merge.sbatch" "$work/emb2" 3)
wait_jobs "$rid,$mid"
[ "$(states "$mid")" = " 1 COMPLETED " ] || fail "merge after resubmitting: $(states "$mid"); $(cat "$work"/merge2.*.log)"
same_as_local "$work/emb2" "after scancel and resubmission"

say "3. Snakemake with the SLURM executor plugin"
vcf=$repo/workflows/snakemake/test/variants.vcf
# shellcheck source=../../snakemake/test/config.sh
. "$repo/workflows/snakemake/test/config.sh"
test_config "$work/config.yaml" 500
# Inside each job the plugin deletes every SLURM_* variable (SLURM_CONF
# included) before it runs the rule through srun, which then looks for
# slurm.conf in its default place (/etc/slurm) only; this cluster's lives
# in $work, so the jobs find an srun on PATH that says where.
mkdir -p "$work/bin"
printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" >"$work/bin/srun"
chmod +x "$work/bin/srun"
# No accounting database here: no account, and job states from squeue
# (MinJobAge keeps finished jobs listed).
PATH="$work/bin:$PATH" \
"$snakemake" -s "$repo/workflows/snakemake/Snakefile" --configfile "$work/config.yaml" -d "$work" \
  --executor slurm --jobs 4 --latency-wait 5 --slurm-no-account --slurm-status-command squeue \
  --slurm-init-seconds-before-status-checks 2 \
  --default-resources slurm_partition=main mem_mb=500 runtime=10 \
  --quiet all >"$work/snakemake.log" 2>&1 || { tail -n 40 "$work/snakemake.log" >&2; fail "snakemake on SLURM failed"; }
res=$work/results
# What ran under SLURM: the jobs after the merge of part 2, by rule (the
# plugin puts the rule's name in the job's comment).
squeue -h -t all -o '%A %T %k' | awk -v after="$mid" '$1 > after' >"$work/jobs.txt"
[ -s "$work/jobs.txt" ] || fail "snakemake submitted no SLURM job"
say "snakemake's SLURM jobs: $(awk '{print $3, $2}' "$work/jobs.txt" | sed -E 's/rule_([a-z_]+)_wildcards[^ ]*/\1/; s/rule_//' | sort | uniq -c | tr -s ' ' | tr '\n' ',')"
if awk '$2 != "COMPLETED"' "$work/jobs.txt" | grep -q .; then
  fail "a SLURM job of the workflow did not complete: $(cat "$work/jobs.txt")"
fi
# The same commands run locally, unsharded, as in the Snakemake test.
strand-embed -m "$model" --device cpu -@ 1 -q "$ref" --pool bin:64 --window 4096 \
  --format npy --out-dir "$work/whole-embed"
strand-score calibrate -m "$model" --device cpu -@ 1 -q -f "$ref" \
  -R "$repo/test-data/genome/regions.bed" --scores llr,embed_dist --window 1000 --sample 100 \
  -o "$work/whole.calib.tsv"
strand-score -m "$model" --device cpu -@ 1 -q -f "$ref" --vcf "$vcf" --scores llr,embed_dist \
  --window 1000 --skip-missing-contigs --calibration "$work/whole.calib.tsv" -o "$work/whole.vcf.gz"
strand-classify predict -m "$repo/test-data/models/ps-tiny-cls" --device cpu -@ 1 -q \
  "$repo/test-data/sequences.fa" -o "$work/whole-pred.tsv"
for f in "$work"/whole-embed/*.npy; do
  cmp -s "$f" "$res/embed/$(basename "$f")" || fail "snakemake on SLURM: embed: $(basename "$f") differs"
done
body() { gzip -dc "$1" | grep -v '^##'; }
cmp -s <(grep -v '^#command=' "$res/score/model.calib.tsv") <(grep -v '^#command=' "$work/whole.calib.tsv") ||
  fail "snakemake on SLURM: the calibration differs from the local run"
cmp -s <(body "$res/score/scored.vcf.gz") <(body "$work/whole.vcf.gz") ||
  fail "snakemake on SLURM: the merged VCF differs from the local run"
[ "$(body "$res/score/scored.vcf.gz" | grep -vc '^#')" = "$(grep -vc '^#' "$vcf")" ] ||
  fail "snakemake on SLURM: record count"
cmp -s "$res/classify/predictions.tsv" "$work/whole-pred.tsv" || fail "snakemake on SLURM: predictions differ"
say "snakemake on SLURM: outputs equal the local runs"
say "ok"
