//! Issue 18, point 3: `strand-score calibrate` and `--calibration`. The
//! file holds 1,001 monotone quantiles per score with the model's digests
//! and the window; percentiles rise with the score; the sites of a
//! calibration score uniformly against it (within sampling error when
//! they are a sample); BCF output carries the declared `Number=A` floats;
//! `ism` gives the VCF mode's percentiles; a calibration of another model
//! or window is refused.

use std::collections::HashMap;

use noodles::vcf::header::record::value::map::info::{Number, Type};
use noodles::vcf::variant::record_buf::info::field::{value::Array, Value};
use sha2::{Digest, Sha256};

use super::*;

/// The test background: a few hundred bases of chrA, in windows of 500.
const REGION: &str = "chrA:3001-3200";
const WINDOW: &str = "500";

/// A VCF of every SNV of [`REGION`] (three ALTs per A, C, G or T), and
/// the number of SNVs.
fn all_snvs(dir: &Path) -> (String, usize) {
    let a = contig("chrA");
    let mut lines = Vec::new();
    let mut n = 0;
    for p in 3001..=3200usize {
        let r = a[p - 1].to_ascii_uppercase() as char;
        if !BASES.contains(&r) {
            continue;
        }
        let alts: Vec<String> = BASES
            .iter()
            .filter(|&&b| b != r)
            .map(char::to_string)
            .collect();
        n += alts.len();
        lines.push(format!(
            "chrA\t{p}\t.\t{}\t{}",
            a[p - 1] as char,
            alts.join(",")
        ));
    }
    (vcf(dir, "all.vcf", &lines), n)
}

/// `strand-score calibrate` of `model` on the CPU into `out`.
fn calibrate(model_name: &str, out: &Path, args: &[&str]) {
    score()
        .args([
            "calibrate",
            "-m",
            &model(model_name),
            "--device",
            "cpu",
            "-q",
        ])
        .args(["-f", &reference(), "-o", &s(out)])
        .args(args)
        .run()
        .ok();
}

/// A calibration file: its `#key=value` lines, column names and rows.
struct Calib {
    meta: HashMap<String, String>,
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
}

fn read_calib(path: &Path) -> Calib {
    let text = std::fs::read_to_string(path).expect("calibration");
    let mut meta = HashMap::new();
    let mut lines = text.lines();
    let header = loop {
        let l = lines.next().expect("a table");
        match l.strip_prefix('#') {
            Some(kv) => {
                let (k, v) = kv.split_once('=').expect("#key=value");
                meta.insert(k.to_string(), v.to_string());
            }
            None => break l,
        }
    };
    Calib {
        meta,
        columns: header.split('\t').map(str::to_string).collect(),
        rows: lines
            .map(|l| {
                l.split('\t')
                    .map(|f| f.parse().expect("a number"))
                    .collect()
            })
            .collect(),
    }
}

/// Kolmogorov-Smirnov distance between percentiles (0-100) and the
/// uniform distribution.
fn ks_uniform(pctl: &[f64]) -> f64 {
    let mut p: Vec<f64> = pctl.iter().map(|x| x / 100.0).collect();
    p.sort_by(f64::total_cmp);
    let n = p.len() as f64;
    p.iter()
        .enumerate()
        .map(|(i, &x)| ((i + 1) as f64 / n - x).max(x - i as f64 / n))
        .fold(0.0, f64::max)
}

/// KS critical value at the 1 % level for `n` draws (1.63 / sqrt(n)).
fn ks_bound(n: usize) -> f64 {
    1.63 / (n as f64).sqrt()
}

fn column<'a>(t: &'a [Vec<String>], name: &str) -> impl Iterator<Item = f64> + 'a {
    let k = t[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", t[0]));
    t[1..].iter().map(move |r| r[k].parse().expect("a number"))
}

