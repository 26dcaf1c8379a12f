//! Spreading reference windows over devices.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;

use super::engine::{Engine, Job, Values};

/// A reference window and the alleles to score in it.
pub struct WindowWork {
    /// Names the window in errors, e.g. `window chr1:1-131072`.
    pub label: String,
    pub bases: Vec<u8>,
    /// Reference bases after the window (see [`Engine::windows`]).
    pub after: Vec<u8>,
    pub jobs: Vec<Job>,
}

/// The scores of a unit's windows.
type UnitResult = Result<Vec<Vec<Values>>>;

/// Scores `work` with one engine per device: the windows are cut into
/// units (runs of equal-length windows whose reference passes fit one
/// batch), and each device takes the next unit as soon as it is free. The
/// units depend only on the windows and `batch_tokens`, never on the
/// number of devices, and a unit runs on any GPU exactly as on another, so
/// the result is the same with one GPU or eight. Fails with the first
/// failing unit, in window order.
pub fn score_windows(engines: &[Engine], work: &[WindowWork]) -> Result<Vec<Vec<Values>>> {
    if engines.len() == 1 {
        return engines[0].windows(work);
    }
    let units = engines[0].units(work);
    let one = |e: &Engine, u: &std::ops::Range<usize>| e.windows(&work[u.clone()]);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<UnitResult>>> =
        Mutex::new((0..units.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for e in engines {
            s.spawn(|| loop {
                // Units are taken in order, so every unit before a failed
                // one is finished: the first error is well defined.
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= units.len() || failed.load(Ordering::SeqCst) {
                    return;
                }
                let r = one(e, &units[i]);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results.lock().expect("no thread panics holding the lock")[i] = Some(r);
            });
        }
    });
    let results = results
        .into_inner()
        .expect("no thread panics holding the lock");
    let mut out = Vec::with_capacity(work.len());
    for r in results {
        match r {
            Some(r) => out.extend(r?),
            None => unreachable!("only a unit after a failed one is skipped"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::score::engine::job;
    use crate::cmd::score::variant::{Kind, Score};
    use strand_core::Model;

    /// Several engines (here two CPU models standing in for two GPUs),
    /// with batched reference passes, give each window the scores one
    /// engine gives one pass at a time, in window order.
    #[test]
    fn windows_spread_over_engines_come_back_in_order() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-data/models/ps-tiny"
        );
        let place = strand_core::Placement {
            device: strand_core::DeviceSpec::Cpu,
            precision: None,
        };
        let models = [
            Model::load(dir, place).unwrap(),
            Model::load(dir, place).unwrap(),
        ];
        // Two windows per batched reference pass on the two engines; one
        // window per pass on the single one.
        let engine =
            |model, batch| Engine::new(model, vec![Score::Llr, Score::EmbedDist], false, batch);
        let engines = [engine(&models[0], 128), engine(&models[1], 128)];
        let single = [engine(&models[0], 64)];
        let bases: Vec<u8> = (0..7 * 64)
            .map(|i| b"ACGGTCAT"[(i * i + 3 * i) % 8])
            .collect();
        let work: Vec<WindowWork> = (0..7)
            .map(|k| {
                let w = &bases[k * 64..(k + 1) * 64];
                let at = 5 + 7 * k;
                let alt = if w[at] == b'A' { "C" } else { "A" };
                WindowWork {
                    label: format!("window {k}"),
                    bases: w.to_vec(),
                    after: b"ACGT".to_vec(),
                    jobs: vec![job(at, &(w[at] as char).to_string(), alt, Kind::Snv)],
                }
            })
            .collect();
        assert_eq!(engines[0].units(&work).len(), 4);
        let one = score_windows(&single, &work).unwrap();
        let two = score_windows(&engines, &work).unwrap();
        assert_eq!(one.len(), 7);
        for (k, (a, b)) in one.iter().zip(&two).enumerate() {
            let (a, b) = (a[0], b[0]);
            let close = |x: Option<f32>, y: Option<f32>| {
                let (x, y) = (x.unwrap(), y.unwrap());
                (x - y).abs() <= 1e-5 * x.abs().max(1.0)
            };
            assert!(close(a.llr, b.llr), "window {k}: {a:?} vs {b:?}");
            assert!(
                close(a.embed_dist, b.embed_dist),
                "window {k}: {a:?} vs {b:?}"
            );
        }
        // Different windows really do differ (the order is checked).
        assert_ne!(one[0][0].llr, one[1][0].llr);
    }
}
