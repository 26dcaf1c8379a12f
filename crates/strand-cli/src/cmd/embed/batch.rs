//! Running items through the model: windows cut, batched, stitched,
//! pooled and written in input order.
//!
//! Work goes in rounds, through three stages on their own threads:
//!
//! 1. the reader (the calling thread) takes windows in input order until a
//!    round holds the token budget (or sequence cap), fetching and
//!    tokenising their bases;
//! 2. one worker per device runs a round's windows, those of equal length
//!    as one batched pass, and hands the hidden states on; with several
//!    GPUs, rounds go to whichever GPU is free;
//! 3. the writer stitches, pools and writes rounds strictly in order.
//!
//! A round's composition does not depend on the number of devices, and a
//! round runs on one device exactly as it would alone, so the output is
//! the same with one GPU or eight. The stages overlap (the GPU computes
//! the next round while the host pools and writes this one), and memory is
//! bounded by the few rounds in flight, whatever the records' sizes.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use strand_core::{tokenizer, HostBuffer, Model};
use strand_io::windows::{Tile, Tiling};

use super::output::{Done, Meta, Sink};
use super::pool::{Pool, Pooler};
use crate::input::{Input, Item};
use crate::progress::Progress;

/// How much one round may hold.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Tokens per round (at least one whole window is always taken).
    pub tokens: usize,
    /// Sequences per batched pass.
    pub seqs: usize,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "up to {} tokens", self.tokens)?;
        if self.seqs != usize::MAX {
            write!(f, " and {} sequences", self.seqs)?;
        }
        write!(f, " per round")
    }
}

