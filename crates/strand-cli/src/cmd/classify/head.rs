//! Writing a trained head as a complete `CaduceusForSequenceClassification`
//! checkpoint: the backbone's tensors under the classification model's key
//! names, `score.weight`, and the backbone's `config.json` turned into a
//! classifier's, as Hugging Face `save_pretrained` would write them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use strand_core::model::checkpoint::Checkpoint;
use strand_core::model::config::HEAD_LAYERS_KEY;
use strand_core::Model;

/// Where the classification model keeps its backbone
/// (`CaduceusForSequenceClassification.caduceus.backbone`).
const PREFIX: &str = "caduceus.backbone.";

/// Writes `config.json` and `model.safetensors` into `dir`: `backbone`'s
/// tensors (masked-LM or previous classification heads dropped) plus
/// `score.weight` = `w` (`labels.len() x d_model`, row-major; with
/// `layers`, the layers the head reads, `d_model` per layer, and
/// `strand_head_layers` in the config).
pub fn write(
    dir: &Path,
    backbone: &Model,
    labels: &[String],
    w: &[f32],
    layers: Option<&[usize]>,
) -> Result<()> {
    let d = backbone.config.d_model * layers.map_or(1, <[usize]>::len);
    assert_eq!(
        w.len(),
        labels.len() * d,
        "score.weight is num_labels x d_model per layer"
    );
    write_config(dir, backbone, labels, layers)?;
    copy_support_files(&backbone.dir, dir)?;

    let ckpt = Checkpoint::open(&backbone.dir)?;
    let names = ckpt.names();
    // The same rule as the loader: head models nest the backbone under
    // `caduceus.`, a bare `Caduceus` saved alone starts at `backbone.`.
    let nested = names.iter().any(|n| n.starts_with(PREFIX));
    let rename = |name: &str| -> Option<String> {
        if nested {
            name.starts_with(PREFIX).then(|| name.to_string())
        } else {
            name.strip_prefix("backbone.")
                .map(|rest| format!("{PREFIX}{rest}"))
        }
    };
    // Raw bytes, dtype kept: the backbone is copied, not converted.
    let mut by_file: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for &name in &names {
        by_file.entry(ckpt.path_of(name)).or_default().push(name);
    }
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (file, in_file) in by_file {
        let bytes =
            std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a valid safetensors file", file.display()))?;
        for name in in_file {
            let Some(new) = rename(name) else { continue };
            let t = st
                .tensor(name)
                .with_context(|| format!("{}: tensor {name}", file.display()))?;
            tensors.push((new, t.dtype(), t.shape().to_vec(), t.data().to_vec()));
        }
    }
    if tensors.is_empty() {
        bail!("{}: no backbone tensors to copy", backbone.dir.display());
    }
    let score: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensors.push((
        "score.weight".into(),
        Dtype::F32,
        vec![labels.len(), d],
        score,
    ));

    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view =
                TensorView::new(*dtype, shape.clone(), data).expect("sizes come from a valid file");
            (name.as_str(), view)
        })
        .collect::<Vec<_>>();
    let path = dir.join("model.safetensors");
    // What torch's save_pretrained records; some readers look for it.
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    // Serialised in memory and written with std (not serialize_to_file)
    // so the file gets the usual permissions under the user's umask.
    let bytes = safetensors::serialize(views, Some(meta))
        .with_context(|| format!("{}: cannot serialise", path.display()))?;
    std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// Copies what Python needs besides the weights to load the folder the
/// way it loads the backbone: the remote code that `auto_map` in
/// `config.json` points at (`*.py`), and the tokenizer's files. Published
/// checkpoints ship them; a backbone without them gives a folder without.
fn copy_support_files(src: &Path, dst: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(src).with_context(|| format!("{}: cannot read", src.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot read", src.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = name.ends_with(".py")
            || name.starts_with("tokenizer")
            || name.starts_with("special_tokens_map");
        // `is_file` follows links: hub snapshots link into the blob store.
        if wanted && entry.path().is_file() {
            std::fs::copy(entry.path(), dst.join(&name))
                .with_context(|| format!("{}: cannot copy {name}", src.display()))?;
        }
    }
    Ok(())
}

/// The backbone's `config.json` with the classifier's fields set as
/// `PretrainedConfig.to_json_string` writes them: `architectures`,
/// `id2label` (string keys) and `label2id`. Hugging Face derives
/// `num_labels` from `id2label` and does not store it, so a stale one is
/// removed. Keys come out sorted, with two-space indentation, as there.
/// `strand_head_layers` is set to `layers`, or removed (a backbone that
/// was itself such a classifier).
fn write_config(
    dir: &Path,
    backbone: &Model,
    labels: &[String],
    layers: Option<&[usize]>,
) -> Result<()> {
    let src = backbone.dir.join("config.json");
    let bytes = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
    let mut cfg: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not valid JSON", src.display()))?;
    let obj = cfg
        .as_object_mut()
        .with_context(|| format!("{}: expected a JSON object", src.display()))?;
    obj.insert(
        "architectures".into(),
        json!(["CaduceusForSequenceClassification"]),
    );
    let id2label: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    let label2id: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), json!(i)))
        .collect();
    obj.insert("id2label".into(), Value::Object(id2label));
    obj.insert("label2id".into(), Value::Object(label2id));
    obj.remove("num_labels");
    match layers {
        Some(l) => obj.insert(HEAD_LAYERS_KEY.into(), json!(l)),
        None => obj.remove(HEAD_LAYERS_KEY),
    };
    let path = dir.join("config.json");
    let mut text = serde_json::to_string_pretty(&cfg).expect("a JSON value serialises");
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))
}
