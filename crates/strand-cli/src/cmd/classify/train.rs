//! `strand-classify train`: a classification head fitted on a backbone's
//! pooled embeddings, written as a complete classification checkpoint.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use strand_core::{DeviceSpec, Model};
use strand_io::Reader;

use super::cv::{self, LAMBDA_GRID};
use super::eval::class_indices;
use super::labels::{self, Labels};
use super::metrics::{self, Scores};
use super::records::{embed_labelled, feature, head_logits, Embedder, Sample};
use super::{describe, fmt_float, head, prediction_cells, FeedArgs, PROG};
use crate::args::{join_layers, LayerArgs, ModelArgs, OutputDir, RunArgs};

/// Fit a classification head (a linear probe) on a Caduceus backbone.
///
/// Runs every record through the backbone (--model: any Caduceus
/// checkpoint), mean-pools the final hidden states (for PS models the
/// average of both strands), and fits multinomial logistic regression with
/// an L2 penalty chosen by stratified k-fold cross-validation. Writes a
/// CaduceusForSequenceClassification checkpoint (config.json,
/// model.safetensors) that `strand-classify predict` and the upstream
/// Python code load, plus metrics.tsv, cv.tsv and predictions.tsv.
/// --layer fits the head on other layers' pooled states (a list:
/// concatenated); see docs/classify.md.
#[derive(ClapArgs, Debug)]
#[command(mut_arg("layer", |a| a.help(
    "Fit the head on the mean-pooled hidden states after layer N instead of the final ones (0 \
     the embedding, 1 to n_layer-1 the residual stream after block N, n_layer the final norm's \
     output, the default); a list (8,16) concatenates the layers' features. The checkpoint \
     records them (strand_head_layers) for predict and eval"
)))]
pub struct Args {
    /// Labelled training records: FASTA or FASTQ, plain or gzip/BGZF; - for stdin
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub train: PathBuf,

    /// Labelled held-out records to report metrics on
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub valid: Option<PathBuf>,

    /// Labels as name<TAB>label lines, for --train and --valid [default:
    /// label=VALUE in the headers]
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub labels: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputDir,

    /// Cross-validation folds
    #[arg(long, value_name = "INT", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(2..=1000), help_heading = "Fit")]
    pub folds: u16,

    /// Use this L2 penalty instead of choosing one of 10, 1, 0.1, ...,
    /// 1e-6 by cross-validation
    // Negative numbers parse as values, so `--lambda -1` is refused as a
    // bad penalty rather than as an unknown flag.
    #[arg(long, value_name = "FLOAT", value_parser = positive,
          allow_negative_numbers = true, help_heading = "Fit")]
    pub lambda: Option<f64>,

    /// Seed of the assignment of records to folds
    #[arg(long, value_name = "INT", default_value_t = 0, help_heading = "Fit")]
    pub seed: u64,

    #[command(flatten)]
    pub feed: FeedArgs,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub layer: LayerArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("\"{s}\" is not a positive number")),
    }
}

/// `train`'s options after [`Args::validate`].
#[derive(Debug)]
pub struct Settings {
    pub train: PathBuf,
    pub valid: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    /// `-o`: the checkpoint folder.
    pub output: PathBuf,
    pub folds: usize,
    /// The L2 penalties to choose from: `--lambda`, or the grid.
    pub lambdas: Vec<f64>,
    pub seed: u64,
    pub feed: FeedArgs,
    pub model: ModelArgs,
    /// `--layer` checked against the backbone; `None`: the final layer.
    pub layers: Option<Vec<usize>>,
    pub run: RunArgs,
}

