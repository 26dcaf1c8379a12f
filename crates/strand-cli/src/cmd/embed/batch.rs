//! Running items through the model: windows cut, batched, stitched,
//! pooled and written in input order.
//!
//! Work goes in rounds through strand-core's runner
//! ([`runner::map_ordered`]):
//!
//! 1. the reader takes windows in input order until a round holds the
//!    token budget, fetching and tokenising their bases;
//! 2. each device's thread runs a round's windows, those of equal length
//!    as one batched pass; with several GPUs, rounds go to whichever GPU
//!    is free;
//! 3. the writer stitches, pools and writes rounds strictly in order.
//!
//! A round's composition does not depend on the number of devices, and a
//! round runs on one device exactly as it would alone, so the output is
//! the same with one GPU or eight. Reading and writing (on the calling
//! thread) overlap the devices' passes, and memory is bounded by the few
//! rounds in flight, whatever the records' sizes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strand_core::{heads, runner, tokenizer, HostBuffer, Model, Out};
use strand_io::windows::{Tile, Tiling};

use super::layers::{self, Outputs};
use super::output::{Done, Meta, Sink};
use super::pool::Pool;
use crate::input::{Input, Item};
use crate::progress::Progress;

/// Everything about the run but the input and output.
pub struct Job<'a> {
    /// One model per device (several for `--device cuda:all`).
    pub models: &'a [Model],
    pub tiling: Tiling,
    /// Tokens per round (at least one whole window is always taken).
    pub round_tokens: usize,
    pub pool: Pool,
    pub rc_average: bool,
    pub special_tokens: bool,
    /// `--layer`: the layers to store, in order; `None`: the final hidden
    /// states alone (the default output).
    pub layers: Option<Vec<usize>>,
    /// Items to embed, by input position (from `--shard`); `None`: all.
    pub selected: Option<Vec<bool>>,
    /// Items whose output is complete already (`--resume`).
    pub done: Done,
    /// Report each stage's busy time on stderr at the end (`-v`): which
    /// stage limits the run.
    pub report_stages: bool,
}

/// One step of a round, in output order.
enum Step {
    /// An item already complete (`--resume`): only noted in the index.
    Skip(Meta),
    /// A window of item `item` (a running number); the item's `Meta` comes
    /// with its first window.
    Tile {
        item: u64,
        meta: Option<Meta>,
        tile: Tile,
        tokens: Vec<u32>,
        last: bool,
        what: Arc<str>,
    },
}

struct Round {
    steps: Vec<Step>,
}

/// The reader's state between rounds.
#[derive(Default)]
struct Reader {
    current: Option<Current>,
    /// Position of the next item in the input (for `--shard`).
    position: usize,
    /// Running number of the next item embedded.
    number: u64,
    exhausted: bool,
    busy: Duration,
}

/// The writer's state between rounds.
#[derive(Default)]
struct Writer {
    /// Items whose windows are still coming, by running number.
    items: HashMap<u64, Outputs>,
    done: u64,
    skipped: u64,
    busy: Duration,
}

/// A device's model and what it did (for `-v`).
struct Device<'a> {
    model: &'a Model,
    stats: Mutex<DeviceStats>,
}

#[derive(Default)]
struct DeviceStats {
    rounds: u64,
    busy: Duration,
    /// Rounds whose results came back into page-locked memory.
    pinned: u64,
}

/// A round's hidden states: the passes' outputs and, per tile step in
/// order, which output holds it and where it starts.
struct Computed {
    round: Round,
    hidden: Hidden,
}

struct Hidden {
    groups: Vec<HostBuffer>,
    at: Vec<(usize, usize)>,
    /// Per group, the values of one layer (`--layer`: the layers' slabs
    /// follow one another).
    slab: Vec<usize>,
}

/// The reader's view of the item whose windows are being taken.
struct Current {
    item: Item,
    number: u64,
    tiles: u64,
    next: u64,
    what: Arc<str>,
}

