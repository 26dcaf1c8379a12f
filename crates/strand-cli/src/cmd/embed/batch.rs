//! Running items through the model: windows cut, batched, stitched,
//! pooled and written in input order.
//!
//! Work goes in rounds. A round takes windows, in input order, until it
//! holds the batch's token budget (or sequence cap); windows of equal
//! length then run as one batched pass each, and the round's results are
//! stitched, pooled and written in order before the next round starts.
//! Memory is therefore bounded by the round, whatever the records' sizes.

use std::collections::{BTreeMap, VecDeque};

use anyhow::{bail, Context, Result};
use strand_core::{tokenizer, Model};
use strand_io::windows::{Tile, Tiling};

use super::output::{Meta, Sink};
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
    pub model: &'a Model,
    pub tiling: Tiling,
    pub budget: Budget,
    pub pool: Pool,
    pub rc_average: bool,
    pub special_tokens: bool,
    /// Items to embed, by input position (from `--shard`); `None`: all.
    pub selected: Option<Vec<bool>>,
}

/// An item being embedded: its output and where its windows stand.
struct Active {
    item: Item,
    meta: Meta,
    pooler: Pooler,
    tiles: u64,
    /// Next window to fetch.
    next: u64,
}

/// A window fetched and tokenised, waiting for its pass.
struct Pending {
    /// Index into the active items (front = oldest).
    item: usize,
    tile: Tile,
    tokens: Vec<u32>,
    last: bool,
}

impl Job<'_> {
    pub fn cols(&self) -> usize {
        if self.rc_average {
            self.model.config.d_model
        } else {
            self.model.width()
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
        let mut active: VecDeque<Active> = VecDeque::new();
        // Items before the front of `active` that are finished.
        let mut retired = 0usize;
        let mut position = 0usize;
        let (mut done, mut skipped) = (0u64, 0u64);
        let mut exhausted = false;
        loop {
            // Fill a round.
            let mut round: Vec<Pending> = Vec::new();
            let mut tokens = 0usize;
            while tokens < self.budget.tokens && !exhausted {
                let needs_item = active.back().is_none_or(|a| a.next == a.tiles);
                if needs_item {
                    match self.next_item(input, &mut position, sink, progress)? {
                        Some(Ok(a)) => active.push_back(a),
                        Some(Err(())) => {
                            skipped += 1;
                            continue;
                        }
                        None => {
                            exhausted = true;
                            break;
                        }
                    }
                }
                let idx = active.len() - 1;
                let a = active.back_mut().expect("just pushed");
                let tile = self.tiling.tile(a.item.len, a.next);
                a.next += 1;
                let bases = input.bases(&a.item, tile.start, tile.end)?;
                let toks = if self.special_tokens {
                    tokenizer::encode_with_specials(&bases)
                } else {
                    tokenizer::encode_bases(&bases)
                };
                tokens += toks.len();
                round.push(Pending {
                    item: retired + idx,
                    tile,
                    tokens: toks,
                    last: a.next == a.tiles,
                });
            }
            if round.is_empty() {
                break;
            }
            let (groups, at) = self.passes(&round, &active, retired)?;
            for (p, &(g, offset)) in round.iter().zip(&at) {
                let hidden = &groups[g][offset..offset + p.tokens.len() * self.model.width()];
                let a = &mut active[p.item - retired];
                if p.tile.start == 0 {
                    sink.begin(&a.meta)?;
                }
                let w = self.model.width();
                let from = (p.tile.keep_start - p.tile.start) as usize;
                // With special tokens (one window per record) the [SEP]
                // row is kept too.
                let to = if self.special_tokens {
                    p.tokens.len()
                } else {
                    (p.tile.keep_end - p.tile.start) as usize
                };
                let kept = &hidden[from * w..to * w];
                if self.rc_average {
                    a.pooler.push(&self.model.rc_average(kept)?);
                } else {
                    a.pooler.push(kept);
                }
                let rows = if p.last {
                    a.pooler.finish()
                } else {
                    a.pooler.take()
                };
                sink.write(&rows)?;
                progress.inc(p.tile.keep_end - p.tile.keep_start);
                if p.last {
                    sink.end()?;
                    done += 1;
                }
            }
            // Every fetched window has now been written: items with no
            // window left to fetch are complete.
            while active.front().is_some_and(|a| a.next == a.tiles) {
                active.pop_front();
                retired += 1;
            }
        }
        Ok((done, skipped))
    }

    /// Reads the next item this run embeds. `Err(())` for one skipped as
    /// already done (`--resume`).
    #[allow(clippy::type_complexity)]
    fn next_item(
        &self,
        input: &mut Input,
        position: &mut usize,
        sink: &mut dyn Sink,
        progress: &mut Progress,
    ) -> Result<Option<Result<Active, ()>>> {
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
            let tiles = self.tiling.count(item.len);
            if self.special_tokens && tiles > 1 {
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
                contig: item.contig.clone(),
                start: item.start,
                end: item.start + item.len,
                tokens: item.len + u64::from(self.special_tokens),
                pool: self.pool,
                cols: self.cols(),
            };
            if sink.is_done(&meta) {
                sink.skip(&meta)?;
                progress.inc(item.len);
                return Ok(Some(Err(())));
            }
            return Ok(Some(Ok(Active {
                pooler: Pooler::new(self.pool, meta.cols),
                item,
                meta,
                tiles,
                next: 0,
            })));
        }
    }

    /// Runs the round's windows, equal lengths batched together. Returns
    /// the passes' outputs and, for each window in round order, which
    /// output holds its hidden states and where they start.
    #[allow(clippy::type_complexity)]
    fn passes(
        &self,
        round: &[Pending],
        active: &VecDeque<Active>,
        retired: usize,
    ) -> Result<(Vec<Vec<f32>>, Vec<(usize, usize)>)> {
        let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, p) in round.iter().enumerate() {
            by_len.entry(p.tokens.len()).or_default().push(i);
        }
        let w = self.model.width();
        let mut groups = Vec::new();
        let mut at = vec![(0, 0); round.len()];
        for idx in by_len.values() {
            for group in idx.chunks(self.budget.seqs.max(1)) {
                let seqs: Vec<&[u32]> = group.iter().map(|&i| round[i].tokens.as_slice()).collect();
                let hidden = self.model.forward_batch_flat(&seqs).with_context(|| {
                    let first = &round[group[0]];
                    let what = &active[first.item - retired].item.what;
                    if group.len() == 1 {
                        format!("{what}: bases {}-{}", first.tile.start + 1, first.tile.end)
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
        Ok((groups, at))
    }
}