impl Args {
    /// Refuses, before any work: a GPU list (train runs on one device), an
    /// output folder that is not new or empty, an output that is an
    /// input, and layers the backbone does not have.
    pub fn validate(self) -> Result<Settings> {
        self.model.device.one(PROG)?;
        let mut inputs = vec![self.train.clone()];
        inputs.extend(self.valid.clone());
        inputs.extend(self.labels.clone());
        inputs.extend(self.model.files());
        crate::args::check_outputs(&[&self.output.path], &inputs)?;
        self.output.check()?;
        let layers = self.layer.resolve(&self.model.model)?;
        Ok(Settings {
            train: self.train,
            valid: self.valid,
            labels: self.labels,
            output: self.output.path,
            folds: usize::from(self.folds),
            lambdas: self
                .lambda
                .map_or_else(|| LAMBDA_GRID.to_vec(), |l| vec![l]),
            seed: self.seed,
            feed: self.feed,
            model: self.model,
            layers,
            run: self.run,
        })
    }
}

/// Trains with settings checked by [`Args::validate`].
pub fn run(args: Settings) -> Result<()> {
    args.run.init_threads()?;
    if let Some(format) = args.run.dry_run {
        return super::plan::train(&args, format);
    }
    let quiet = args.run.quiet;
    let say = |msg: String| {
        if !quiet {
            eprintln!("{PROG}: {msg}");
        }
    };
    let labels_src = Labels::open(args.labels.as_deref())?;
    let train_reader = Reader::from_path(&args.train)?;
    let train_file = train_reader.display_name().to_string();
    let valid_reader = args.valid.as_deref().map(Reader::from_path).transpose()?;
    let out = OutDir::prepare(&args.output)?;
    let model = args.model.load(PROG, quiet)?;
    if args.run.verbose {
        eprintln!("{PROG}: backbone {}", describe(&model));
    }
    let emb = Embedder {
        model: &model,
        special_tokens: args.feed.special_tokens,
        conjoin: args.feed.conjoin,
        layers: args.layers.clone(),
    };

    let bar = crate::progress::bases(quiet);
    let train = embed_labelled(train_reader, &labels_src, &emb, &bar)?;
    let valid = match valid_reader {
        Some(r) => {
            let file = r.display_name().to_string();
            Some((file, embed_labelled(r, &labels_src, &emb, &bar)?))
        }
        None => None,
    };
    bar.finish_and_clear();

    let labels = labels::ordered(train.iter().map(|s| s.label.clone()));
    if labels.len() < 2 {
        bail!(
            "{train_file}: every record has label \"{}\": a classifier needs at least two labels",
            labels[0]
        );
    }
    let k = labels.len();
    let y = class_indices(&train_file, &train, &labels, "the labels of --train")?;
    let counts: Vec<usize> = (0..k)
        .map(|c| y.iter().filter(|&&v| v == c).count())
        .collect();
    let folds = args.folds;
    if let Some(c) = (0..k).find(|&c| counts[c] < folds) {
        bail!(
            "{train_file}: label \"{}\" has {} record(s), fewer than the {folds} cross-validation \
             folds (--folds)",
            labels[c],
            counts[c]
        );
    }
    let valid_y = match &valid {
        Some((file, v)) => Some(class_indices(file, v, &labels, "the labels of --train")?),
        None => None,
    };
    let listing: Vec<String> = labels
        .iter()
        .zip(&counts)
        .map(|(l, c)| format!("{l} ({c})"))
        .collect();
    say(format!(
        "{train_file}: {} records, labels {}",
        train.len(),
        listing.join(", ")
    ));

    // Cross-validation, then the final fit on every training record.
    // The feature: d_model per layer, the layers one after the other.
    let d = model.config.d_model * args.layers.as_ref().map_or(1, Vec::len);
    let x: Vec<f64> = train.iter().flat_map(|s| feature(&s.views)).collect();
    let grid = &args.lambdas;
    let fold_of = cv::stratified_folds(&y, k, folds, args.seed);
    let points = cv::cross_validate(&x, d, &y, k, &fold_of, folds, grid);
    let best = cv::best(&points);
    let lambda = points[best].lambda;
    let cv_scores = metrics::score(&points[best].logits, &y, k);
    let fitted = cv::fit_head(&x, d, &y, k, lambda);
    let w32: Vec<f32> = fitted.w.iter().map(|&w| w as f32).collect();
    if !fitted.converged || !points[best].converged {
        say(format!(
            "warning: the fit at lambda {lambda:e} stopped before full convergence"
        ));
    }
    if !fitted.basis.has_intercept() {
        say(
            "warning: the pooled embeddings average to zero, so the bias-free head cannot \
             learn class priors"
                .into(),
        );
    }
    let spread = fitted.basis.intercept_spread(&x);

    // Write the checkpoint, load it back, and compute every reported
    // number from what was written, through the code `predict` runs.
    head::write(out.path(), &model, &labels, &w32, args.layers.as_deref())?;
    let id = args.output.display().to_string();
    let reloaded = Model::load_dir(out.path(), &id, DeviceSpec::Cpu)
        .with_context(|| format!("{id}: the written checkpoint does not load"))?;
    let train_logits = final_logits(&reloaded, &train, &x, &fitted.w, k)?;
    let train_scores = metrics::score(&train_logits, &y, k);
    let valid_scores = match (&valid, &valid_y) {
        (Some((_, v)), Some(vy)) => {
            let vx: Vec<f64> = v.iter().flat_map(|s| feature(&s.views)).collect();
            let logits = final_logits(&reloaded, v, &vx, &fitted.w, k)?;
            Some((metrics::score(&logits, vy, k), logits))
        }
        _ => None,
    };

    let mut table = format!("{}\n", metrics::HEADER);
    let mut rows = |split: &str, s: &Scores| {
        let mut buf = Vec::new();
        metrics::write_rows(&mut buf, split, &labels, s).expect("writing to memory");
        table.push_str(&String::from_utf8(buf).expect("UTF-8 labels"));
    };
    rows("train", &train_scores);
    rows("cv", &cv_scores);
    if let Some((s, _)) = &valid_scores {
        rows("valid", s);
    }
    writeln!(table, "fit\tlambda\t.\t{}", fmt_float(lambda as f32))?;
    writeln!(table, "fit\tfolds\t.\t{folds}")?;
    writeln!(
        table,
        "fit\tintercept_spread\t.\t{}",
        fmt_float(spread as f32)
    )?;
    out.write("metrics.tsv", table.as_bytes())?;
    out.write("cv.tsv", cv_table(&points, best, &y, k).as_bytes())?;
    let mut preds = format!("name\tlength\tsplit\tlabel\t{}\tpred\n", labels.join("\t"));
    for (s, l) in train.iter().zip(points[best].logits.chunks_exact(k)) {
        let l32: Vec<f32> = l.iter().map(|&v| v as f32).collect();
        let cells = prediction_cells(&l32, &labels, false);
        writeln!(preds, "{}\t{}\tcv\t{}\t{cells}", s.id, s.len, s.label)?;
    }
    if let (Some((_, v)), Some((_, logits))) = (&valid, &valid_scores) {
        for (s, l) in v.iter().zip(logits.chunks_exact(k)) {
            let l32: Vec<f32> = l.iter().map(|&v| v as f32).collect();
            let cells = prediction_cells(&l32, &labels, false);
            writeln!(preds, "{}\t{}\tvalid\t{}\t{cells}", s.id, s.len, s.label)?;
        }
    }
    out.write("predictions.tsv", preds.as_bytes())?;
    out.commit()?;

    if args.run.verbose {
        for line in cv_table(&points, best, &y, k).lines() {
            eprintln!("{PROG}: cv: {line}");
        }
    }
    let how = if grid.len() > 1 {
        format!("{folds}-fold cross-validation chose lambda {lambda:e}")
    } else {
        format!("lambda {lambda:e} (given)")
    };
    let on = match &args.layers {
        Some(l) => format!(" (features: layers {})", join_layers(l)),
        None => String::new(),
    };
    say(format!(
        "{how}; held-out log-loss {:.4}; intercept spread {spread:.3}{on}",
        points[best].log_loss
    ));
    say(format!("cv: {}", metrics::summary(&labels, &cv_scores)));
    if let (Some((file, _)), Some((s, _))) = (&valid, &valid_scores) {
        say(format!("{file}: {}", metrics::summary(&labels, s)));
    }
    say(format!("wrote {id}"));
    args.run.report_peak(PROG);
    Ok(())
}