fn sha256(path: &str) -> String {
    let bytes = std::fs::read(root().join(path)).expect("read");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn calibrate_stores_monotone_quantiles_and_its_own_sites_score_uniform() {
    let dir = tempdir();
    let calib = dir.path().join("ps-tiny.calib.tsv");
    // --sample above the region's positions: every site gets every score.
    calibrate(
        "ps-tiny",
        &calib,
        &["-r", REGION, "--window", WINDOW, "--sample", "100000"],
    );
    let (input, n) = all_snvs(dir.path());
    let c = read_calib(&calib);
    let cols = ["llr", "llr_masked", "embed_dist", "embed_dist_l2"];
    assert_eq!(c.columns, [&["quantile"][..], &cols].concat());
    assert_eq!(c.rows.len(), 1001);
    for (k, row) in c.rows.iter().enumerate() {
        assert!((row[0] - k as f64 / 1000.0).abs() < 1e-12, "level {k}");
    }
    for j in 1..c.columns.len() {
        assert!(
            c.rows.windows(2).all(|w| w[0][j] <= w[1][j]),
            "{}: quantiles decrease",
            c.columns[j]
        );
        assert!(
            c.rows[0][j] < c.rows[1000][j],
            "{}: all equal",
            c.columns[j]
        );
    }
    let m = &c.meta;
    assert_eq!(m["strand_calibration"], "1");
    assert_eq!(m["window"], WINDOW);
    assert_eq!(m["windows"], "grid");
    assert_eq!(m["rc_average"], "false");
    assert_eq!(
        m["model_config_sha256"],
        sha256("test-data/models/ps-tiny/config.json")
    );
    assert_eq!(
        m["model_weights_sha256"],
        sha256("test-data/models/ps-tiny/model.safetensors")
    );
    assert_eq!(m["scores"], cols.join(","));
    assert_eq!(m["background_positions"], (n / 3).to_string());
    let sites: Vec<String> = cols.iter().map(|c| format!("{c}:{n}")).collect();
    assert_eq!(m["sites"], sites.join(","));

    // The same sites scored the VCF way, with the calibration.
    let tsv = dir.path().join("all.tsv");
    let bcf = dir.path().join("all.bcf");
    ok(
        "ps-tiny",
        &[
            "--vcf",
            &input,
            "--window",
            WINDOW,
            "--scores",
            "llr,llr_masked,embed_dist",
            "--calibration",
            &s(&calib),
            "--tsv",
            &s(&tsv),
            "-o",
            &s(&bcf),
        ],
    );
    let t = table(&tsv);
    assert_eq!(t.len() - 1, n);
    let pctl_cols: Vec<String> = cols.iter().map(|c| format!("{c}_pctl")).collect();
    assert_eq!(t[0][9..13], pctl_cols[..]);
    for col in cols {
        let score: Vec<f64> = column(&t, col).collect();
        let pctl: Vec<f64> = column(&t, &format!("{col}_pctl")).collect();
        assert!(pctl.iter().all(|p| (0.0..=100.0).contains(p)), "{col}");
        // Monotone: the percentile rises with the score (ties share one).
        let mut by_score: Vec<(f64, f64)> = score.iter().copied().zip(pctl.clone()).collect();
        by_score.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in by_score.windows(2) {
            assert!(
                w[0].1 <= w[1].1 && (w[0].0 < w[1].0 || w[0].1 == w[1].1),
                "{col}: {w:?}"
            );
        }
        assert_eq!(by_score[0].1, 0.0, "{col}: the lowest score");
        assert_eq!(by_score[n - 1].1, 100.0, "{col}: the highest score");
        // The calibration set itself: uniform, within the 1 % KS bound;
        // in fact exactly so up to the resolution of the stored points
        // (site i of n in score order gets 100 i/(n-1), give or take the
        // 0.1 percentile between points), so also within 2/n + 0.002.
        let d = ks_uniform(&pctl);
        assert!(d < ks_bound(n), "{col}: KS distance {d} over {n} sites");
        let exact = 2.0 / n as f64 + 0.002;
        assert!(
            d < exact,
            "{col}: KS distance {d} over {n} sites (> {exact})"
        );
    }

    // BCF: the header declares the percentiles as Number=A floats, and
    // each record carries one per ALT, the TSV's values.
    let mut reader = noodles::bcf::io::reader::Builder::default()
        .build_from_path(&bcf)
        .expect("bcf reader");
    let header = reader.read_header().expect("bcf header");
    for col in cols {
        let key = format!("STRAND_{}_PCTL", col.to_uppercase());
        let def = header.infos().get(key.as_str()).expect("declared");
        assert_eq!(def.number(), Number::A, "{key}");
        assert_eq!(def.ty(), Type::Float, "{key}");
    }
    let want: Vec<f64> = column(&t, "llr_pctl").collect();
    let mut got = Vec::new();
    for rec in reader.record_bufs(&header) {
        let rec = rec.expect("bcf record");
        match rec.info().get("STRAND_LLR_PCTL") {
            Some(Some(Value::Array(Array::Float(v)))) => {
                assert_eq!(v.len(), rec.alternate_bases().as_ref().len());
                got.extend(v.iter().map(|x| f64::from(x.expect("a value"))));
            }
            other => panic!("STRAND_LLR_PCTL: {other:?}"),
        }
    }
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }

    // ism writes the same percentiles.
    let prefix = dir.path().join("ism");
    score()
        .args(["ism", "-m", &model("ps-tiny"), "--device", "cpu", "-q"])
        .args(["-f", &reference(), "-r", REGION, "--window", WINDOW])
        .args(["--calibration", &s(&calib), "-o", &s(&prefix)])
        .run()
        .ok();
    let ism = table(&dir.path().join("ism.tsv"));
    assert_eq!(ism[0], ["chrom", "pos", "ref", "alt", "llr", "llr_pctl"]);
    let key = |r: &[String], alt: usize| (r[1].clone(), r[alt].clone());
    let vcf_pctl: HashMap<(String, String), String> =
        t[1..].iter().map(|r| (key(r, 4), r[9].clone())).collect();
    assert_eq!(ism.len(), t.len());
    for r in &ism[1..] {
        assert_eq!(vcf_pctl[&key(r, 3)], r[5], "{r:?}");
    }
}

