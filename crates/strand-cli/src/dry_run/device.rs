//! The devices a run would take, what it needs of their memory, and how
//! long it would take on them.
//!
//! The model's `config.json` is read, not its weights. `--device` is
//! resolved as the run resolves it (`auto` takes GPU 0 when it can be
//! opened, else the CPU); each GPU is asked its name and free memory
//! through a fresh context, which compiles and allocates nothing. A GPU
//! that cannot be opened (no driver, no such GPU, a build without CUDA) is
//! planned from the config alone and said to be "not probed": the memory a
//! run needs does not depend on the machine, only the verdict whether it
//! fits does.

use anyhow::{bail, Result};
use strand_core::memory::{self, Engine, PassMemory};
use strand_core::{Config, DeviceSpec, Precision};

use super::{bytes, calibration, count, duration, rate, Report, PROCESS_BYTES};
use crate::args::{Devices, ModelArgs};

/// One device of the run.
#[derive(Debug, Clone)]
pub struct Device {
    /// `cpu` or `cuda:N`.
    pub label: String,
    /// What was found: the CPU's kernels and threads, or the GPU's name
    /// and memory; `None` for a GPU that was not probed.
    pub probed: Option<Probe>,
    /// Why a GPU was not probed.
    pub not_probed: Option<String>,
}

/// A device as found on this machine.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The key of its calibration lines.
    pub key: String,
    /// GPUs: free and total memory.
    pub free: Option<u64>,
    pub total: Option<u64>,
}

/// The model and devices of a run.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: String,
    pub cfg: Config,
    pub engine: Engine,
    pub devices: Vec<Device>,
    /// How `--device auto` was resolved, if it was given.
    pub note: Option<String>,
}

/// What a run needs, as a command works it out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Need {
    /// Tokens of the largest batched pass: what the runner checks against
    /// each GPU's free memory.
    pub pass_rows: u64,
    /// The longest sequence in a pass (the CPU runs one at a time).
    pub pass_len: u64,
    /// Host memory of the passes and of the buffers around them (hidden
    /// states in flight, output staging), at the run's peak: on the CPU
    /// it includes the pass itself ([`Target::host_pass`]).
    pub host: u64,
    /// Tokens of every pass together (`None` when the input cannot be
    /// counted before the run).
    pub tokens: Option<u64>,
}

impl Target {
    /// Reads `config.json` of `--model` and resolves `--device` as a run
    /// would, probing each GPU.
    pub fn resolve(model: &ModelArgs) -> Result<Target> {
        let dir = strand_core::model::hub::resolve(&model.model)?;
        let cfg = Config::from_file(&dir.join("config.json"))?;
        let gpu = |n: usize| -> Device {
            let label = format!("cuda:{n}");
            match strand_core::diag::gpu_memory(n) {
                Ok(g) => Device {
                    label,
                    probed: Some(Probe {
                        key: calibration::gpu_device(&g.name),
                        free: Some(g.free_bytes),
                        total: Some(g.total_bytes),
                    }),
                    not_probed: None,
                },
                Err(e) => Device {
                    label,
                    probed: None,
                    not_probed: Some(e.to_string()),
                },
            }
        };
        let cpu = || Device {
            label: "cpu".into(),
            probed: Some(Probe {
                key: calibration::cpu_device(rayon::current_num_threads()),
                free: None,
                total: None,
            }),
            not_probed: None,
        };
        let mut note = None;
        let devices = match &model.device.devices {
            Devices::One(DeviceSpec::Cpu) => vec![cpu()],
            Devices::One(DeviceSpec::Cuda(n)) => vec![gpu(*n)],
            Devices::One(DeviceSpec::Auto) => {
                let g = gpu(0);
                match &g.not_probed {
                    None => {
                        note = Some("auto: GPU 0".to_string());
                        vec![g]
                    }
                    // An explicit bf16 request needs the GPU, as in a run.
                    Some(why) if model.precision == Some(Precision::Bf16) => bail!("{why}"),
                    Some(why) => {
                        // As a run says it: without the advice to use the
                        // CPU, which auto takes.
                        let why = why.strip_prefix("cuda: ").unwrap_or(why);
                        let why = why.trim_end_matches("; use --device cpu");
                        note = Some(format!("auto: cpu (no usable GPU: {why})"));
                        vec![cpu()]
                    }
                }
            }
            Devices::Gpus(list) => list.iter().map(|&n| gpu(n)).collect(),
            Devices::AllGpus => match strand_core::diag::gpu_count() {
                Ok(n) => (0..n).map(gpu).collect(),
                Err(e) => vec![Device {
                    label: "cuda:all".into(),
                    probed: None,
                    not_probed: Some(format!("{e} (planned as one GPU)")),
                }],
            },
        };
        let engine = if devices[0].label == "cpu" {
            if model.precision == Some(Precision::Bf16) {
                bail!("bf16 runs on a GPU only; use --precision fp32 on the CPU");
            }
            Engine::Cpu
        } else {
            Engine::Cuda(model.precision.unwrap_or(Precision::Bf16))
        };
        Ok(Target {
            model: model.model.clone(),
            cfg,
            engine,
            devices,
            note,
        })
    }

