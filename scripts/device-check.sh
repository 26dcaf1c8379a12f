#!/usr/bin/env bash
# GPU checks and benchmarks, run on a CUDA machine that has no Rust
# toolchain. Build here first with scripts/device-stage.sh, which copies
# the release binaries and test executables into dev-out/; then run this
# script from the repository root on the GPU machine:
#
#   scripts/device-check.sh [tests|bench|quick|long|embed|score|multi|multiscore|multiscore-large|all]   (logs under $OUT or dev-out/logs)
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
  grep -E "test result|FAILED|panicked|SKIPPED|rel L2|max \|diff\||checked" "$out/$name.log" | tail -40
}

if [ "$what" = tests ] || [ "$what" = all ]; then
  run ops dev-out/core_unit ops_ --show-output --test-threads 1
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
if [ "$what" = quick ]; then
  # The GPU issue's cases: PS/PH bf16 at 131,072 and 1,048,576, PS fp32 at
  # 131,072, PS bf16 8 x 16,384, and the profile at 131,072.
  dev-out/strand bench --device cuda --precision bf16 --kind ps,ph \
    --lengths 131072,1048576 --repeat 3 --profile 131072 2>&1 | tee "$out/bench-quick.tsv"
  # (The last line of `strand bench` is a '#' note about its calibration file.)
  dev-out/strand bench --device cuda --precision fp32 --kind ps --lengths 131072 --repeat 3 2>&1 |
    grep -v '^#' | tail -1 | tee -a "$out/bench-quick.tsv"
  dev-out/strand bench --device cuda --precision bf16 --kind ps --lengths 16384 --batch 8 --repeat 3 2>&1 |
    grep -v '^#' | tail -1 | tee -a "$out/bench-quick.tsv"
fi
if [ "$what" = long ] || [ "$what" = all ]; then
  echo "== bench: longest single passes"
  dev-out/strand bench --device cuda --precision bf16 --kind ps \
    --lengths 4194304,8388608 --repeat 1 2>&1 | tee "$out/bench-long.tsv"
fi
if [ "$what" = embed ] || [ "$what" = all ]; then
  # strand-embed end to end on a published-size random-weight model: a
  # 20 Mbp chromosome in 131,072-bp windows, binned; --window max; reads.
  models=/tmp/strand-models; mkdir -p "$models"
  dev-out/strand bench --kind ps,ph --save-models "$models" | tee "$out/models.txt"
  python3 - <<'PY'
import random
r = random.Random(5)
with open("/tmp/chr20m.fa", "w") as f:
    f.write(">chr1\n")
    s = "".join(r.choices("ACGT", k=20_000_000))
    for i in range(0, len(s), 60):
        f.write(s[i:i + 60] + "\n")
with open("/tmp/reads.fa", "w") as f:
    for i in range(100_000):
        f.write(f">r{i}\n" + "".join(r.choices("ACGT", k=150)) + "\n")
PY
  printf 'chr1\t20000000\t6\t60\t61\n' > /tmp/chr20m.fa.fai
  for kind in ps-256x16 ph-256x16; do
    run "embed-chr-$kind" /usr/bin/time -v dev-out/strand-embed -m "$models/$kind" --device cuda -v \
      /tmp/chr20m.fa --pool bin:128 --dtype f16 -o /tmp/chr.safetensors
    grep -E "strand-embed|Elapsed|Maximum resident" "$out/embed-chr-$kind.log"
  done
  run embed-window-max /usr/bin/time -v dev-out/strand-embed -m "$models/ps-256x16" --device cuda -v \
    /tmp/chr20m.fa -r chr1:1-12,000,000 --window max --pool bin:128 -o /tmp/max.safetensors
  grep -E "strand-embed|Elapsed|Maximum resident" "$out/embed-window-max.log"
  run embed-reads /usr/bin/time -v dev-out/strand-embed -m "$models/ps-256x16" --device cuda -v \
    /tmp/reads.fa --pool mean -o /tmp/reads.safetensors
  grep -E "strand-embed|Elapsed|Maximum resident" "$out/embed-reads.log"
  # The same region, tiled and batched on the GPU vs the CPU.
  region=(/tmp/chr20m.fa -r chr1:1-140,000 --window 65536 --pool bin:16)
  dev-out/strand-embed -m "$models/ps-256x16" --device cpu -q "${region[@]}" -o /tmp/cpu.safetensors
  for prec in fp32 bf16; do
    dev-out/strand-embed -m "$models/ps-256x16" --device cuda --precision $prec -q \
      "${region[@]}" -o "/tmp/gpu-$prec.safetensors"
    python3 - "$prec" <<'PY' | tee -a "$out/embed-gpu-vs-cpu.txt"
