//! `strand-score` end to end: llr and llr_masked against the reference
//! logits, every kind of VCF record, the annotated VCF and its index, the
//! TSV, shards, ism tracks, and bad inputs.

use std::path::Path;

use crate::util::{root, tempdir, test_data, tolerance, Cmd, Output, SafeFile};

mod calibrate;
mod errors;
mod filters;
mod formats;
mod ism;
mod issue15;
mod rc_average;

const BIN: &str = env!("CARGO_BIN_EXE_strand-score");

fn score() -> Cmd {
    Cmd::new(BIN)
}

fn model(name: &str) -> String {
    test_data(&format!("models/{name}"))
}

fn reference() -> String {
    test_data("genome/ref.fa")
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Bases of `contig` in the test genome.
fn contig(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join(reference())).expect("ref.fa");
    let rec = text
        .split('>')
        .find(|r| r.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no contig {name}"));
    rec.lines().skip(1).collect::<String>().into_bytes()
}

const HEADER: &str = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n";

/// Writes a VCF of `lines` (CHROM POS ID REF ALT, tab-separated).
fn vcf(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    let mut text = HEADER.to_string();
    for l in lines {
        text.push_str(&format!("{l}\t.\t.\t.\n"));
    }
    std::fs::write(&path, text).expect("write vcf");
    s(&path)
}

/// A TSV as rows of fields (header included).
fn table(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

const BASES: [char; 4] = ['A', 'C', 'G', 'T'];

fn token(b: char) -> usize {
    7 + BASES.iter().position(|&x| x == b).expect("ACGT")
}

/// strand-score with `-m MODEL --device cpu -f ref.fa` (the test genome).
fn on_cpu(model_name: &str) -> Cmd {
    score().args([
        "-m",
        &model(model_name),
        "--device",
        "cpu",
        "-f",
        &reference(),
    ])
}

/// Runs ARGS, which must succeed, with `-m MODEL --device cpu -q -f ref.fa`.
fn ok(model_name: &str, args: &[&str]) -> Output {
    on_cpu(model_name).args(["-q"]).args(args).run().ok()
}

#[test]
fn score_llr_and_llr_masked_match_the_reference_logits() {
    let dir = tempdir();
    for fam in ["ps-tiny", "ph-tiny"] {
        let gold = SafeFile::read(&root().join(format!("test-data/goldens/{fam}.safetensors")));
        // Every SNV at a spread of positions of three fixture contigs,
        // scored in one window covering the contig.
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for name in ["len64", "len257", "len1000"] {
            let bases = contig(name);
            let logits = gold.get(&format!("{name}.nosep.logits")).f32();
            let v = logits.len() / bases.len();
            for i in (0..bases.len()).step_by(7) {
                let r = bases[i].to_ascii_uppercase() as char;
                if !BASES.contains(&r) {
                    continue;
                }
                let alts: Vec<char> = BASES.iter().copied().filter(|&a| a != r).collect();
                let alt_text: Vec<String> = alts.iter().map(char::to_string).collect();
                lines.push(format!(
                    "{name}\t{}\t.\t{}\t{}",
                    i + 1,
                    bases[i] as char,
                    alt_text.join(",")
                ));
                for a in alts {
                    let row = &logits[i * v..(i + 1) * v];
                    want.push((row[token(a)] - row[token(r)], row[token(a)], row[token(r)]));
                }
            }
        }
        let input = vcf(dir.path(), "snvs.vcf", &lines);
        let tsv = dir.path().join("llr.tsv");
        ok(
            fam,
            &[
                "--vcf",
                &input,
                "--window",
                "2048",
                "--tsv",
                &s(&tsv),
                "-o",
                &s(&dir.path().join("o.vcf")),
            ],
        );
        let t = table(&tsv);
        assert_eq!(t[0], ["chrom", "pos", "id", "ref", "alt", "llr", "reason"]);
        assert_llrs(fam, &t, &want, "nosep.logits");

        // llr_masked at the positions the reference masked one at a time.
        let positions = gold.get("len1000.nosep.masked_positions");
        let positions: Vec<usize> = positions
            .bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .collect();
        let masked = gold.get("len1000.nosep.masked_logits").f32();
        let v = masked.len() / positions.len();
        let bases = contig("len1000");
        let mut lines = Vec::new();
        let mut want = Vec::new();
        for (k, &i) in positions.iter().enumerate() {
            let r = bases[i].to_ascii_uppercase() as char;
            if !BASES.contains(&r) {
                continue;
            }
            let row = &masked[k * v..(k + 1) * v];
            for a in BASES.iter().copied().filter(|&a| a != r) {
                lines.push(format!("len1000\t{}\t.\t{}\t{a}", i + 1, bases[i] as char));
                want.push((row[token(a)] - row[token(r)], row[token(a)], row[token(r)]));
            }
        }
        assert!(!want.is_empty());
        let input = vcf(dir.path(), "masked.vcf", &lines);
        let tsv = dir.path().join("masked.tsv");
        ok(
            fam,
            &[
                "--vcf",
                &input,
                "--window",
                "2048",
                "--scores",
                "llr_masked",
                "--tsv",
                &s(&tsv),
            ],
        );
        assert_llrs(fam, &table(&tsv), &want, "nosep.masked_logits");
    }
}

/// Compares the TSV's score column with (llr, logit[ALT], logit[REF])
/// computed from the goldens: each logit may be off by the manifest's
/// `atol + rtol * |logit|` for `kind`.
fn assert_llrs(fam: &str, t: &[Vec<String>], want: &[(f32, f32, f32)], kind: &str) {
    assert_eq!(t.len() - 1, want.len(), "{fam} {kind}: rows");
    let tol = tolerance(kind);
    for (row, (w, a, r)) in t[1..].iter().zip(want) {
        let got: f64 = row[5].parse().expect("a number");
        let bound = 2.0 * tol.atol + tol.rtol * (a.abs() + r.abs()) as f64;
        assert!(
            (got - *w as f64).abs() <= bound,
            "{fam} {kind} {row:?}: {got} vs {w} (bound {bound})"
        );
    }
}

/// A VCF with one of every kind of record.
fn mixed_vcf(dir: &Path) -> String {
    let a = contig("chrA");
    let base = |p: usize| (a[p - 1] as char).to_string();
    let pair = |p: usize| format!("{}{}", a[p - 1] as char, a[p] as char);
    let alt_of = |b: &str| {
        if b.eq_ignore_ascii_case("A") {
            "C"
        } else {
            "A"
        }
        .to_string()
    };
    let path = dir.join("mixed.vcf");
    let text = format!(
        "##fileformat=VCFv4.2\n##contig=<ID=chrA,length=6000>\n##INFO=<ID=DP,Number=1,Type=Integer,Description=\"depth\">\n\
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n\
chrA\t3050\tsnv\t{}\t{}\t50\tPASS\tDP=5\tGT\t0/1\n\
chrA\t3060\tmulti\t{}\t{},{}\t.\tPASS\t.\tGT\t1/2\n\
chrA\t3100\tmnv\t{}\tGG\t.\t.\t.\tGT\t0/1\n\
chrA\t3200\tdel\t{}\t{}\t.\t.\t.\tGT\t0/1\n\
chrA\t3250\tins\t{}\t{}TTT\t.\t.\t.\tGT\t0/1\n\
chrA\t3300\tsym\t{}\t<DEL>\t.\t.\t.\tGT\t0/1\n\
chrA\t3400\tmismatch\t{}\t{}\t.\t.\t.\tGT\t0/1\n\
chr9\t10\tmissing\tA\tC\t.\t.\t.\tGT\t0/1\n",
        base(3050),
        alt_of(&base(3050)),
        base(3060),
        alt_of(&base(3060)),
        "G",
        pair(3100),
        pair(3200),
        base(3200),
        base(3250),
        base(3250),
        base(3300),
        alt_of(&base(3400)),
        base(3400),
    );
    std::fs::write(&path, text).expect("write");
    s(&path)
}

#[test]
fn score_annotates_every_record_and_indexes_the_output() {
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    let out = dir.path().join("out.vcf.gz");
    let tsv = dir.path().join("out.tsv");
    let res = on_cpu("ps-tiny")
        .args([
            "--vcf",
            &input,
            "--window",
            "1000",
            "--skip-missing-contigs",
        ])
        .args([
            "--scores",
            "llr,llr_masked,embed_dist",
            "-o",
            &s(&out),
            "--tsv",
            &s(&tsv),
        ])
        .run()
        .ok();
    assert!(
        res.stderr.contains("8 records, 6 alleles scored, 3 alleles not scored (1 missing_contig, 1 ref_mismatch, 1 symbolic)"),
        "{}",
        res.stderr
    );
    // The output as text: input header kept, ours added, records in order
    // with their fields, scores appended to INFO.
    let text = {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&out).expect("open"))
            .read_to_string(&mut s)
            .expect("gunzip");
        s
    };
    let input_text = std::fs::read_to_string(&input).expect("read");
    let (in_meta, in_rest): (Vec<&str>, Vec<&str>) =
        input_text.lines().partition(|l| l.starts_with("##"));
    let lines: Vec<&str> = text.lines().collect();
    for m in &in_meta {
        assert!(lines.contains(m), "header line {m} kept");
    }
    for id in [
        "STRAND_LLR",
        "STRAND_LLR_MASKED",
        "STRAND_EMBED_DIST",
        "STRAND_EMBED_DIST_L2",
        "STRAND_FILTER",
        "STRAND_SKIP",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("##INFO=<ID={id},"))),
            "{id}"
        );
    }
    assert!(lines
        .iter()
        .any(|l| l.starts_with("##strand_command=")
            && l.contains("--scores llr,llr_masked,embed_dist")));
    let records: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("##"))
        .collect();
    assert_eq!(records.len(), in_rest.len());
    for (got, want) in records.iter().zip(&in_rest) {
        let (g, w): (Vec<&str>, Vec<&str>) =
            (got.split('\t').collect(), want.split('\t').collect());
        assert_eq!(g.len(), w.len());
        for k in (0..w.len()).filter(|&k| k != 7 && k != 6) {
            assert_eq!(g[k], w[k], "field {k} of {want}");
        }
        // FILTER: kept, or ours where no ALT was scored.
        let ours = match w[2] {
            "sym" => Some("strand_symbolic"),
            "mismatch" => Some("strand_ref_mismatch"),
            "missing" => Some("strand_missing_contig"),
            _ => None,
        };
        assert_eq!(g[6], ours.unwrap_or(w[6]), "FILTER of {want}");
        if w[7] != "." && !w[0].starts_with('#') {
            assert!(g[7].starts_with(w[7]), "INFO kept: {got}");
        }
    }
    let info = |id: &str| -> String {
        records
            .iter()
            .find(|l| l.split('\t').nth(2) == Some(id))
            .and_then(|l| l.split('\t').nth(7))
            .unwrap_or_else(|| panic!("record {id}"))
            .to_string()
    };
    let has_all = |i: &str| {
        [
            "STRAND_LLR=",
            "STRAND_LLR_MASKED=",
            "STRAND_EMBED_DIST=",
            "STRAND_EMBED_DIST_L2=",
        ]
        .iter()
        .all(|k| i.contains(k))
    };
    assert!(info("snv").starts_with("DP=5;") && has_all(&info("snv")));
    // Number=A: two values for two ALTs.
    let multi = info("multi");
    let llr = multi
        .split(';')
        .find(|f| f.starts_with("STRAND_LLR="))
        .expect("llr");
    assert_eq!(llr.split(',').count(), 2);
    for id in ["mnv", "del", "ins"] {
        let i = info(id);
        assert!(
            i.contains("STRAND_EMBED_DIST=") && !i.contains("STRAND_LLR="),
            "{id}: {i}"
        );
    }
    assert_eq!(info("sym"), "STRAND_SKIP=symbolic");
    assert_eq!(info("mismatch"), "STRAND_FILTER=ref_mismatch");
    assert_eq!(info("missing"), "STRAND_FILTER=missing_contig");

    // The TSV: one row per ALT, NA where a score does not apply.
    let t = table(&tsv);
    assert_eq!(
        t[0],
        [
            "chrom",
            "pos",
            "id",
            "ref",
            "alt",
            "llr",
            "llr_masked",
            "embed_dist",
            "embed_dist_l2",
            "reason"
        ]
    );
    assert_eq!(t.len() - 1, 9);
    let del = t.iter().find(|r| r[2] == "del").expect("del row");
    assert_eq!((del[5].as_str(), del[6].as_str()), ("NA", "NA"));
    assert!(del[7].parse::<f64>().expect("embed_dist") >= 0.0);

    // noodles reads the output through its index.
    let mut reader = noodles::vcf::io::indexed_reader::Builder::default()
        .build_from_path(&out)
        .expect("indexed reader");
    let header = reader.read_header().expect("header");
    let region = "chrA:3040-3110".parse().expect("region");
    let n = reader
        .query(&header, &region)
        .expect("query")
        .records()
        .count();
    assert_eq!(n, 3, "snv, multi and mnv overlap chrA:3040-3110");
}

