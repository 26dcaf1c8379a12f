//! A loaded Caduceus model ready to run, and the outputs later commands
//! build on: hidden states, masked-LM logits and classification logits.
//! It reads checkpoints through [`crate::model`] and runs them on a
//! [`crate::backend`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::CudaBackend;
use crate::backend::{Backend, DeviceSpec, HostBuffer, Placement, Precision, Stream};
use crate::error::{Error, Result};
use crate::heads;
use crate::memory::{self, PassMemory};
use crate::model::weights::Weights;
use crate::model::{checkpoint, hub, Config};

enum Engine {
    Cpu(CpuBackend),
    // Boxed: the GPU backend carries its device weights and handles.
    Cuda(Box<CudaBackend>),
}

/// One dispatch per call; backends never see each other.
macro_rules! on_engine {
    ($self:expr, $b:ident => $e:expr) => {
        match &$self.engine {
            Engine::Cpu($b) => $e,
            Engine::Cuda(c) => {
                let $b = &**c;
                $e
            }
        }
    };
}

/// Where a pass's final hidden states go.
pub enum Out<'a> {
    /// Into a host buffer, resized to `[nseq * len, width]` (the sequences'
    /// rows one after the other). Reusing one buffer across passes avoids
    /// allocating and faulting in hundreds of megabytes per pass, and lets
    /// a GPU keep it page-locked.
    Host(&'a mut HostBuffer),
    /// The hidden states after each of these layers, in this order, into
    /// a host buffer resized to `[layers.len(), nseq * len, width]` (one
    /// [`Out::Host`]-shaped slab per layer). Layer `N` of `0..=n_layer`:
    /// - `0`: the embedding layer's output;
    /// - `1..n_layer`: the residual stream after block `N` (1-based: after
    ///   `N` blocks), `hidden + residual` of the block's output pair as the
    ///   next block's fused add+norm adds them, before any norm, in the
    ///   block's own layout (a PS block exchanges the two channel halves,
    ///   so after an odd `N` they are in the opposite order to the
    ///   embedding's; `docs/caduceus-model.md` section 4);
    /// - `n_layer`: the final norm's output, bit for bit what
    ///   [`Out::Host`] gives.
    ///
    /// Blocks past the deepest layer asked for are not run. Layers must
    /// be distinct and at most `n_layer`.
    Layers(&'a [usize], &'a mut HostBuffer),
    /// Left on the device (benchmarks): the pass is run and waited for.
    Discard,
    /// Into a host buffer as [`Out::Host`], calling `after_block(i,
    /// stream)` after each block with a host copy of the stream (one
    /// sequence; for conformance tests and debugging: copying is costly on
    /// a GPU).
    Traced(&'a mut HostBuffer, &'a mut dyn FnMut(usize, &Stream)),
}

/// A model ready to run.
pub struct Model {
    pub config: Config,
    /// Directory the checkpoint was read from.
    pub dir: PathBuf,
    /// What the user passed to `--model` (a hub id or a path).
    pub id: String,
    pub(crate) weights: Arc<Weights>,
    engine: Engine,
    /// Why `DeviceSpec::Auto` fell back to the CPU, when it did.
    gpu_unused: Option<String>,
}

impl Model {
    /// Resolves `model` (directory or hub id), checks and loads it.
    pub fn load(model: &str, place: impl Into<Placement>) -> Result<Model> {
        let dir = hub::resolve(model)?;
        Model::load_dir(&dir, model, place)
    }

    /// Loads from a directory holding `config.json` and the weights.
    pub fn load_dir(dir: &Path, id: &str, place: impl Into<Placement>) -> Result<Model> {
        let config = Config::from_file(&dir.join("config.json"))?;
        let ckpt = checkpoint::Checkpoint::open(dir)?;
        let weights = Arc::new(Weights::load(&ckpt, &config)?);
        Model::from_parts(config, weights, dir, id, place)
    }

    /// The same model on another device, sharing the host weights (no
    /// reload): one per GPU for multi-GPU runs.
    pub fn replicate(&self, place: impl Into<Placement>) -> Result<Model> {
        Model::from_parts(
            self.config.clone(),
            self.weights.clone(),
            &self.dir,
            &self.id,
            place,
        )
    }