/// A calibration from a sample of the background: the background's sites
/// score uniformly within the sample's sampling error.
#[test]
fn a_sampled_calibration_is_uniform_within_sampling_error() {
    let dir = tempdir();
    let calib = dir.path().join("sample.calib.tsv");
    calibrate(
        "ps-tiny",
        &calib,
        &[
            "-r",
            REGION,
            "--window",
            WINDOW,
            "--scores",
            "llr_masked",
            "--sample",
            "40",
            "--seed",
            "7",
        ],
    );
    let c = read_calib(&calib);
    assert_eq!(c.columns, ["quantile", "llr_masked"]);
    assert_eq!(c.meta["sample_positions"], "40");
    assert_eq!(c.meta["sites"], "llr_masked:120");
    let (input, n) = all_snvs(dir.path());
    let tsv = dir.path().join("all.tsv");
    ok(
        "ps-tiny",
        &[
            "--vcf",
            &input,
            "--window",
            WINDOW,
            "--scores",
            "llr_masked",
            "--calibration",
            &s(&calib),
            "--tsv",
            &s(&tsv),
        ],
    );
    let pctl: Vec<f64> = column(&table(&tsv), "llr_masked_pctl").collect();
    assert_eq!(pctl.len(), n);
    // Two samples' KS bound: 120 calibration sites against n scored.
    let m = 120.0;
    let bound = 1.63 * ((m + n as f64) / (m * n as f64)).sqrt();
    let d = ks_uniform(&pctl);
    assert!(d < bound, "KS distance {d}, bound {bound}");
}

/// The whole reference by default (every contig, Ns left out), and
/// `--quantiles`.
#[test]
fn calibrate_covers_the_whole_reference_by_default() {
    let dir = tempdir();
    let calib = dir.path().join("whole.calib.tsv");
    calibrate(
        "ph-tiny",
        &calib,
        &["--window", "1000", "--scores", "llr", "--quantiles", "11"],
    );
    let text = std::fs::read_to_string(root().join(reference())).expect("ref.fa");
    let acgt = text
        .lines()
        .filter(|l| !l.starts_with('>'))
        .flat_map(|l| l.bytes())
        .filter(|b| b"ACGTacgt".contains(b))
        .count();
    let c = read_calib(&calib);
    assert_eq!(c.meta["background_positions"], acgt.to_string());
    assert_eq!(c.meta["sites"], format!("llr:{}", 3 * acgt));
    assert_eq!(c.rows.len(), 11);
    assert_eq!(c.rows[5][0], 0.5);
}

