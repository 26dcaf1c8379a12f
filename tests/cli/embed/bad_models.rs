//! Damaged or unsupported checkpoints: one-line errors naming the file and tensor.

use super::errors::fails_cleanly;
use super::*;

/// Copies fixture model `name` to `<dir>/<name>` and returns that path.
fn copy_model(name: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).expect("create model dir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(root().join(model(name)).join(f), dst.join(f)).expect("copy model file");
    }
    dst
}

/// Rewrites `<model>/model.safetensors` with `edit` applied to its tensors.
fn edit_weights(model_dir: &Path, edit: impl FnOnce(&mut Vec<Tensor>)) {
    let path = model_dir.join("model.safetensors");
    let mut file = SafeFile::read(&path);
    edit(&mut file.tensors);
    file.write(&path);
}

/// Rewrites `<model>/config.json` with `edit` applied.
fn edit_config(model_dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = model_dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("JSON");
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("JSON")).expect("write");
}

fn model_failure(model_dir: &Path, dir: &Path, needles: &[&str]) -> String {
    let m = model_dir.to_string_lossy();
    fails_cleanly(dir, embed(), &["--model", &m, &sequences()], needles)
}

const FWD_D: &str = "caduceus.backbone.layers.1.mixer.submodule.mamba_fwd.D";
const FWD_CONV: &str = "caduceus.backbone.layers.0.mixer.submodule.mamba_fwd.conv1d.weight";

#[test]
fn bad_model_missing_tensor() {
    let dir = tempdir();
    let m = copy_model("ps-tiny", dir.path());
    edit_weights(&m, |ts| {
        let before = ts.len();
        ts.retain(|t| t.name != FWD_D);
        assert_eq!(ts.len(), before - 1, "{FWD_D} is in the fixture");
    });
    let file = m.join("model.safetensors");
    model_failure(&m, dir.path(), &[&file.to_string_lossy(), FWD_D, "missing"]);
}

#[test]
fn bad_model_misshapen_tensor() {
    // A reshape that keeps the element count, and a truncation.
    type Edit = fn(&mut Tensor);
    let cases: [(&str, Edit, &str); 2] = [
        (FWD_CONV, |t| t.shape = vec![48, 4], "[48, 4]"),
        (
            FWD_D,
            |t| {
                t.shape = vec![47];
                t.bytes.truncate(47 * 4);
            },
            "[47]",
        ),
    ];
    for (name, change, shown) in cases {
        let dir = tempdir();
        let m = copy_model("ps-tiny", dir.path());
        edit_weights(&m, |ts| {
            change(ts.iter_mut().find(|t| t.name == name).expect("in fixture"));
        });
        let file = m.join("model.safetensors");
        model_failure(
            &m,
            dir.path(),
            &[&file.to_string_lossy(), name, "shape", shown],
        );
    }
}

#[test]
fn bad_model_unexpected_tensor() {
    let dir = tempdir();
    let m = copy_model("ps-tiny", dir.path());
    // What a third layer would add; config.json says n_layer 2.
    let extra = "caduceus.backbone.layers.2.norm.weight";
    edit_weights(&m, |ts| {
        let mut t = ts
            .iter()
            .find(|t| t.name == "caduceus.backbone.layers.1.norm.weight")
            .expect("in fixture")
            .clone();
        t.name = extra.to_owned();
        ts.push(t);
    });
    let file = m.join("model.safetensors");
    model_failure(
        &m,
        dir.path(),
        &[&file.to_string_lossy(), extra, "unexpected"],
    );
}

#[test]
fn bad_model_unsupported_bidirectional_strategy() {
    let dir = tempdir();
    let m = copy_model("ps-tiny", dir.path());
    edit_config(&m, |c| c["bidirectional_strategy"] = "concat".into());
    let file = m.join("config.json");
    model_failure(
        &m,
        dir.path(),
        &[&file.to_string_lossy(), "bidirectional_strategy", "concat"],
    );
}

#[test]
fn bad_model_unknown_ssm_cfg_key() {
    let dir = tempdir();
    let m = copy_model("ph-tiny", dir.path());
    edit_config(&m, |c| c["ssm_cfg"]["headdim"] = 64.into());
    let file = m.join("config.json");
    model_failure(&m, dir.path(), &[&file.to_string_lossy(), "headdim"]);
}

#[test]
fn bad_model_pytorch_bin_only_says_how_to_convert() {
    let dir = tempdir();
    let m = dir.path().join("torch-only");
    std::fs::create_dir(&m).expect("create model dir");
    std::fs::copy(
        root().join(model("ps-tiny")).join("config.json"),
        m.join("config.json"),
    )
    .expect("copy config");
    // Content is irrelevant: it must be refused without being read.
    std::fs::write(m.join("pytorch_model.bin"), b"PK\x03\x04not really a zip").expect("write .bin");
    model_failure(
        &m,
        dir.path(),
        &[
            &m.to_string_lossy(),
            "pytorch_model.bin",
            "convert",
            "save_pretrained",
            "safe_serialization=True",
        ],
    );
}