    /// A test model (`test-data/models/NAME`) on `engine`, with `devices`
    /// devices that were not probed.
    #[cfg(test)]
    pub fn test(name: &str, engine: Engine, devices: usize) -> Target {
        let dir = format!(
            "{}/../../test-data/models/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let label = |i| match engine {
            Engine::Cpu => "cpu".to_string(),
            Engine::Cuda(_) => format!("cuda:{i}"),
        };
        Target {
            model: name.into(),
            cfg: Config::from_file(std::path::Path::new(&format!("{dir}/config.json")))
                .expect("test model"),
            engine,
            devices: (0..devices)
                .map(|i| Device {
                    label: label(i),
                    probed: None,
                    not_probed: Some("a test".into()),
                })
                .collect(),
            note: None,
        }
    }

    /// What a pass costs on the run's devices (the runner's formula).
    pub fn pass_memory(&self) -> PassMemory {
        PassMemory::of(&self.cfg, self.engine)
    }

    /// Whether batches run as one pass (GPUs).
    pub fn batches(&self) -> bool {
        self.pass_memory().batched
    }

    /// The host memory of one pass over a sequence of `len` tokens: the
    /// pass itself on the CPU, nothing on a GPU (its pass is in device
    /// memory).
    pub fn host_pass(&self, len: u64) -> u64 {
        match self.engine {
            Engine::Cpu => self.pass_memory().bytes(len, 1),
            Engine::Cuda(_) => 0,
        }
    }

    /// Bytes per token of the hidden states a pass hands back (f32).
    pub fn hidden_bytes(&self) -> u64 {
        4 * self.cfg.width() as u64
    }

    pub fn precision(&self) -> Precision {
        match self.engine {
            Engine::Cpu => Precision::F32,
            Engine::Cuda(p) => p,
        }
    }

    /// The `model` and `devices` rows.
    pub fn describe(&self, r: &mut Report) {
        let c = &self.cfg;
        r.text(
            "model",
            format!(
                "{}: {}, d_model {}, {} layers, width {} ({}: {}; weights {})",
                self.model,
                if c.rcps { "PS" } else { "PH" },
                c.d_model,
                c.n_layer,
                c.width(),
                "shape",
                calibration::shape(c),
                bytes(4 * memory::weight_floats(c)),
            ),
        );
        let list: Vec<String> = self
            .devices
            .iter()
            .map(|d| match (&d.probed, &d.not_probed) {
                (Some(p), _) => format!("{} ({})", d.label, p.key),
                (None, Some(why)) => format!("{} (not probed: {why})", d.label),
                (None, None) => d.label.clone(),
            })
            .collect();
        let mut shown = format!("{}, {}", list.join("; "), self.precision());
        if let Some(n) = &self.note {
            shown = format!("{shown} [{n}]");
        }
        r.add("devices", self.devices.len(), shown);
    }

