#!/usr/bin/env python3
"""Makes the small genome, reads and regions used by strand's tests.

Run once by hand (needs pysam: `pip install pysam`; made with pysam
0.24.1); the outputs are committed. Seeded, and without @PG lines (which
would record paths), so a rerun reproduces the same files byte for byte.

    python3 make.py
"""
import os
import random

import pysam

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261123)


def fixture_records():
    """(name, bases) of ../sequences.fa, in order."""
    recs, name, seq = [], None, []
    with open(os.path.join(HERE, "..", "sequences.fa")) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(">"):
                if name is not None:
                    recs.append((name, "".join(seq)))
                name, seq = line[1:].split()[0], []
            else:
                seq.append(line.replace(" ", "").replace("\t", ""))
    recs.append((name, "".join(seq)))
    return recs


def random_bases(n, lower_runs=True):
    s = [rng.choice("ACGT") for _ in range(n)]
    if lower_runs:
        # A few soft-masked stretches, as in real assemblies.
        for _ in range(n // 1500 + 1):
            a = rng.randrange(n)
            for i in range(a, min(n, a + rng.randrange(50, 300))):
                s[i] = s[i].lower()
    return "".join(s)


fixtures = dict(fixture_records())
contigs = list(fixture_records())
chrA = random_bases(3000) + fixtures["len1000"] + random_bases(2000)
chrB = random_bases(40000)
contigs += [("chrA", chrA), ("chrB", chrB)]

fa = os.path.join(HERE, "ref.fa")
with open(fa, "w") as f:
    for name, s in contigs:
        f.write(f">{name}\n")
        for i in range(0, len(s), 60):
            f.write(s[i : i + 60] + "\n")
pysam.faidx(fa)

# BGZF with small blocks (about 2 kB) so that slices cross block borders.
gz = fa + ".gz"
text = open(fa, "rb").read()
with pysam.libcbgzf.BGZFile(gz, "wb") as out:
    for i in range(0, len(text), 2000):
        out.write(text[i : i + 2000])
        out.flush()
pysam.faidx(gz)

# Reads: substrings of chrA/chrB (reverse-strand reads are stored in
# reference orientation, as BAM does).
header = {"HD": {"VN": "1.6", "SO": "coordinate"},
          "SQ": [{"SN": n, "LN": len(s)} for n, s in contigs]}
tid = {n: i for i, (n, _) in enumerate(contigs)}
seqs = dict(contigs)
reads = []


def read(name, contig, pos, length, flag=0, mapq=60):
    a = pysam.AlignedSegment()
    a.query_name = name
    a.query_sequence = seqs[contig][pos : pos + length].upper()
    a.flag = flag
    a.reference_id = tid[contig]
    a.reference_start = pos
    a.mapping_quality = mapq
    a.cigartuples = [(0, length)]
    a.query_qualities = pysam.qualitystring_to_array("I" * length)
    reads.append(a)


for i in range(30):
    contig = "chrA" if i % 3 else "chrB"
    pos = rng.randrange(0, len(seqs[contig]) - 300)
    read(f"r{i:02d}", contig, pos, rng.randrange(50, 301),
         flag=16 if i % 4 == 0 else 0, mapq=[0, 10, 60][i % 3])
# A pair sharing a name.
read("pair1", "chrA", 3100, 100, flag=1 | 2 | 32 | 64, mapq=60)
read("pair1", "chrA", 3400, 100, flag=1 | 2 | 16 | 128, mapq=60)
read("sec1", "chrA", 3200, 80, flag=256, mapq=60)
read("supp1", "chrA", 3300, 80, flag=2048, mapq=60)

unsorted = os.path.join(HERE, "unsorted.bam")
with pysam.AlignmentFile(unsorted, "wb", header=header) as out:
    for a in reads:
        out.write(a)
    u = pysam.AlignedSegment()
    u.query_name = "unmapped1"
    u.query_sequence = random_bases(120, lower_runs=False)
    u.flag = 4
    u.reference_id = -1
    u.reference_start = -1
    u.query_qualities = pysam.qualitystring_to_array("I" * 120)
    out.write(u)
bam = os.path.join(HERE, "reads.bam")
pysam.sort("--no-PG", "-o", bam, unsorted)
os.remove(unsorted)
pysam.index(bam)
with open(os.path.join(HERE, "reads-noindex.bam"), "wb") as f:
    f.write(open(bam, "rb").read())
with open(os.path.join(HERE, "reads.sam"), "w") as f:
    f.write(pysam.view("--no-PG", "-h", bam))

with open(os.path.join(HERE, "regions.bed"), "w") as f:
    f.write("# regions for strand-embed tests\n")
    f.write("chrA\t3000\t4000\tfixture_len1000\n")
    f.write("chrB\t100\t1300\tb_first\n")
    f.write("chrB\t20000\t20500\n")