/// Logits of the written head for `samples` (features `x`), through the
/// code `predict` runs, checked against the f64 fit `w`: a difference
/// beyond f32 rounding would mean the head does not hold the fitted model.
fn final_logits(
    head: &Model,
    samples: &[Sample],
    x: &[f64],
    w: &[f64],
    k: usize,
) -> Result<Vec<f64>> {
    let d = x.len() / samples.len().max(1);
    let mut out = Vec::with_capacity(samples.len() * k);
    for (s, xi) in samples.iter().zip(x.chunks_exact(d)) {
        let got = head_logits(head, &s.views)?;
        for (c, &g) in got.iter().enumerate() {
            let row = &w[c * d..(c + 1) * d];
            let want: f64 = row.iter().zip(xi).map(|(a, b)| a * b).sum();
            let scale: f64 = row.iter().zip(xi).map(|(a, b)| (a * b).abs()).sum();
            if (g as f64 - want).abs() > 1e-4 * (1.0 + scale) {
                bail!(
                    "internal error: record \"{}\": written head gives logit {g} for class {c}, \
                     the fit {want}",
                    s.id
                );
            }
            out.push(g as f64);
        }
    }
    Ok(out)
}

/// `cv.tsv`: one row per penalty tried.
fn cv_table(points: &[cv::CvPoint], best: usize, y: &[usize], k: usize) -> String {
    let mut t = String::from("lambda\tlog_loss\taccuracy\tmacro_f1\tconverged\tselected\n");
    for (i, p) in points.iter().enumerate() {
        let s = metrics::score(&p.logits, y, k);
        let _ = writeln!(
            t,
            "{}\t{}\t{}\t{}\t{}\t{}",
            fmt_float(p.lambda as f32),
            fmt_float(p.log_loss as f32),
            fmt_float(s.accuracy as f32),
            fmt_float(s.macro_f1 as f32),
            p.converged,
            i == best
        );
    }
    t
}