import json, math, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    t = h["chr1:1-140000"]
    s, e = t["data_offsets"]
    return struct.unpack(f"<{(e - s) // 4}f", b[8 + n + s:8 + n + e])
prec = sys.argv[1]
g, c = load(f"/tmp/gpu-{prec}.safetensors"), load("/tmp/cpu.safetensors")
num = sum((x - y) ** 2 for x, y in zip(g, c))
den = sum(y * y for y in c)
print(f"embed tiled GPU {prec} vs CPU: rel L2 {math.sqrt(num / den):.2e}, max |diff| {max(abs(x - y) for x, y in zip(g, c)):.2e}")
PY
  done
fi
ps_model() { # sets $models; the random-weight PS 256x16 checkpoint in it
  models=/tmp/strand-models; mkdir -p "$models"
  [ -d "$models/ps-256x16" ] || dev-out/strand bench --kind ps --save-models "$models" >/dev/null
}

score_data() { # MBP SEED PATH:N:INDELS...: /tmp/refMBPm.fa (+ .fai) and VCFs of
  # N random variants over its first MBP - 0.1 Mbp (INDELS 1: 20 % insertions)
  ps_model
  python3 - "$@" <<'PY'
import random, sys
mbp, seed = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(seed)
seq = "".join(r.choices("ACGT", k=mbp * 1_000_000))
with open(f"/tmp/ref{mbp}m.fa", "w") as f:
    f.write(">chr1\n")
    for i in range(0, len(seq), 60):
        f.write(seq[i:i + 60] + "\n")
for spec in sys.argv[3:]:
    path, n, indels = spec.split(":")
    pos = sorted(r.sample(range(1000, len(seq) - 100_000), int(n)))
    with open(path, "w") as f:
        f.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for p in pos:
            ref = seq[p - 1]
            alt = r.choice([b for b in "ACGT" if b != ref])
            if indels == "1" and r.random() < 0.2:
                alt = ref + "T"
            f.write(f"chr1\t{p}\t.\t{ref}\t{alt}\t.\t.\t.\n")
PY
  printf 'chr1\t%d\t6\t60\t61\n' "${1}000000" > "/tmp/ref${1}m.fa.fai"
}