    /// Builds a model from weights made elsewhere (benchmarks, tests).
    pub fn from_parts(
        config: Config,
        weights: Arc<Weights>,
        dir: &Path,
        id: &str,
        place: impl Into<Placement>,
    ) -> Result<Model> {
        let Placement { device, precision } = place.into();
        let cpu = |config: &Config| -> Result<Engine> {
            match precision {
                Some(Precision::Bf16) => Err(Error::Unsupported(
                    "bf16 runs on a GPU only; use --precision fp32 on the CPU".into(),
                )),
                _ => Ok(Engine::Cpu(CpuBackend::new(config, weights.clone()))),
            }
        };
        let gpu = |n| {
            let prec = precision.unwrap_or(Precision::Bf16);
            CudaBackend::new(n, &config, weights.clone(), prec).map(|b| Engine::Cuda(Box::new(b)))
        };
        let mut gpu_unused = None;
        let engine = match device {
            DeviceSpec::Cpu => cpu(&config)?,
            DeviceSpec::Cuda(n) => gpu(n)?,
            DeviceSpec::Auto => match gpu(0) {
                Ok(e) => e,
                // An explicit bf16 request needs the GPU: say why it failed.
                Err(e) if precision == Some(Precision::Bf16) => return Err(e),
                Err(e) => {
                    gpu_unused = Some(e.to_string());
                    cpu(&config)?
                }
            },
        };
        Ok(Model {
            config,
            dir: dir.to_path_buf(),
            id: id.to_string(),
            weights,
            engine,
            gpu_unused,
        })
    }

    /// Why `DeviceSpec::Auto` fell back to the CPU (the GPU backend's
    /// error), or `None` when it did not (or another device was asked for).
    pub fn gpu_fallback(&self) -> Option<&str> {
        self.gpu_unused.as_deref()
    }

    /// Whether the model runs on a GPU. Callers ask what they need
    /// instead ([`Model::pass_limit`], [`Model::batches`],
    /// [`Model::locks_host_memory`]), so a new backend answers there.
    pub(crate) fn on_gpu(&self) -> bool {
        matches!(self.engine, Engine::Cuda(_))
    }