/// Runs a command that must fail with exit 1 and one line naming
/// `needles`, leaving no output.
fn refused(cmd: Cmd, out_dir: &Path, needles: &[&str]) {
    let res = cmd.run().exits(1);
    assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    for n in needles {
        assert!(res.stderr.contains(n), "{n:?} not in {}", res.stderr);
    }
    assert!(crate::util::dir_entries(out_dir).is_empty(), "left behind");
}

#[test]
fn a_calibration_of_another_model_or_window_is_refused() {
    let dir = tempdir();
    let calib = dir.path().join("ps.calib.tsv");
    let llr = [
        "--scores",
        "llr",
        "--window",
        WINDOW,
        "-r",
        "chrA:3001-3100",
    ];
    calibrate("ps-tiny", &calib, &llr);
    let ph_calib = dir.path().join("ph.calib.tsv");
    calibrate(
        "ph-tiny",
        &ph_calib,
        &[&llr[..], &["--rc-average"]].concat(),
    );
    assert_eq!(read_calib(&ph_calib).meta["rc_average"], "true");
    // The same config with one weight changed in its last bit.
    let other = dir.path().join("ps-tiny-other");
    std::fs::create_dir(&other).expect("mkdir");
    let src = root().join(model("ps-tiny"));
    std::fs::copy(src.join("config.json"), other.join("config.json")).expect("copy");
    let mut w = std::fs::read(src.join("model.safetensors")).expect("read");
    *w.last_mut().expect("bytes") ^= 1;
    std::fs::write(other.join("model.safetensors"), w).expect("write");
    let (input, _) = all_snvs(dir.path());

    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let o = s(&out.join("o.vcf.gz"));
    let t = s(&out.join("o.tsv"));
    let run = |m: &str, calib: &Path, extra: &[&str]| {
        score()
            .args(["-m", m, "--device", "cpu", "-q", "-f", &reference()])
            .args(["--vcf", &input, "--calibration", &s(calib)])
            .args(["-o", &o, "--tsv", &t])
            .args(extra)
            .args(if extra.contains(&"--window") {
                &[][..]
            } else {
                &["--window", WINDOW][..]
            })
    };
    let ps = model("ps-tiny");
    let ph = model("ph-tiny");
    for (cmd, needles) in [
        (
            run(&ph, &calib, &[]),
            &[
                "ps.calib.tsv: made with another model (config.json sha256",
                "ps-tiny",
            ][..],
        ),
        (
            run(&s(&other), &calib, &[]),
            &["made with another model (weights sha256"][..],
        ),
        (
            run(&ps, &calib, &["--window", "1000"]),
            &["calibrated with --window 500 (grid windows), this run has --window 1000 (grid"][..],
        ),
        (
            run(&ps, &calib, &["--centred"]),
            &["this run has --window 500 (centred windows)"][..],
        ),
        (
            run(&ps, &calib, &["--scores", "llr,llr_masked"]),
            &["no llr_masked column (it has llr)"][..],
        ),
        (
            run(&ph, &ph_calib, &[]),
            &["calibrated with --rc-average, this run has none"][..],
        ),
        (
            run(&ps, Path::new(&input), &[]),
            &["all.vcf: not a strand calibration file"][..],
        ),
    ] {
        refused(cmd, &out, needles);
    }
    // The PH calibration with --rc-average applies.
    run(&ph, &ph_calib, &["--rc-average"]).run().ok();
    std::fs::remove_dir_all(&out).expect("clean");
    std::fs::create_dir(&out).expect("mkdir");
    // ism checks the same.
    let ism = score()
        .args([
            "ism",
            "-m",
            &ps,
            "--device",
            "cpu",
            "-q",
            "-f",
            &reference(),
        ])
        .args(["-r", "chrA:3001-3010", "--window", "1000"])
        .args(["--calibration", &s(&calib), "-o", &s(&out.join("ism"))]);
    refused(ism, &out, &["calibrated with --window 500"]);
}

/// `calibrate` is a subcommand listed by --help, and needs -o.
#[test]
fn calibrate_is_a_subcommand() {
    let res = score().args(["--help"]).run().ok();
    let help = String::from_utf8_lossy(&res.stdout);
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("calibrate ")),
        "{help}"
    );
    let res = score()
        .args(["calibrate", "-m", "M", "-f", "ref.fa"])
        .run()
        .exits(2);
    assert!(res.stderr.contains("--output"), "{}", res.stderr);
}
