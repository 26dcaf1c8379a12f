//! Running many sequences on one or several models (one per device).
//!
//! Two pieces every command needs, written once:
//!
//! - [`Batcher`] and [`runs`] group consecutive items of equal length into
//!   batches of at most a token budget (a batched pass wants equal
//!   lengths; at least one item per batch, however long), and
//!   [`by_length`] groups equal lengths wherever they are in a set;
//! - [`check_pass`], [`max_pass`] and [`batch_limit`] ask every device,
//!   before any work, whether a pass fits its free memory, and
//!   [`default_round_tokens`] what budget suits it;
//! - [`map_ordered`] streams units of work (a batch, a run of windows)
//!   through the models: each model's thread takes the next unit as soon
//!   as it is free, and the results come back strictly in input order.
//!
//! The units are formed from the input alone, never from the number of
//! devices, and a unit runs on any device exactly as on another; so the
//! output is the same with one GPU or eight.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Mutex;

use crate::{Model, Result};

/// Groups consecutive items of equal length: a batch ends when the length
/// changes or when one more item would pass `max_tokens` tokens.
pub struct Batcher<T> {
    max_tokens: usize,
    len: usize,
    pending: Vec<T>,
}

impl<T> Batcher<T> {
    pub fn new(max_tokens: usize) -> Batcher<T> {
        Batcher {
            max_tokens: max_tokens.max(1),
            len: 0,
            pending: Vec::new(),
        }
    }

    /// Adds an item of `len` tokens; returns the batch it completes, if
    /// any (the items before it).
    pub fn push(&mut self, item: T, len: usize) -> Option<Vec<T>> {
        let full = !self.pending.is_empty()
            && (len != self.len || (self.pending.len() + 1) * len > self.max_tokens);
        let done = full.then(|| std::mem::take(&mut self.pending));
        self.len = len;
        self.pending.push(item);
        done
    }

    /// The last, incomplete batch (once; then `None`).
    pub fn finish(&mut self) -> Option<Vec<T>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// The batches [`Batcher`] forms from items of lengths `lens`, as index
/// ranges.
pub fn runs(lens: &[usize], max_tokens: usize) -> Vec<Range<usize>> {
    let mut b = Batcher::new(max_tokens);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut push = |batch: Vec<usize>| out.push(batch[0]..batch[batch.len() - 1] + 1);
    for (i, &len) in lens.iter().enumerate() {
        if let Some(batch) = b.push(i, len) {
            push(batch);
        }
    }
    if let Some(batch) = b.finish() {
        push(batch);
    }
    out
}

/// Batches of items of equal length, wherever they are in `lens`: the
/// indices of each length in order, cut into batches of at most
/// `max_tokens` tokens and `max_items` items (at least one item); shorter
/// lengths first. For work
/// held in memory whose order does not matter to the passes (a round of
/// windows, the masked copies of one window).
pub fn by_length(lens: &[usize], max_tokens: usize, max_items: usize) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &len) in lens.iter().enumerate() {
        groups.entry(len).or_default().push(i);
    }
    let mut out = Vec::new();
    for (len, idx) in groups {
        let per = (max_tokens / len.max(1)).min(max_items).max(1);
        out.extend(idx.chunks(per).map(<[usize]>::to_vec));
    }
    out
}

/// A GPU that cannot hold a pass: its description and the most tokens one
/// pass may have on it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    pub device: String,
    pub fits: usize,
}

/// Checks, before any work, that every GPU among `models` has the free
/// memory for a pass of `tokens` tokens (the CPU's passes are not
/// limited here); `Ok(Err(misfit))` names the first that has not.
pub fn check_pass(models: &[Model], tokens: usize) -> Result<Result<(), Misfit>> {
    for m in models {
        let Some(fits) = m.pass_limit()? else {
            continue;
        };
        if tokens > fits {
            return Ok(Err(Misfit {
                device: m.describe_device(),
                fits,
            }));
        }
    }
    Ok(Ok(()))
}

/// The most tokens a batched pass may hold on every model's device now:
/// each GPU's free memory bounds it ([`Model::pass_limit`]); passes on the
/// CPU are not bounded here (`usize::MAX`).
pub fn batch_limit(models: &[Model]) -> Result<usize> {
    let mut limit = usize::MAX;
    for m in models {
        if let Some(fits) = m.pass_limit()? {
            limit = limit.min(fits);
        }
    }
    Ok(limit)
}

/// Tokens per round of batched passes where a batch runs as one pass (a
/// GPU): large passes amortise the launches and the copy back.
pub const BATCHED_ROUND_TOKENS: usize = 1 << 20;

/// Tokens per round where sequences run one at a time (the CPU): a larger
/// round would only hold more memory and keep the writer waiting longer.
pub const SERIAL_ROUND_TOKENS: usize = 1 << 16;