    /// The most tokens one pass may take now where the device's memory
    /// bounds it: on a GPU, [`Model::max_window`] (its free memory, and the
    /// host memory the results come back to); `None` on the CPU, whose
    /// passes run one sequence at a time in host memory and are not
    /// bounded here.
    pub fn pass_limit(&self) -> Result<Option<usize>> {
        if self.on_gpu() {
            self.max_window().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Whether [`Model::run`] takes several sequences as one batched pass
    /// (a GPU), rather than one pass per sequence (the CPU).
    pub fn batches(&self) -> bool {
        self.on_gpu()
    }

    /// Whether the [`HostBuffer`]s that [`Out::Host`] fills may be
    /// page-locked for the device's copies (a GPU's, unless
    /// `STRAND_NO_PINNED=1`; the CPU locks nothing).
    pub fn locks_host_memory(&self) -> bool {
        self.on_gpu()
    }

    /// Highest GPU memory in use seen during forward passes (whole
    /// device, as `nvidia-smi` counts it); `None` on the CPU.
    pub fn peak_gpu_bytes(&self) -> Option<usize> {
        match &self.engine {
            Engine::Cpu(_) => None,
            Engine::Cuda(c) => Some(c.peak_bytes()),
        }
    }

    /// Width of hidden states (`2 * d_model` for PS).
    pub fn width(&self) -> usize {
        self.config.width()
    }

    /// What the model's passes cost on its device (the formula of
    /// [`crate::memory`], which `--dry-run` prints too).
    pub fn pass_memory(&self) -> PassMemory {
        PassMemory::of(&self.config, self.engine_kind())
    }

    /// The backend and precision, for [`crate::memory`].
    pub fn engine_kind(&self) -> memory::Engine {
        match &self.engine {
            Engine::Cpu(_) => memory::Engine::Cpu,
            Engine::Cuda(c) => memory::Engine::Cuda(c.precision()),
        }
    }

    /// The longest sequence one forward pass can take in the memory free
    /// now (device memory on a GPU, and host memory for the result),
    /// rounded down to a multiple of 1,024 tokens: the free memory over
    /// [`Model::pass_memory`].
    pub fn max_window(&self) -> Result<usize> {
        let free = on_engine!(self, b => b.free_bytes())?;
        let mut tokens = self.pass_memory().tokens_in(free);
        if self.on_gpu() {
            // The hidden states come back to the host as f32.
            if let Some(host) = crate::backend::host_available_bytes() {
                tokens = tokens.min(host / 2 / (4 * self.width() as u64));
            }
        }
        let tokens = usize::try_from(tokens).unwrap_or(usize::MAX);
        if tokens < 1024 {
            return Err(Error::Input(format!(
                "not enough free memory for a 1,024-token pass ({} MiB free)",
                free >> 20
            )));
        }
        Ok(tokens / 1024 * 1024)
    }

    pub fn describe_device(&self) -> String {
        on_engine!(self, b => b.describe())
    }

    /// Final hidden states `[len, width]` of token ids `[len]`.
    pub fn forward(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        on_engine!(self, b => b.final_norm(self.blocks(b, b.embed(ids)?)?))
    }

    /// One forward pass over sequences of equal length (one batched pass
    /// on a GPU, one pass per sequence on the CPU: the same numbers as
    /// [`Model::forward`] on each, within float tolerance); the final
    /// hidden states go where `out` says.
    pub fn run(&self, seqs: &[&[u32]], out: Out<'_>) -> Result<()> {
        let Some(len) = seqs.first().map(|s| s.len()) else {
            if let Out::Host(o) | Out::Traced(o, _) | Out::Layers(_, o) = out {
                o.resize(0);
            }
            return Ok(());
        };
        for s in seqs {
            if s.len() != len {
                return Err(Error::Input(format!(
                    "a batch needs sequences of equal length ({len} and {})",
                    s.len()
                )));
            }
            self.check_ids(s)?;
        }
        if let Out::Layers(layers, o) = out {
            self.check_layers(layers)?;
            let slab = seqs.len() * len * self.width();
            o.resize(layers.len() * slab);
            return on_engine!(self, b => {
                let st = if seqs.len() == 1 {
                    Some(b.embed(seqs[0])?)
                } else {
                    b.embed_batch(&seqs.concat(), seqs.len())?
                };
                match st {
                    Some(st) => self.run_layers(b, st, layers, o, slab, 0),
                    // A backend that runs one sequence at a time.
                    None => seqs.iter().enumerate().try_for_each(|(i, s)| {
                        self.run_layers(b, b.embed(s)?, layers, o, slab, i * len * self.width())
                    }),
                }
            });
        }
        if let Out::Traced(o, after_block) = out {
            let [ids] = seqs else {
                return Err(Error::Input("a traced pass takes one sequence".into()));
            };
            return on_engine!(self, b => {
                let mut st = b.embed(ids)?;
                for i in 0..self.config.n_layer {
                    b.block(i, &mut st)?;
                    after_block(i, &b.stream(&st)?);
                }
                b.final_norm_into(st, o)
            });
        }
        on_engine!(self, b => {
            let st = if seqs.len() == 1 {
                Some(b.embed(seqs[0])?)
            } else {
                b.embed_batch(&seqs.concat(), seqs.len())?
            };
            match (st, out) {
                (Some(st), Out::Host(o)) => b.final_norm_into(self.blocks(b, st)?, o),
                (Some(st), _) => b.final_norm_discard(self.blocks(b, st)?),
                // A backend that runs one sequence at a time.
                (None, Out::Host(o)) => {
                    let n = len * self.width();
                    o.resize(0);
                    o.resize(seqs.len() * n);
                    for (s, rows) in seqs.iter().zip(o.chunks_exact_mut(n.max(1))) {
                        rows.copy_from_slice(&self.forward(s)?);
                    }
                    Ok(())
                }
                (None, _) => seqs.iter().try_for_each(|s| self.run(&[s], Out::Discard)),
            }
        })
    }

    /// Milliseconds per GPU op of one forward pass over `ids`, timed with
    /// CUDA events (each op is bracketed, so the total slightly exceeds an
    /// untimed pass); `None` on the CPU.
    pub fn profile_forward(&self, ids: &[u32]) -> Result<Option<Vec<(&'static str, f64)>>> {
        match &self.engine {
            Engine::Cpu(_) => Ok(None),
            Engine::Cuda(c) => {
                c.profile_start();
                let run = self.run(&[ids], Out::Discard);
                let times = c.profile_take()?;
                run.map(|_| Some(times))
            }
        }
    }

    /// Runs the blocks up to the deepest of `layers` on `st`, copying the
    /// hidden states after each layer asked for into its slab of `out`
    /// (layer `j` of `layers` at `j * slab + at`); see [`Out::Layers`].
    fn run_layers<B: Backend>(
        &self,
        b: &B,
        mut st: B::State,
        layers: &[usize],
        out: &mut HostBuffer,
        slab: usize,
        at: usize,
    ) -> Result<()> {
        let n_layer = self.config.n_layer;
        let slot = |n: usize| layers.iter().position(|&l| l == n).map(|j| j * slab + at);
        let deepest = layers.iter().copied().max().unwrap_or(0);
        for done in 0..=deepest {
            if done > 0 {
                b.block(done - 1, &mut st)?;
            }
            if done < n_layer {
                if let Some(to) = slot(done) {
                    b.stream_at(&st, out, to)?;
                }
            }
        }
        match slot(n_layer) {
            Some(to) => b.final_norm_at(st, out, to),
            None => Ok(()),
        }
    }

    /// Layers for [`Out::Layers`]: distinct, each at most `n_layer`.
    fn check_layers(&self, layers: &[usize]) -> Result<()> {
        let n_layer = self.config.n_layer;
        if let Some(bad) = layers.iter().find(|&&l| l > n_layer) {
            return Err(Error::Input(format!(
                "layer {bad} does not exist: the model has {n_layer} blocks (layers 0 to {n_layer})"
            )));
        }
        for (i, l) in layers.iter().enumerate() {
            if layers[..i].contains(l) {
                return Err(Error::Input(format!("layer {l} is asked for twice")));
            }
        }
        Ok(())
    }

    /// The hidden states after each of `layers` (see [`Out::Layers`]) of
    /// token ids `[len]`: one `[len, width]` vector per layer, in order.
    pub fn forward_layers(&self, ids: &[u32], layers: &[usize]) -> Result<Vec<Vec<f32>>> {
        self.check_ids(ids)?;
        let mut out = HostBuffer::transient();
        self.run(&[ids], Out::Layers(layers, &mut out))?;
        let slab = ids.len() * self.width();
        Ok(out.chunks_exact(slab).map(<[f32]>::to_vec).collect())
    }

    /// Runs every block on `st`.
    fn blocks<B: Backend>(&self, b: &B, mut st: B::State) -> Result<B::State> {
        for i in 0..self.config.n_layer {
            b.block(i, &mut st)?;
        }
        Ok(st)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::Input("empty sequence: nothing to embed".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the model vocabulary of {}",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// The embedding layer's output `[len, width]`.
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        on_engine!(self, b => Ok(b.stream(&b.embed(ids)?)?.hidden))
    }

    /// Masked-LM logits `[len, vocab]` from final hidden states.
    pub fn lm_logits(&self, hidden: &[f32]) -> Result<Vec<f32>> {
        let len = hidden.len() / self.width();
        on_engine!(self, b => b.lm_logits(hidden, len))
    }

    /// The sequence-classification head's weights `[num_labels, d_model]`
    /// (see [`crate::heads::class_logits`]).
    pub fn class_head(&self) -> Result<&[f32]> {
        self.weights.score.as_deref().ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: not a sequence-classification checkpoint (no score.weight)",
                self.id
            ))
        })
    }

    /// Sequence-classification logits `[num_labels]` from final hidden
    /// states, as `CaduceusForSequenceClassification` computes them with
    /// mean pooling: for PS the average of the head over both strands.
    /// A head that reads other layers ([`Config::head_layers`]) is refused:
    /// pool those layers' states and call [`heads::class_logits`].
    pub fn class_logits(&self, hidden: &[f32]) -> Result<Vec<f32>> {
        let n = self.config.n_layer;
        if self.config.head_layers.iter().any(|&l| l != n) {
            return Err(Error::Unsupported(format!(
                "{}: the head reads layers {:?}, not the final hidden states alone",
                self.id, self.config.head_layers
            )));
        }
        let views = heads::pooled_views(&self.config, hidden);
        Ok(heads::class_logits(
            &self.config,
            self.class_head()?,
            &views,
        ))
    }
}