impl Job<'_> {
    fn model(&self) -> &Model {
        &self.models[0]
    }

    /// The outputs of an item (one per layer with `--layer`).
    fn metas(&self, meta: &Meta) -> Vec<Meta> {
        layers::metas(meta, self.layers.as_deref())
    }

    pub fn cols(&self) -> usize {
        if self.rc_average {
            self.model().config.d_model
        } else {
            self.model().width()
        }
    }

    /// Embeds every selected item of `input` into `sink`; returns the
    /// number embedded and the number skipped as already done.
    pub fn run(
        &self,
        input: &mut Input,
        sink: &mut dyn Sink,
        progress: &mut Progress,
    ) -> Result<(u64, u64)> {
        let devices: Vec<Device> = self
            .models
            .iter()
            .map(|model| Device {
                model,
                stats: Mutex::new(DeviceStats::default()),
            })
            .collect();
        // Written rounds' buffers go back to the devices: reused, they cost
        // no allocation and no page faults, and stay page-locked for the
        // GPUs' copies (`HostBuffer`).
        let spare: Mutex<Vec<HostBuffer>> = Mutex::new(Vec::new());
        let t0 = Instant::now();
        let mut reader = Reader::default();
        let mut writer = Writer::default();
        let rounds = std::iter::from_fn(|| {
            let t = Instant::now();
            let round = self.next_round(input, &mut reader).transpose();
            reader.busy += t.elapsed();
            round
        });
        runner::map_ordered(
            &devices,
            rounds,
            |device, round| {
                let t = Instant::now();
                let hidden = self.passes(device.model, &round, &spare)?;
                let mut stats = device
                    .stats
                    .lock()
                    .expect("no thread panics holding the lock");
                stats.rounds += 1;
                stats.busy += t.elapsed();
                stats.pinned += u64::from(hidden.groups.iter().all(|g| g.is_pinned()));
                Ok(Computed { round, hidden })
            },
            |computed| {
                let t = Instant::now();
                self.write(computed, &mut writer, &spare, sink, progress)?;
                writer.busy += t.elapsed();
                Ok(())
            },
        )?;
        if self.report_stages {
            let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
            let devices: Vec<String> = devices
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let s = d.stats.lock().expect("no thread panics holding the lock");
                    let plural = if s.rounds == 1 { "" } else { "s" };
                    // Only a device that page-locks its results says so.
                    let locked = if d.model.locks_host_memory() {
                        format!(", {} into page-locked memory", s.pinned)
                    } else {
                        String::new()
                    };
                    format!(
                        "device {i} {} ({} round{plural}{locked})",
                        secs(s.busy),
                        s.rounds
                    )
                })
                .collect();
            eprintln!(
                "strand-embed: busy time of each stage in {}: reading {}, {}, writing {}",
                secs(t0.elapsed()),
                secs(reader.busy),
                devices.join(", "),
                secs(writer.busy)
            );
        }
        Ok((writer.done, writer.skipped))
    }

    /// Stage 1: the next round, in input order (`None` at the end).
    fn next_round(&self, input: &mut Input, r: &mut Reader) -> Result<Option<Round>> {
        let mut steps = Vec::new();
        let mut tokens = 0usize;
        while !r.exhausted && tokens < self.round_tokens {
            if r.current.as_ref().is_none_or(|c| c.next == c.tiles) {
                match self.next_item(input, &mut r.position)? {
                    None => {
                        r.exhausted = true;
                        break;
                    }
                    Some((item, meta)) => {
                        if self.metas(&meta).iter().all(|m| self.done.contains(m)) {
                            steps.push(Step::Skip(meta));
                            continue;
                        }
                        let tiles = self.tiling.count(item.len);
                        let what: Arc<str> = item.what.as_str().into();
                        r.current = Some(Current {
                            item,
                            number: r.number,
                            tiles,
                            next: 0,
                            what,
                        });
                        r.number += 1;
                        let c = r.current.as_mut().expect("just set");
                        self.push_tile(input, c, Some(meta), &mut steps, &mut tokens)?;
                        continue;
                    }
                }
            }
            let c = r.current.as_mut().expect("an item with windows left");
            self.push_tile(input, c, None, &mut steps, &mut tokens)?;
        }
        if steps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Round { steps }))
    }

    fn push_tile(
        &self,
        input: &mut Input,
        c: &mut Current,
        meta: Option<Meta>,
        steps: &mut Vec<Step>,
        tokens: &mut usize,
    ) -> Result<()> {
        let tile = self.tiling.tile(c.item.len, c.next);
        c.next += 1;
        let bases = input.bases(&c.item, tile.start, tile.end)?;
        let toks = if self.special_tokens {
            tokenizer::encode_with_specials(&bases)
        } else {
            tokenizer::encode_bases(&bases)
        };
        *tokens += toks.len();
        steps.push(Step::Tile {
            item: c.number,
            meta,
            tile,
            tokens: toks,
            last: c.next == c.tiles,
            what: Arc::clone(&c.what),
        });
        Ok(())
    }

    /// The next selected item and its output's description.
    fn next_item(&self, input: &mut Input, position: &mut usize) -> Result<Option<(Item, Meta)>> {
        loop {
            let Some(item) = input.next_item() else {
                return Ok(None);
            };
            let item = item?;
            let pos = *position;
            *position += 1;
            if let Some(sel) = &self.selected {
                if !sel.get(pos).copied().unwrap_or(false) {
                    continue;
                }
            }
            if self.special_tokens && self.tiling.count(item.len) > 1 {
                bail!(
                    "{}: {} bases is longer than the window ({}); --special-tokens needs one \
                     pass per record",
                    item.what,
                    item.len,
                    self.tiling.window()
                );
            }
            let meta = Meta {
                name: item.name.clone(),
                what: item.what.clone(),
                contig: item.contig.clone(),
                start: item.start,
                end: item.start + item.len,
                tokens: item.len + u64::from(self.special_tokens),
                pool: self.pool,
                cols: self.cols(),
                layer: None,
            };
            return Ok(Some((item, meta)));
        }
    }

    /// Runs a round's windows, equal lengths batched together.
    fn passes(
        &self,
        model: &Model,
        round: &Round,
        spare: &Mutex<Vec<HostBuffer>>,
    ) -> Result<Hidden> {
        let tiles: Vec<(&[u32], &Tile, &Arc<str>)> = round
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Tile {
                    tokens, tile, what, ..
                } => Some((tokens.as_slice(), tile, what)),
                Step::Skip(_) => None,
            })
            .collect();
        let lens: Vec<usize> = tiles.iter().map(|t| t.0.len()).collect();
        let w = model.width();
        let mut groups = Vec::new();
        let mut slab = Vec::new();
        let mut at = vec![(0, 0); tiles.len()];
        for group in runner::by_length(&lens, usize::MAX, usize::MAX) {
            let seqs: Vec<&[u32]> = group.iter().map(|&i| tiles[i].0).collect();
            let mut hidden = spare
                .lock()
                .expect("no thread panics holding the lock")
                .pop()
                .unwrap_or_default();
            let out = match &self.layers {
                Some(layers) => Out::Layers(layers, &mut hidden),
                None => Out::Host(&mut hidden),
            };
            model.run(&seqs, out).with_context(|| {
                let (_, tile, what) = tiles[group[0]];
                if group.len() == 1 {
                    format!("{what}: bases {}-{}", tile.start + 1, tile.end)
                } else {
                    format!("{what} and {} more windows", group.len() - 1)
                }
            })?;
            for (k, &i) in group.iter().enumerate() {
                at[i] = (groups.len(), k * seqs[0].len() * w);
            }
            groups.push(hidden);
            slab.push(seqs.len() * seqs[0].len() * w);
        }
        Ok(Hidden { groups, at, slab })
    }

    /// Stage 3: stitches, pools and writes a round (rounds come in order),
    /// then hands its buffers back for reuse.
    fn write(
        &self,
        c: Computed,
        wr: &mut Writer,
        spare: &Mutex<Vec<HostBuffer>>,
        sink: &mut dyn Sink,
        progress: &mut Progress,
    ) -> Result<()> {
        let w = self.model().width();
        let mut k = 0;
        for step in c.round.steps {
            match step {
                Step::Skip(meta) => {
                    for m in self.metas(&meta) {
                        sink.skip(&m)?;
                    }
                    progress.inc(meta.end - meta.start);
                    wr.skipped += 1;
                }
                Step::Tile {
                    item,
                    meta,
                    tile,
                    tokens,
                    last,
                    ..
                } => {
                    let (g, offset) = c.hidden.at[k];
                    k += 1;
                    if let Some(meta) = meta {
                        let it = Outputs::begin(sink, self.metas(&meta), self.pool)?;
                        wr.items.insert(item, it);
                    }
                    let it = wr
                        .items
                        .get_mut(&item)
                        .expect("begun with its first window");
                    let from = (tile.keep_start - tile.start) as usize;
                    // With special tokens (one window per record) the [SEP]
                    // row is kept too.
                    let to = if self.special_tokens {
                        tokens.len()
                    } else {
                        (tile.keep_end - tile.start) as usize
                    };
                    let layers = self.layers.as_ref().map_or(1, Vec::len);
                    for j in 0..layers {
                        let at = j * c.hidden.slab[g] + offset;
                        let hidden = &c.hidden.groups[g][at..at + tokens.len() * w];
                        let kept = &hidden[from * w..to * w];
                        if self.rc_average {
                            let avg = heads::rc_average(&self.model().config, kept)?;
                            it.push(sink, j, &avg, last)?;
                        } else {
                            it.push(sink, j, kept, last)?;
                        }
                    }
                    progress.inc(tile.keep_end - tile.keep_start);
                    if last {
                        let it = wr.items.remove(&item).expect("begun with its first window");
                        it.end(sink)?;
                        wr.done += 1;
                    }
                }
            }
        }
        spare
            .lock()
            .expect("no thread panics holding the lock")
            .extend(c.hidden.groups);
        Ok(())
    }
}
