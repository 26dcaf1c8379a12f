//! The calibration file: written and read back, bad files refused, and
//! the identity of a model.

use super::*;

fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("m.calib.tsv");
    std::fs::write(&p, text).expect("write");
    (dir, p)
}

const HEAD: &str = "#strand_calibration=1\n#model_config_sha256=aa\n#model_weights_sha256=bb\n\
                    #window=1000\n#windows=grid\n#rc_average=false\n";

#[test]
fn a_written_calibration_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("c.tsv");
    let mut out = AtomicFile::create(&p).expect("create");
    let levels = super::super::quantiles::levels(3);
    let meta = [
        ("model_config_sha256", "aa".to_string()),
        ("model_weights_sha256", "bb".to_string()),
        ("window", "1000".to_string()),
        ("windows", "grid".to_string()),
        ("rc_average", "false".to_string()),
    ];
    let cols = [("llr", vec![-2.5, 0.1, 3.0]), ("llr_masked", vec![0.0; 3])];
    write(&mut out, &meta, &levels, &cols).expect("write");
    out.commit().expect("commit");
    let c = Calibration::read(&p).expect("read");
    assert_eq!(c.levels, [0.0, 0.5, 1.0]);
    assert_eq!(c.quantiles_of("llr"), Some(&[-2.5f32, 0.1, 3.0][..]));
    assert_eq!(c.percentile("llr", 0.1), Some(50.0));
    assert_eq!(c.percentile("llr_masked", 0.0), Some(50.0));
    assert_eq!(c.percentile("embed_dist", 0.0), None);
    c.check_settings(1000, false, &[Score::Llr, Score::LlrMasked])
        .expect("same window");
    let e = c.check_settings(500, false, &[Score::Llr]).unwrap_err();
    assert!(
        e.to_string()
            .contains("calibrated with --window 1000 (grid windows), this run has --window 500"),
        "{e}"
    );
    let e = c.check_settings(1000, true, &[Score::Llr]).unwrap_err();
    assert!(e.to_string().contains("centred"), "{e}");
    let e = c
        .check_settings(1000, false, &[Score::EmbedDist])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no embed_dist column (it has llr, llr_masked)"),
        "{e}"
    );
    let id = |c: &str, w: &str, rcps| ModelIdentity {
        config_sha256: c.into(),
        weights_sha256: w.into(),
        rcps,
    };
    c.check_model(&id("aa", "bb", false), false)
        .expect("same model");
    // --rc-average on a PS model changes nothing.
    c.check_model(&id("aa", "bb", true), true).expect("PS");
    for (other, words) in [
        (
            id("ax", "bb", false),
            "config.json sha256 aa…, this model's ax…",
        ),
        (id("aa", "bx", false), "weights sha256 bb…"),
    ] {
        let e = c.check_model(&other, false).unwrap_err().to_string();
        assert!(
            e.contains("made with another model") && e.contains(words),
            "{e}"
        );
    }
    let e = c.check_model(&id("aa", "bb", false), true).unwrap_err();
    assert!(
        e.to_string().contains("calibrated without --rc-average"),
        "{e}"
    );
}

#[test]
fn bad_files_are_refused() {
    for (text, words) in [
        ("chrom\tpos\n", "not a strand calibration file"),
        ("#strand_calibration=2\n", "calibration format 2"),
        (
            "#strand_calibration=1\n#window=5\nquantile\tllr\n",
            "no #model_config_sha256= header",
        ),
        (HEAD, "no table"),
        (&format!("{HEAD}quantile\n0\n1\n"), "no score column"),
        (
            &format!("{HEAD}q\tllr\n0\t1\n1\t2\n"),
            "first column must be quantile",
        ),
        (
            &format!("{HEAD}quantile\tllr\n0\t2\n1\t1\n"),
            "line 9: llr decreases",
        ),
        (
            &format!("{HEAD}quantile\tllr\n0\t1\n0\t2\n"),
            "must rise from 0 to 1",
        ),
        (
            &format!("{HEAD}quantile\tllr\n0\t1\n0.5\t2\n"),
            "must run from 0 to 1",
        ),
        (
            &format!("{HEAD}quantile\tllr\n0\tNaN\n1\t1\n"),
            "\"NaN\" is not a number",
        ),
        (
            &format!("{HEAD}quantile\tllr\n0\t1\t3\n1\t1\n"),
            "3 fields, expected 2",
        ),
    ] {
        let (_d, p) = file(text);
        let e = Calibration::read(&p).unwrap_err().to_string();
        assert!(e.contains(words), "{text:?}: {e}");
        assert!(e.contains("m.calib.tsv"), "{e}");
    }
    let (_d, p) = file(&format!(
        "{HEAD}#windows=sideways\nquantile\tllr\n0\t1\n1\t2\n"
    ));
    let c = Calibration::read(&p).expect("reads");
    let e = c.check_settings(1000, false, &[Score::Llr]).unwrap_err();
    assert!(
        e.to_string().contains("#windows=sideways is not valid"),
        "{e}"
    );
}

#[test]
fn the_model_identity_is_its_config_and_weights() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/models");
    let ps = ModelIdentity::of(&root.join("ps-tiny").to_string_lossy()).expect("ps");
    let ph = ModelIdentity::of(&root.join("ph-tiny").to_string_lossy()).expect("ph");
    assert!(ps.rcps && !ph.rcps);
    assert_ne!(ps.config_sha256, ph.config_sha256);
    assert_ne!(ps.weights_sha256, ph.weights_sha256);
    let bytes = std::fs::read(root.join("ps-tiny/model.safetensors")).expect("weights");
    assert_eq!(ps.weights_sha256, hex(&Sha256::digest(&bytes)));
    assert_eq!(ps.weights_sha256.len(), 64);
}