/// Everything about the run but the input and output.
pub struct Job<'a> {
    /// One model per device (several for `--device cuda:all`).
    pub models: &'a [Model],
    pub tiling: Tiling,
    pub budget: Budget,
    pub pool: Pool,
    pub rc_average: bool,
    pub special_tokens: bool,
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
    seq: u64,
    steps: Vec<Step>,
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
        let devices = self.models.len();
        let (to_workers, from_reader) = sync_channel::<Round>(devices);
        let from_reader = Arc::new(Mutex::new(from_reader));
        // Rendezvous: a worker holds its result until the writer takes it,
        // which bounds the hidden states in memory.
        let (to_writer, from_workers) = sync_channel::<Result<Computed>>(0);
        // Written rounds' buffers go back to the workers: reused, they cost
        // no allocation and no page faults, and stay page-locked for the
        // GPUs' copies (`HostBuffer`).
        let (recycle, spare) = channel::<HostBuffer>();
        let spare = Mutex::new(spare);
        std::thread::scope(|s| {
            let writer = s.spawn(|| self.write(from_workers, recycle, sink, progress));
            let spare = &spare;
            let workers: Vec<_> = self
                .models
                .iter()
                .map(|model| {
                    let rx = Arc::clone(&from_reader);
                    let tx = to_writer.clone();
                    s.spawn(move || self.work(model, &rx, spare, &tx))
                })
                .collect();
            // Only the workers hold these now: when they stop, the reader's
            // and the writer's channels close.
            drop(to_writer);
            drop(from_reader);
            let t0 = Instant::now();
            let read = self.read(input, to_workers);
            let mut busy = Vec::new();
            for w in workers {
                busy.push(w.join().map_err(|_| anyhow!("a worker thread panicked"))?);
            }
            let written = writer
                .join()
                .map_err(|_| anyhow!("the writer thread panicked"))?;
            // The writer's error explains a reader stopped by it.
            let (done, skipped, writing) = written?;
            let reading = read?;
            if self.report_stages {
                let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
                let devices: Vec<String> = busy
                    .iter()
                    .zip(self.models)
                    .enumerate()
                    .map(|(i, ((rounds, d, pinned), model))| {
                        let plural = if *rounds == 1 { "" } else { "s" };
                        // Only a GPU's results are page-locked.
                        let locked = if model.on_gpu() {
                            format!(", {pinned} into page-locked memory")
                        } else {
                            String::new()
                        };
                        format!("device {i} {} ({rounds} round{plural}{locked})", secs(*d))
                    })
                    .collect();
                eprintln!(
                    "strand-embed: busy time of each stage in {}: reading {}, {}, writing {}",
                    secs(t0.elapsed()),
                    secs(reading),
                    devices.join(", "),
                    secs(writing)
                );
            }
            Ok((done, skipped))
        })
    }

    /// Stage 1: forms rounds in input order. Stops quietly when the
    /// writer has gone (its error is the one to report). Returns the time
    /// spent other than waiting for a worker.
    fn read(&self, input: &mut Input, tx: SyncSender<Round>) -> Result<Duration> {
        let mut busy = Duration::ZERO;
        let mut current: Option<Current> = None;
        let mut position = 0usize;
        let mut number = 0u64;
        let mut seq = 0u64;
        let mut exhausted = false;
        while !exhausted {
            let t = Instant::now();
            let mut steps = Vec::new();
            let mut tokens = 0usize;
            while tokens < self.budget.tokens {
                if current.as_ref().is_none_or(|c| c.next == c.tiles) {
                    match self.next_item(input, &mut position)? {
                        None => {
                            exhausted = true;
                            break;
                        }
                        Some((item, meta)) => {
                            if self.done.contains(&meta) {
                                steps.push(Step::Skip(meta));
                                continue;
                            }
                            let tiles = self.tiling.count(item.len);
                            let what: Arc<str> = item.what.as_str().into();
                            current = Some(Current {
                                item,
                                number,
                                tiles,
                                next: 0,
                                what,
                            });
                            number += 1;
                            let c = current.as_mut().expect("just set");
                            self.push_tile(input, c, Some(meta), &mut steps, &mut tokens)?;
                            continue;
                        }
                    }
                }
                let c = current.as_mut().expect("an item with windows left");
                self.push_tile(input, c, None, &mut steps, &mut tokens)?;
            }
            busy += t.elapsed();
            if steps.is_empty() {
                break;
            }
            if tx.send(Round { seq, steps }).is_err() {
                return Ok(busy);
            }
            seq += 1;
        }
        Ok(busy)
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
            };
            return Ok(Some((item, meta)));
        }
    }

    /// Stage 2: runs rounds on one device until the reader is done or the
    /// writer has gone. Returns the rounds run, the time they took and
    /// how many had their results copied into page-locked memory.
    fn work(
        &self,
        model: &Model,
        rx: &Mutex<Receiver<Round>>,
        spare: &Mutex<Receiver<HostBuffer>>,
        tx: &SyncSender<Result<Computed>>,
    ) -> (u64, Duration, u64) {
        let (mut rounds, mut busy, mut pinned) = (0, Duration::ZERO, 0);
        loop {
            let round = {
                let rx = rx.lock().expect("no thread panics holding the lock");
                rx.recv()
            };
            let Ok(round) = round else {
                return (rounds, busy, pinned);
            };
            let t = Instant::now();
            let result = self
                .passes(model, &round, spare)
                .map(|hidden| Computed { round, hidden });
            busy += t.elapsed();
            rounds += 1;
            if let Ok(c) = &result {
                pinned += u64::from(c.hidden.groups.iter().all(|g| g.is_pinned()));
            }
            let failed = result.is_err();
            if tx.send(result).is_err() || failed {
                return (rounds, busy, pinned);
            }
        }
    }

    /// Runs a round's windows, equal lengths batched together.
    fn passes(
        &self,
        model: &Model,
        round: &Round,
        spare: &Mutex<Receiver<HostBuffer>>,
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
        let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, t) in tiles.iter().enumerate() {
            by_len.entry(t.0.len()).or_default().push(i);
        }
        let w = model.width();
        let mut groups = Vec::new();
        let mut at = vec![(0, 0); tiles.len()];
        for idx in by_len.values() {
            for group in idx.chunks(self.budget.seqs.max(1)) {
                let seqs: Vec<&[u32]> = group.iter().map(|&i| tiles[i].0).collect();
                let mut hidden = spare
                    .lock()
                    .expect("no thread panics holding the lock")
                    .try_recv()
                    .unwrap_or_default();
                model
                    .forward_batch_into(&seqs, &mut hidden)
                    .with_context(|| {
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
            }
        }
        Ok(Hidden { groups, at })
    }

    /// Stage 3: stitches, pools and writes rounds in order. Returns the
    /// items written and skipped, and the time spent other than waiting.
    fn write(
        &self,
        rx: Receiver<Result<Computed>>,
        recycle: Sender<HostBuffer>,
        sink: &mut dyn Sink,
        progress: &mut Progress,
    ) -> Result<(u64, u64, Duration)> {
        let (mut done, mut skipped) = (0u64, 0u64);
        let mut busy = Duration::ZERO;
        let mut waiting: BTreeMap<u64, Computed> = BTreeMap::new();
        let mut poolers: HashMap<u64, Pooler> = HashMap::new();
        let mut next = 0u64;
        let w = self.model().width();
        for computed in rx {
            let computed = computed?;
            let t = Instant::now();
            waiting.insert(computed.round.seq, computed);
            while let Some(c) = waiting.remove(&next) {
                next += 1;
                let mut k = 0;
                for step in c.round.steps {
                    match step {
                        Step::Skip(meta) => {
                            sink.skip(&meta)?;
                            progress.inc(meta.end - meta.start);
                            skipped += 1;
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
                            let hidden = &c.hidden.groups[g][offset..offset + tokens.len() * w];
                            if let Some(meta) = meta {
                                sink.begin(&meta)?;
                                poolers.insert(item, Pooler::new(self.pool, meta.cols));
                            }
                            let pooler =
                                poolers.get_mut(&item).expect("begun with its first window");
                            let from = (tile.keep_start - tile.start) as usize;
                            // With special tokens (one window per record)
                            // the [SEP] row is kept too.
                            let to = if self.special_tokens {
                                tokens.len()
                            } else {
                                (tile.keep_end - tile.start) as usize
                            };
                            let kept = &hidden[from * w..to * w];
                            if self.rc_average {
                                pooler.push(&self.model().rc_average(kept)?);
                            } else {
                                pooler.push(kept);
                            }
                            let rows = if last { pooler.finish() } else { pooler.take() };
                            sink.write(&rows)?;
                            progress.inc(tile.keep_end - tile.keep_start);
                            if last {
                                poolers.remove(&item);
                                sink.end()?;
                                done += 1;
                            }
                        }
                    }
                }
                for buffer in c.hidden.groups {
                    // The workers may all have stopped; then it is freed.
                    let _ = recycle.send(buffer);
                }
            }
            busy += t.elapsed();
        }
        Ok((done, skipped, busy))
    }
}