/// The token budget of a round of passes when the user gives none:
/// [`BATCHED_ROUND_TOKENS`] when the models batch ([`Model::batches`]),
/// else [`SERIAL_ROUND_TOKENS`].
pub fn default_round_tokens(models: &[Model]) -> usize {
    if models.iter().all(Model::batches) {
        BATCHED_ROUND_TOKENS
    } else {
        SERIAL_ROUND_TOKENS
    }
}

/// The longest pass every model's device can hold now (tokens, a
/// multiple of 1,024).
pub fn max_pass(models: &[Model]) -> Result<usize> {
    let mut w = usize::MAX;
    for m in models {
        w = w.min(m.max_window()?);
    }
    Ok(w)
}

/// The most units [`map_ordered`] holds at once over `devices` devices
/// (queued, running, or back and waiting for their turn or being written):
/// what bounds the memory a caller's results take.
pub fn max_in_flight(devices: usize) -> usize {
    2 * devices
}

/// Streams `units` through `devices` (models, or whatever holds one model
/// per device): `work(device, unit)` runs on that device's thread, and
/// `sink` receives each result in the order the units came. `units` and
/// `sink` run on the calling thread (neither needs to be `Send`),
/// interleaved with the devices' work; at most two units per device are in
/// flight, so memory stays bounded whatever the input's size.
///
/// Fails with the first error in input order, whether it comes from
/// reading a unit, from its work, or from the sink; no unit after it is
/// started. With one model everything runs in order on that model.
pub fn map_ordered<D, U, R, E>(
    devices: &[D],
    units: impl IntoIterator<Item = std::result::Result<U, E>>,
    work: impl Fn(&D, U) -> std::result::Result<R, E> + Sync,
    mut sink: impl FnMut(R) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    D: Sync,
    U: Send,
    R: Send,
    E: Send,
{
    assert!(!devices.is_empty(), "at least one device");
    let cap = max_in_flight(devices.len());
    let (to_work, from_source) = sync_channel::<(usize, U)>(cap);
    let from_source = Mutex::new(from_source);
    // A worker's panic travels as a result too: the calling thread, which
    // may be waiting for that unit, re-raises it (instead of waiting for
    // ever on the other workers).
    let (to_sink, results) = channel::<(usize, std::thread::Result<std::result::Result<R, E>>)>();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (work, from_source, stop) = (&work, &from_source, &stop);
        for device in devices {
            let to_sink = to_sink.clone();
            s.spawn(move || loop {
                // The lock is held only to take a unit, not while it runs.
                let next = from_source.lock().map(|rx| rx.recv());
                let Ok(Ok((i, unit))) = next else { return };
                if stop.load(Ordering::SeqCst) {
                    continue; // drain: units after an error are not run
                }
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(device, unit)));
                if to_sink.send((i, r)).is_err() {
                    return;
                }
            });
        }
        drop(to_sink);
        let mut to_work = Some(to_work);
        let mut source = units.into_iter();
        // Results that came back before their turn, by index.
        let mut early: BTreeMap<usize, std::result::Result<R, E>> = BTreeMap::new();
        let (mut sent, mut next) = (0usize, 0usize);
        let mut failure: Option<E> = None;
        let mut source_error: Option<E> = None;
        loop {
            // Feed the devices while there is room.
            while failure.is_none() && sent - next < cap {
                let Some(tx) = &to_work else { break };
                match source.next() {
                    Some(Ok(unit)) => {
                        tx.send((sent, unit))
                            .expect("workers run until the channel closes");
                        sent += 1;
                    }
                    Some(Err(e)) => {
                        // Units already sent come before it: finish them.
                        source_error = Some(e);
                        to_work = None;
                    }
                    None => to_work = None,
                }
            }
            if next == sent {
                break;
            }
            // Hand on every result whose turn it is, up to the first error.
            while failure.is_none() {
                let Some(r) = early.remove(&next) else { break };
                next += 1;
                if let Err(e) = r.and_then(&mut sink) {
                    failure = Some(e);
                    stop.store(true, Ordering::SeqCst);
                    to_work = None;
                }
            }
            // After a failure nothing more reaches the sink; units still
            // running finish (the scope joins their threads), the rest are
            // skipped.
            if failure.is_some() {
                break;
            }
            if next == sent {
                continue;
            }
            let (i, r) = results.recv().expect("a unit in flight has a worker");
            match r {
                Ok(r) => {
                    early.insert(i, r);
                }
                Err(panic) => {
                    stop.store(true, Ordering::SeqCst);
                    drop(to_work.take());
                    std::panic::resume_unwind(panic);
                }
            }
        }
        drop(to_work);
        match (failure, source_error) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceSpec, Placement};

    fn models(n: usize) -> Vec<Model> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/models/ps-tiny"
        );
        let place = Placement {
            device: DeviceSpec::Cpu,
            precision: None,
        };
        (0..n).map(|_| Model::load(dir, place).unwrap()).collect()
    }

    #[test]
    fn batches_end_at_a_length_change_or_the_budget() {
        assert_eq!(
            runs(&[4, 4, 4, 2, 2, 9, 4], 8),
            vec![0..2, 2..3, 3..5, 5..6, 6..7]
        );
        assert_eq!(runs(&[], 8), Vec::<Range<usize>>::new());
        // An item above the budget is a batch of its own.
        assert_eq!(runs(&[20, 20], 8), vec![0..1, 1..2]);
    }

    #[test]
    fn equal_lengths_batch_wherever_they_are() {
        assert_eq!(
            by_length(&[4, 2, 4, 4, 2, 9], 8, usize::MAX),
            vec![vec![1, 4], vec![0, 2], vec![3], vec![5]]
        );
        assert_eq!(
            by_length(&[4, 2, 4, 4, 2], usize::MAX, 2),
            vec![vec![1, 4], vec![0, 2], vec![3]]
        );
        assert!(by_length(&[], 8, 8).is_empty());
    }

    /// The CPU's passes are not bounded by device memory, and its rounds
    /// are the serial budget.
    #[test]
    fn the_cpu_bounds_no_pass() {
        let two = models(2);
        assert_eq!(check_pass(&two, usize::MAX).unwrap(), Ok(()));
        assert_eq!(batch_limit(&two).unwrap(), usize::MAX);
        assert_eq!(default_round_tokens(&two), SERIAL_ROUND_TOKENS);
        assert!(!two[0].batches() && !two[0].locks_host_memory());
    }

    /// Two models (standing in for two GPUs) give every unit what one
    /// model gives, in input order, whatever order they finish in.
    #[test]
    fn results_come_back_in_input_order() {
        let (one, two) = (models(1), models(2));
        let seqs: Vec<Vec<u32>> = (0..9u32)
            .map(|k| (0..5 + 3 * (k % 4)).map(|i| 7 + (i * i + k) % 4).collect())
            .collect();
        let run = |models: &[Model]| {
            let mut out = Vec::new();
            map_ordered(
                models,
                seqs.iter().map(Ok::<_, crate::Error>),
                |m, ids| {
                    // Uneven work: later units may finish first.
                    std::thread::sleep(std::time::Duration::from_millis(ids.len() as u64 % 3));
                    m.forward(ids)
                },
                |h| {
                    out.push(h);
                    Ok(())
                },
            )
            .unwrap();
            out
        };
        let (a, b) = (run(&one), run(&two));
        assert_eq!(a.len(), 9);
        assert_eq!(a, b);
        for (h, ids) in a.iter().zip(&seqs) {
            assert_eq!(h.len(), ids.len() * one[0].width());
        }
    }

    /// A panicking unit is re-raised on the calling thread (not a hang).
    #[test]
    fn a_panic_in_a_unit_reaches_the_caller() {
        let two = models(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            map_ordered(
                &two,
                (0..50).map(Ok::<_, ()>),
                |_, i: usize| {
                    assert!(i != 7, "unit 7 fails");
                    Ok(i)
                },
                |_| Ok(()),
            )
        }));
        assert!(r.is_err());
    }

    /// The first error in input order is returned, from the work, the
    /// source or the sink, and nothing after it reaches the sink.
    #[test]
    fn the_first_error_in_input_order_wins() {
        let two = models(2);
        let mut seen = Vec::new();
        let r = map_ordered(
            &two,
            (0..20).map(Ok),
            |_, i: usize| {
                // Unit 5 fails last, after 6 and 7 are back.
                if i == 5 {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if i == 5 || i == 9 {
                    Err(i)
                } else {
                    Ok(i)
                }
            },
            |i| {
                seen.push(i);
                Ok(())
            },
        );
        assert_eq!(r, Err(5));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);

        let mut seen = Vec::new();
        let source = (0..20).map(|i| if i == 7 { Err(100) } else { Ok(i) });
        let r = map_ordered(
            &two,
            source,
            |_, i: usize| Ok(i),
            |i| {
                seen.push(i);
                Ok(())
            },
        );
        assert_eq!(r, Err(100));
        assert_eq!(seen, (0..7).collect::<Vec<_>>());

        let mut seen = Vec::new();
        let r = map_ordered(
            &two,
            (0..20).map(Ok),
            |_, i: usize| Ok(i),
            |i| {
                seen.push(i);
                if i == 3 {
                    Err(i)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(3));
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }
}