/// The output folder, built as a hidden sibling and renamed into place
/// once complete, so a failed or killed run never leaves a folder that
/// looks like a finished checkpoint.
struct OutDir {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl OutDir {
    fn prepare(dest: &Path) -> Result<OutDir> {
        let shown = dest.display();
        // Checked by validate too; again here, just before it is made.
        crate::args::check_empty_dir(dest)?;
        let name = dest
            .file_name()
            .with_context(|| format!("{shown}: not a folder name"))?
            .to_string_lossy();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = parent.join(format!(".{name}.strand-tmp.{}-{nanos}", std::process::id()));
        // create_dir (not a private temp dir) so the folder gets the
        // usual permissions under the user's umask.
        std::fs::create_dir(&tmp).with_context(|| format!("{shown}: cannot create"))?;
        Ok(OutDir {
            tmp,
            dest: dest.to_path_buf(),
            done: false,
        })
    }

    fn path(&self) -> &Path {
        &self.tmp
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        std::fs::write(self.tmp.join(name), bytes)
            .with_context(|| format!("{}: cannot write {name}", self.dest.display()))
    }

    fn commit(mut self) -> Result<()> {
        let shown = self.dest.display().to_string();
        if self.dest.is_dir() {
            // Checked empty at the start; fails (and says so) if it is not now.
            std::fs::remove_dir(&self.dest).with_context(|| format!("{shown}: cannot replace"))?;
        }
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("{shown}: cannot move finished output into place"))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if !self.done {
            // Only our own, freshly created folder.
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