#[test]
fn score_shards_concatenate_to_the_unsharded_table() {
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    let whole = dir.path().join("whole.tsv");
    let args = [
        "--vcf",
        &input,
        "--window",
        "1000",
        "--skip-missing-contigs",
    ];
    ok("ph-tiny", &[&args[..], &["--tsv", &s(&whole)]].concat());
    let mut cat = Vec::new();
    for i in 1..=3 {
        let part = dir.path().join(format!("p{i}.tsv"));
        let shard = format!("{i}/3");
        ok(
            "ph-tiny",
            &[&args[..], &["--tsv", &s(&part), "--shard", &shard]].concat(),
        );
        cat.extend(std::fs::read(&part).expect("part"));
    }
    assert!(
        cat == std::fs::read(&whole).expect("whole"),
        "cat of shards vs whole"
    );
    // --region keeps only the variants inside.
    let r = dir.path().join("r.tsv");
    ok(
        "ph-tiny",
        &[&args[..], &["--tsv", &s(&r), "-r", "chrA:3,040-3,110"]].concat(),
    );
    let ids: Vec<String> = table(&r)[1..].iter().map(|row| row[2].clone()).collect();
    assert_eq!(ids, ["snv", "multi", "multi", "mnv"]);
}

/// Records (non-`##` lines) of a plain or BGZF VCF.
fn vcf_body(path: &Path) -> Vec<String> {
    use std::io::Read;
    let bytes = std::fs::read(path).expect("read vcf");
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("gunzip");
    } else {
        text = String::from_utf8(bytes).expect("utf8");
    }
    text.lines()
        .filter(|l| !l.starts_with("##"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn score_shard_vcfs_concat_to_the_unsharded_vcf() {
    let dir = tempdir();
    let input = mixed_vcf(dir.path());
    let args = [
        "--vcf",
        &input,
        "--window",
        "1000",
        "--skip-missing-contigs",
    ];
    let whole = dir.path().join("whole.vcf.gz");
    ok("ph-tiny", &[&args[..], &["-o", &s(&whole)]].concat());
    let mut parts = Vec::new();
    for i in 1..=3 {
        let part = dir.path().join(format!("p{i}.vcf.gz"));
        ok(
            "ph-tiny",
            &[&args[..], &["-o", &s(&part), "--shard", &format!("{i}/3")]].concat(),
        );
        parts.push(s(&part));
    }
    let merged = dir.path().join("merged.vcf.gz");
    Cmd::new(env!("CARGO_BIN_EXE_strand"))
        .args(["concat", "-o", &s(&merged)])
        .args(&parts)
        .run()
        .ok();
    assert_eq!(vcf_body(&merged), vcf_body(&whole));
    assert!(dir.path().join("merged.vcf.gz.tbi").is_file());
}