score_both() { # NAME REF VCF WINDOW SCORES: cuda:0, then cuda:all, same VCF?
  local dev name
  for dev in cuda:0 cuda:all; do
    name=$1-${dev#cuda:}
    /usr/bin/time -f "$name: %e s wall, %M KB peak RSS" dev-out/strand-score -m "$models/ps-256x16" \
      --device $dev -f "$2" --vcf "$3" --window "$4" --scores "$5" -o /tmp/$name.vcf.gz 2>&1 |
      grep -vE "variants of" | tee "$out/$name.log"
    zcat /tmp/$name.vcf.gz | grep -v '^##strand_command' > /tmp/$name.vcf
  done
  cmp /tmp/$1-0.vcf /tmp/$1-all.vcf && echo "$1: cuda:all VCF identical to cuda:0" | tee -a "$out/multiscore.txt"
}

if [ "$what" = score ] || [ "$what" = all ]; then
  # strand-score throughput on a published-size random-weight model.
  score_data 4 7 /tmp/snv-dense.vcf:20000:0 /tmp/mixed-small.vcf:2000:1 /tmp/mixed-tiny.vcf:64:1
  sc() { # name, window, scores, vcf
    run "score-$1" /usr/bin/time -v dev-out/strand-score -m "$models/ps-256x16" --device cuda \
      -f /tmp/ref4m.fa --vcf "$4" --window "$2" --scores "$3" -o /tmp/out.vcf.gz
    grep -E "strand-score|Elapsed|Maximum resident" "$out/score-$1.log"
  }
  sc llr-w1k 1024 llr /tmp/snv-dense.vcf
  sc llr-w128k 131072 llr /tmp/snv-dense.vcf
  sc embed-w1k 1024 embed_dist /tmp/mixed-small.vcf
  sc embed-w128k 131072 embed_dist /tmp/mixed-tiny.vcf
  sc masked-w1k 1024 llr_masked /tmp/mixed-small.vcf
fi
if [ "$what" = multi ] || [ "$what" = all ]; then
  # Several GPUs: the same input on cuda:0 and on cuda:all must give the
  # same file; tokens/s for both (PS 256x16, 131,072-token windows), on a
  # 16 Mbp chromosome (pageable and page-locked result buffers) and on a
  # 64 Mbp one (steady state: fixed costs spread over 4x the rounds).
  ps_model
  for mbp in 16 64; do
    python3 -c "
import random
r = random.Random(9)
with open('/tmp/chr${mbp}m.fa', 'w') as f:
    f.write('>chr1\\n')
    s = ''.join(r.choices('ACGT', k=${mbp}_000_000))
    for i in range(0, len(s), 60): f.write(s[i:i + 60] + '\\n')
"
    printf 'chr1\t%d\t6\t60\t61\n' ${mbp}000000 > /tmp/chr${mbp}m.fa.fai
  done
  nvidia-smi -L | tee "$out/gpus.txt"
  # Startup alone (model load, contexts, cached kernels), on 1 kbp.
  for dev in cuda:0 cuda:all; do
    dev-out/strand-embed -m "$models/ps-256x16" --device $dev -q -r chr1:1-1000 /tmp/chr16m.fa -o /tmp/warm.safetensors
    /usr/bin/time -f "startup $dev: %e s wall" dev-out/strand-embed -m "$models/ps-256x16" --device $dev -q \
      -r chr1:1-1000 /tmp/chr16m.fa -o /tmp/warm.safetensors 2>&1 | tee -a "$out/multi.txt"
  done
  embed() { # name, device, input
    /usr/bin/time -f "%e s wall, %M KB peak RSS" dev-out/strand-embed -m "$models/ps-256x16" --device $2 -v \
      $3 --pool bin:128 -o /tmp/$1.safetensors 2>&1 | grep -vE "bases of" | sed "s/^/$1: /" | tee "$out/$1.log"
  }
  embed m16-gpu0 cuda:0 /tmp/chr16m.fa
  embed m16-all cuda:all /tmp/chr16m.fa
  STRAND_NO_PINNED=1 embed m16-gpu0-pageable cuda:0 /tmp/chr16m.fa
  STRAND_NO_PINNED=1 embed m16-all-pageable cuda:all /tmp/chr16m.fa
  embed m64-gpu0 cuda:0 /tmp/chr64m.fa
  embed m64-all cuda:all /tmp/chr64m.fa
  for f in m16-all m16-gpu0-pageable m16-all-pageable; do
    cmp /tmp/m16-gpu0.safetensors /tmp/$f.safetensors && echo "$f identical to m16-gpu0" | tee -a "$out/multi.txt"
  done
  cmp /tmp/m64-gpu0.safetensors /tmp/m64-all.safetensors && echo "m64-all identical to m64-gpu0" | tee -a "$out/multi.txt"
fi

if [ "$what" = multiscore ]; then
  # strand-score --vcf on cuda:0 and cuda:all: the same VCF (but for the
  # ##strand_command line), and variants/s for both.
  score_data 4 7 /tmp/snv-dense.vcf:20000:0 /tmp/mixed-small.vcf:2000:1
  score_both ms-llr-w128k /tmp/ref4m.fa /tmp/snv-dense.vcf 131072 llr
  score_both ms-embed-w1k /tmp/ref4m.fa /tmp/mixed-small.vcf 1024 embed_dist
fi

if [ "$what" = multiscore-large ]; then
  # Steady state of strand-score on several GPUs: 100,000 SNVs over a
  # 32 Mbp reference (≈ 490 windows of 131,072 bp, ≈ 50,000 of 1,024).
  score_data 32 11 /tmp/snv32m.vcf:100000:0
  score_both msl-131072 /tmp/ref32m.fa /tmp/snv32m.vcf 131072 llr
  score_both msl-1024 /tmp/ref32m.fa /tmp/snv32m.vcf 1024 llr
fi
