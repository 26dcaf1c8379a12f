//! `strand-embed --layer`: the final layer is the default output byte for
//! byte; layers 0 and 1 match the reference goldens (`<r>.embed`,
//! `<r>.layer1_out`, the residual stream after the first block in the
//! block's own layout); a list writes one tensor per layer, named and
//! labelled; windows, pooling and `--out-dir` work per layer; a layer the
//! model does not have is refused before any work.

use std::path::Path;

use super::{embed, embed_to, family, goldens, model, records, sequences, Family};
use crate::util::{allclose, assert_no_failures, root, tempdir, tolerance, SafeFile};

/// The reference's own float32-vs-float64 difference for `kind`
/// (`tolerance_f32_vs_f64` of the manifest).
fn f64_diff(fam: &str, kind: &str) -> f32 {
    let path = root().join("test-data/goldens/manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["tolerance_f32_vs_f64"][fam][kind]["max_abs"]
        .as_f64()
        .expect("max_abs") as f32
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn run(dir: &Path, name: &str, fam: Family, extra: &[&str]) -> SafeFile {
    let m = model(fam.name);
    let seqs = sequences();
    let mut args = vec!["-m", &m, "--device", "cpu"];
    args.extend_from_slice(extra);
    args.push(&seqs);
    embed_to(dir, name, &args)
}

fn n_layer_is_the_default(fam: Family) {
    let dir = tempdir();
    for extra in [&[][..], &["--pool", "bin:100", "--window", "300"][..]] {
        let mut plain = extra.to_vec();
        run(dir.path(), "default.safetensors", fam, &plain);
        plain.extend(["--layer", "2"]);
        run(dir.path(), "layer2.safetensors", fam, &plain);
        let a = std::fs::read(dir.path().join("default.safetensors")).unwrap();
        let b = std::fs::read(dir.path().join("layer2.safetensors")).unwrap();
        assert!(
            a == b,
            "{} {extra:?}: --layer 2 differs from the default",
            fam.name
        );
    }
}

#[test]
fn embed_layer_n_layer_is_the_default_ps() {
    n_layer_is_the_default(family("ps-tiny"));
}

#[test]
fn embed_layer_n_layer_is_the_default_ph() {
    n_layer_is_the_default(family("ph-tiny"));
}

/// `--layer 0,1 --special-tokens` (the goldens' input has the trailing
/// [SEP]) against `<r>.embed` and `<r>.layer1_out`.
fn layers_match_reference(fam: Family) {
    let dir = tempdir();
    let out = run(
        dir.path(),
        "out.safetensors",
        fam,
        &["--special-tokens", "--layer", "1,0"],
    );
    let gold = goldens(fam.name);
    let mut names = Vec::new();
    let mut failures = Vec::new();
    let mut worst = 0.0f32;
    for (id, _, seq) in records() {
        names.extend([format!("{id}.layer0"), format!("{id}.layer1")]);
        let shape = vec![seq.len() + 1, fam.width];
        for (layer, kind) in [(0, "embed"), (1, "layer1_out")] {
            let name = format!("{id}.layer{layer}");
            let (got, want) = (out.get(&name), gold.get(&format!("{id}.{kind}")));
            assert_eq!(got.shape, shape, "{name}");
            let what = format!("{} {name} vs golden {id}.{kind}", fam.name);
            failures.extend(allclose(
                &what,
                &shape,
                &got.f32(),
                &want.f32(),
                tolerance(kind),
            ));
            let d = max_diff(&got.f32(), &want.f32());
            if layer == 0 {
                assert_eq!(d, 0.0, "{what}: the embedding is exact");
            }
            worst = worst.max(d);
            let coords: serde_json::Value =
                serde_json::from_str(out.meta(&format!("coords.{name}"))).unwrap();
            assert_eq!(coords["layer"], layer, "{name}: coords");
            assert_eq!(coords["contig"], id.as_str(), "{name}: coords");
        }
    }
    assert_no_failures(&failures);
    // Rounding level: within a few times the reference's own f32 noise.
    let bound = 4.0 * f64_diff(fam.name, "layer1_out");
    assert!(
        worst <= bound,
        "{}: max |diff| {worst:e} > {bound:e}",
        fam.name
    );
    assert_eq!(
        out.names(),
        names,
        "one tensor per record and layer, in order"
    );
    assert_eq!(out.meta("layers"), "0,1");
    let layout = out.meta("layout");
    assert!(layout.starts_with(fam.layout), "{layout}");
    if fam.layout == "PS" {
        assert!(layout.contains("for odd N the other way round"), "{layout}");
    }
}

#[test]
fn embed_layers_match_reference_ps() {
    layers_match_reference(family("ps-tiny"));
}

#[test]
fn embed_layers_match_reference_ph() {
    layers_match_reference(family("ph-tiny"));
}

/// Several windows per record, pooled, with the strand average: each
/// layer of a list is what that layer alone gives, and the final one what
/// the default gives, bit for bit.
#[test]
fn embed_layer_lists_stitch_and_pool_like_single_layers() {
    let dir = tempdir();
    let fam = family("ps-tiny");
    let common = ["--window", "300", "--overlap", "64", "--rc-average"];
    for pool in ["none", "bin:50"] {
        let with = |extra: &[&'static str]| {
            let mut a: Vec<&str> = common.to_vec();
            a.extend(["--pool", pool]);
            a.extend_from_slice(extra);
            a
        };
        let list = run(
            dir.path(),
            "list.safetensors",
            fam,
            &with(&["--layer", "2,0,1"]),
        );
        let one = run(dir.path(), "one.safetensors", fam, &with(&["--layer", "1"]));
        let last = run(dir.path(), "last.safetensors", fam, &with(&[]));
        assert_eq!(one.meta("layers"), "1");
        for (id, _, _) in records() {
            assert_eq!(
                list.get(&format!("{id}.layer1")).bytes,
                one.get(&format!("{id}.layer1")).bytes,
                "{pool} {id}: layer 1 in a list"
            );
            assert_eq!(
                list.get(&format!("{id}.layer2")).bytes,
                last.get(&id).bytes,
                "{pool} {id}: layer 2 in a list is the default output"
            );
            let l0 = list.get(&format!("{id}.layer0"));
            assert_eq!(l0.shape, one.get(&format!("{id}.layer1")).shape);
            assert_eq!(l0.shape[l0.shape.len() - 1], 24, "--rc-average: d_model");
        }
    }
}

/// `--out-dir`: one file per record and layer, listed in the index.
#[test]
fn embed_layer_list_out_dir_writes_a_file_per_layer() {
    let dir = tempdir();
    let out = dir.path().join("emb");
    let m = model("ph-tiny");
    embed()
        .args([
            "-m", &m, "--device", "cpu", "--layer", "0,1", "--format", "npy",
        ])
        .args(["--out-dir", &out.to_string_lossy(), &sequences()])
        .run()
        .ok();
    let index = std::fs::read_to_string(out.join("index.tsv")).unwrap();
    let names: Vec<&str> = index
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let mut want = Vec::new();
    for (id, _, _) in records() {
        want.extend([format!("{id}.layer0"), format!("{id}.layer1")]);
    }
    assert_eq!(names, want);
    for name in &want {
        assert!(out.join(format!("{name}.npy")).is_file(), "{name}.npy");
    }
}

#[test]
fn embed_bad_layers_are_refused_before_any_work() {
    let dir = tempdir();
    let o = dir.path().join("x.safetensors");
    let m = model("ps-tiny");
    let e = embed()
        .args([
            "-m",
            &m,
            "--layer",
            "1,3",
            "-o",
            &o.to_string_lossy(),
            &sequences(),
        ])
        .run()
        .exits(1);
    let line = e.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("--layer 1,3") && line.contains("n_layer 2") && line.contains("0 to 2"),
        "{line}"
    );
    for bad in ["1,1", "x", "-1", ""] {
        embed()
            .args([
                "-m",
                &m,
                "--layer",
                bad,
                "-o",
                &o.to_string_lossy(),
                &sequences(),
            ])
            .run()
            .exits(2);
    }
    assert!(!o.exists(), "nothing written");
    // --resume keeps an output of the same layers only.
    let seqs = sequences();
    let args = |layer: &'static str| {
        let mut a = vec!["-m", m.as_str(), "--device", "cpu", "--resume"];
        a.extend(["--layer", layer, &seqs]);
        a
    };
    embed_to(dir.path(), "r.safetensors", &args("1"));
    let r = dir.path().join("r.safetensors");
    let e = embed()
        .args(args("0"))
        .args(["-o", &r.to_string_lossy()])
        .run()
        .exits(1);
    assert!(e.stderr.contains("layers \"1\""), "{}", e.stderr);
    embed()
        .args(args("2"))
        .args(["-o", &r.to_string_lossy()])
        .run()
        .exits(1);
}