    /// The memory rows: each GPU's (weights, the largest pass and the
    /// reserve, against its free memory) and the host's.
    pub fn memory(&self, r: &mut Report, need: &Need) {
        let pm = self.pass_memory();
        if let Engine::Cuda(_) = self.engine {
            let weights = memory::weight_bytes(&self.cfg, self.engine);
            let pass = pm.bytes(need.pass_rows, 1);
            let total = weights + pass;
            for d in &self.devices {
                let verdict = match d.probed.as_ref().and_then(|p| p.free) {
                    Some(free) if total <= free => format!("fits: {} free", bytes(free)),
                    Some(free) => format!(
                        "DOES NOT FIT: {} free, at most {} tokens in one pass",
                        bytes(free),
                        count(pm.tokens_in(free.saturating_sub(weights)))
                    ),
                    None => "not probed: plus the CUDA context (a few hundred MiB)".into(),
                };
                r.bytes(
                    &format!("memory:{}", d.label),
                    total,
                    &format!(
                        "(weights {} + a {}-token pass {} + reserve {}; {verdict})",
                        bytes(weights),
                        count(need.pass_rows),
                        bytes(pass - pm.reserve),
                        bytes(pm.reserve)
                    ),
                );
            }
        }
        // The host keeps the weights on a GPU run too; the CPU adds its
        // scan's copies.
        let weights = match self.engine {
            Engine::Cpu => memory::weight_bytes(&self.cfg, Engine::Cpu),
            Engine::Cuda(_) => 4 * memory::weight_floats(&self.cfg),
        };
        let host = PROCESS_BYTES + weights + need.host;
        let what = match self.engine {
            Engine::Cpu => format!(
                "(program {} + weights {} + passes and buffers {}; the longest pass {} tokens \
                 at {} per token)",
                bytes(PROCESS_BYTES),
                bytes(weights),
                bytes(need.host),
                count(need.pass_len),
                bytes(pm.per_token)
            ),
            Engine::Cuda(_) => format!(
                "(program {} + weights {} + hidden states and buffers {})",
                bytes(PROCESS_BYTES),
                bytes(weights),
                bytes(need.host)
            ),
        };
        r.bytes("host_memory", host, &what);
    }

    /// The `time_s` row: `need.tokens` at the rate `strand bench`
    /// measured for this shape, precision and device at the pass size
    /// nearest `rows`, spread over the devices.
    pub fn time(&self, r: &mut Report, tokens: Option<u64>, rows: u64) {
        let shape = calibration::shape(&self.cfg);
        let prec = self.precision().to_string();
        let Some(tokens) = tokens else {
            r.unknown("time_s", "the input's size is not known before the run");
            return;
        };
        let Some(probe) = self.devices[0].probed.as_ref() else {
            r.add("time_s", "NA", "not measured: the device was not probed");
            return;
        };
        let path = calibration::path();
        let entries = match &path {
            Some(p) => calibration::read(p).unwrap_or_default(),
            None => Vec::new(),
        };
        let Some(e) = calibration::lookup(&entries, &probe.key, &shape, &prec, rows) else {
            let device = match self.engine {
                Engine::Cpu => String::new(),
                Engine::Cuda(_) => {
                    format!(" --device {} --precision {prec}", self.devices[0].label)
                }
            };
            let (d, l) = (self.cfg.d_model, self.cfg.n_layer);
            let kind = if self.cfg.rcps { "ps" } else { "ph" };
            r.add(
                "time_s",
                "NA",
                format!(
                    "not measured: no calibration for {shape} {prec} on {} in {} (run `strand \
                     bench --kind {kind} --d-model {d} --n-layer {l}{device}` once)",
                    probe.key,
                    path.map_or(
                        "the cache directory (none: set STRAND_CACHE_DIR)".into(),
                        |p| { p.display().to_string() }
                    )
                ),
            );
            return;
        };
        let secs = tokens as f64 / (e.tokens_per_s * self.devices.len() as f64);
        r.add(
            "time_s",
            format!("{secs:.1}"),
            format!(
                "about {} at {} per device ({} measured {} with {}-token passes{})",
                duration(secs),
                rate(e.tokens_per_s),
                shape,
                e.date,
                count(e.rows()),
                if e.batch > 1 {
                    format!(" of {} sequences", e.batch)
                } else {
                    String::new()
                }
            ),
        );
    }
}
