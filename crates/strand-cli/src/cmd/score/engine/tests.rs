//! Tests of the score engine: alternate windows, distances, and windows
//! spread over several engines.

use super::*;

#[test]
fn alternate_windows_keep_start_and_length() {
    let w = b"AAAACCCCGG";
    assert_eq!(
        alternate_window(w, b"TT", &job(4, "C", "G", Kind::Snv)),
        b"AAAAGCCCGG"
    );
    // Insertion: the end drops out.
    assert_eq!(
        alternate_window(w, b"TT", &job(4, "C", "CTT", Kind::Indel)),
        b"AAAACTTCCC"
    );
    // Deletion: following reference bases come in.
    assert_eq!(
        alternate_window(w, b"TT", &job(4, "CCC", "C", Kind::Indel)),
        b"AAAACCGGTT"
    );
    // ... as many as there are.
    assert_eq!(
        alternate_window(w, b"T", &job(4, "CCC", "C", Kind::Indel)),
        b"AAAACCGGT"
    );
}

#[test]
fn distances() {
    assert!((cosine_distance(&[1.0, 0.0], &[0.0, 2.0]) - 1.0).abs() < 1e-7);
    assert!(cosine_distance(&[1.0, 1.0], &[2.0, 2.0]).abs() < 1e-7);
    assert_eq!(l2(&[0.0, 3.0], &[4.0, 0.0]), 5.0);
    assert_eq!(complement(id::A as usize), id::T as usize);
    assert_eq!(complement(id::N as usize), id::N as usize);
}

use crate::cmd::score::variant::{Kind, Score};

/// Several engines (here two CPU models standing in for two GPUs),
/// with batched reference passes, give each window the scores one
/// engine gives one pass at a time, in window order.
#[test]
fn windows_spread_over_engines_come_back_in_order() {
    let models = crate::test_models::cpu_models("ps-tiny", 2);
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
