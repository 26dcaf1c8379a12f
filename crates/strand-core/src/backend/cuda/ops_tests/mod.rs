//! Per-op GPU-vs-CPU checks (the shape of ggml's test-backend-ops): each
//! fused kernel on random inputs against a float64 loop written from the
//! spec, launched through the same `launch` functions as a forward pass,
//! at sizes that hit slice and tile edges (1, 31, 32, 33 steps; one step
//! either side of a 512- and a 1,024-step tile; several whole tiles),
//! sequence boundaries inside a batch, lengths with and without whole
//! 16-byte vectors, channel counts that are not a multiple of a block, one
//! and two directions, f32 and bf16. Outputs are poisoned with NaN first,
//! so an element the kernel does not write fails. Needs a GPU: prints
//! `SKIPPED` without one (`scripts/device-check.sh tests` runs them).

use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::device::Gpu;
use super::kernels::*;
use super::launch;

/// Relative L2 error allowed: f32 arithmetic (MUFU `ex2`/`lg2` at about
/// 2^-22) and, in bf16, the roundings of the stored outputs (2^-9) plus the
/// MUFU tanh SiLU (2^-11).
const F32_REL_L2: f64 = 2e-6;
const BF16_REL_L2: f64 = 6e-3;

struct Case {
    bf16: bool,
    n: usize,
    r: usize,
    k: usize,
}

fn open(c: &Case, test: &str) -> Option<Gpu> {
    match Gpu::open(0, &Defines::new(c.bf16, c.n, c.r, c.k)) {
        Ok(g) => Some(g),
        Err(e) => {
            println!("SKIPPED {test}: no usable GPU: {e}");
            None
        }
    }
}

/// Values as the GPU holds them (bf16-rounded where activations are bf16).
fn act_round(bf: bool, v: f32) -> f32 {
    if bf {
        bf16::from_f32(v).to_f32()
    } else {
        v
    }
}

fn upload_act(g: &Gpu, bf: bool, v: &[f32]) -> super::device::Buf {
    if bf {
        let bits: Vec<u16> = v.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
        g.upload(&bits).unwrap()
    } else {
        g.upload(v).unwrap()
    }
}

fn download_act(g: &Gpu, bf: bool, ptr: DevPtr, n: usize) -> Vec<f32> {
    if bf {
        let mut v = vec![0u16; n];
        g.download(ptr, &mut v).unwrap();
        v.into_iter().map(|b| bf16::from_bits(b).to_f32()).collect()
    } else {
        let mut v = vec![0f32; n];
        g.download(ptr, &mut v).unwrap();
        v
    }
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = g as f64 - w;
        num += if d.is_nan() { f64::INFINITY } else { d * d };
        den += w * w;
    }
    (num / den.max(1e-300)).sqrt()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// One direction's weights, f32 as uploaded.
struct Dir {
    conv_w: Vec<f32>,
    conv_b: Option<Vec<f32>>,
    dt_w: Vec<f32>,
    dt_b: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
    /// `x_proj` output `[rows, R+2N]` in walk order (row = seq·len + step),
    /// as held on the GPU (rounded to the activation type).
    xd: Vec<f32>,
    reverse: bool,
}

/// The spec's scan of one direction in f64: `y [rows, di]` (row-major,
/// rows = positions), not gated; `xz` is row-major `[rows, 2di]`.
#[allow(clippy::too_many_arguments)]
fn reference(c: &Case, di: usize, nseq: usize, len: usize, xz: &[f32], w: &Dir) -> Vec<f64> {
    let (n, r, k) = (c.n, c.r, c.k);
    let xdw = r + 2 * n;
    let mut y = vec![0.0f64; nseq * len * di];
    for s in 0..nseq {
        let pos = |step: usize| if w.reverse { len - 1 - step } else { step };
        for ch in 0..di {
            let mut h = vec![0.0f64; n];
            for step in 0..len {
                let row = s * len + pos(step);
                let mut acc = w.conv_b.as_ref().map_or(0.0, |b| b[ch] as f64);
                for j in 0..k {
                    let back = (k - 1 - j) as isize;
                    let src = step as isize - back;
                    if src >= 0 {
                        let xr = s * len + pos(src as usize);
                        acc += w.conv_w[ch * k + j] as f64 * xz[xr * 2 * di + ch] as f64;
                    }
                }
                let u = silu(acc);
                let walk = s * len + step;
                let xd = &w.xd[walk * xdw..(walk + 1) * xdw];
                let mut dt = w.dt_b[ch] as f64;
                for (q, &v) in xd[..r].iter().enumerate() {
                    dt += w.dt_w[ch * r + q] as f64 * v as f64;
                }
                let delta = softplus(dt);
                let mut out = w.d[ch] as f64 * u;
                for m in 0..n {
                    let a = w.a[ch * n + m] as f64;
                    h[m] = (delta * a).exp() * h[m] + delta * u * xd[r + m] as f64;
                    out += xd[r + n + m] as f64 * h[m];
                }
                y[row * di + ch] = out;
            }
        }
    }
    y
}

fn random_dir(rng: &mut StdRng, c: &Case, di: usize, rows: usize, reverse: bool) -> Dir {
    let bf = c.bf16;
    let mut v = |len: usize, scale: f32| -> Vec<f32> {
        (0..len)
            .map(|_| rng.random_range(-1.0f32..1.0) * scale)
            .collect()
    };
    let (n, r, k) = (c.n, c.r, c.k);
    let a: Vec<f32> = v(di * n, 1.0).iter().map(|x| -(x * 2.0).exp()).collect();
    Dir {
        conv_w: v(di * k, 0.8),
        conv_b: reverse.then(|| v(di, 0.3)),
        // The bf16 scan rounds dt_w to bf16 for its tensor-core dt_proj
        // (upstream's autocast does the same); bf16-exact weights keep the
        // check at the output roundings. The end-to-end GPU tests bound
        // the effect of that rounding on real checkpoints.
        dt_w: v(di * r, 0.5)
            .into_iter()
            .map(|x| act_round(bf, x))
            .collect(),
        dt_b: v(di, 1.0),
        a,
        d: v(di, 1.0),
        xd: v(rows * (r + 2 * n), 1.0)
            .into_iter()
            .map(|x| act_round(bf, x))
            .collect(),
        reverse,
    }
}

/// `silu(z)` of every row and channel.
fn gates(xz: &[f32], di: usize) -> Vec<f64> {
    xz.chunks(2 * di)
        .flat_map(|row| row[di..].iter().map(|&z| silu(z as f64)))
        .collect()
}

fn cases() -> [Case; 4] {
    [
        Case {
            bf16: false,
            n: 16,
            r: 16,
            k: 4,
        },
        Case {
            bf16: true,
            n: 16,
            r: 16,
            k: 4,
        },
        Case {
            bf16: false,
            n: 4,
            r: 3,
            k: 2,
        },
        Case {
            bf16: true,
            n: 8,
            r: 1,
            k: 4,
        },
    ]
}

/// (channels, sequences, steps): slice edges at 31/32/33, tile edges at
/// 511/513 and 1,023/1,025 (f32 and bf16 tiles on 228 KB GPUs), whole
/// tiles with aligned rows (2,048), several sequences in a batch, channel
/// counts that are not a multiple of a block.
const SIZES: [(usize, usize, usize); 11] = [
    (64, 1, 1),
    (64, 1, 33),
    (48, 3, 32),
    (64, 2, 77),
    (40, 2, 31),
    (160, 1, 300),
    (16, 1, 511),
    (12, 2, 513),
    (16, 1, 1023),
    (8, 3, 1025),
    (16, 2, 2048),
];

/// Row-major `[rows, cols]` as channel-major `[cols][ld]`.
fn channel_major(v: &[f32], cols: usize, ld: usize) -> Vec<f32> {
    let rows = v.len() / cols;
    let mut t = vec![0.0f32; cols * ld];
    for (r, row) in v.chunks(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            t[c * ld + r] = x;
        }
    }
    debug_assert!(rows <= ld);
    t
}

/// The first `rows` steps of channel-major `[cols][ld]` as row-major.
fn row_major(t: &[f32], cols: usize, ld: usize, rows: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| (0..cols).map(move |c| t[c * ld + r]))
        .collect()
}

fn random_xz(rng: &mut StdRng, c: &Case, rows: usize, di: usize) -> Vec<f32> {
    (0..rows * 2 * di)
        .map(|_| act_round(c.bf16, rng.random_range(-2.0f32..2.0)))
        .collect()
}

fn check(what: &str, c: &Case, got: &[f32], want: &[f64]) {
    let err = rel_l2(got, want);
    let tol = if c.bf16 { BF16_REL_L2 } else { F32_REL_L2 };
    assert!(
        err <= tol,
        "{what} (bf16={} N={} R={} K={}): rel L2 {err:.2e} > {tol:.0e}",
        c.bf16,
        c.n,
        c.r,
        c.k
    );
}

/// The scan as the fused mixer runs it (both directions in one launch, each
/// gated into its own output) and as the general path runs it (one
/// direction alone).
#[test]
fn ops_scan_matches_the_spec() {
    let mut rng = StdRng::seed_from_u64(14);
    let mut checked = 0;
    for c in &cases() {
        let Some(g) = open(c, "ops_scan_matches_the_spec") else {
            return;
        };
        let xdw = c.r + 2 * c.n;
        for (di, nseq, len) in SIZES {
            let rows = nseq * len;
            let ld = rows.next_multiple_of(8);
            // Two mixer halves' in_proj outputs (a PS layer's four jobs:
            // both directions of each half), one pair of directions.
            let xzs = [
                random_xz(&mut rng, c, rows, di),
                random_xz(&mut rng, c, rows, di),
            ];
            let dirs = [
                random_dir(&mut rng, c, di, rows, false),
                random_dir(&mut rng, c, di, rows, true),
            ];
            // want[half][direction]
            let want: Vec<Vec<Vec<f64>>> = xzs
                .iter()
                .map(|xz| {
                    let gate = gates(xz, di);
                    dirs.iter()
                        .map(|w| {
                            let y = reference(c, di, nseq, len, xz, w);
                            y.iter().zip(&gate).map(|(y, g)| y * g).collect()
                        })
                        .collect()
                })
                .collect();
            let dxz: Vec<_> = xzs
                .iter()
                .map(|xz| upload_act(&g, c.bf16, &channel_major(xz, 2 * di, ld)))
                .collect();
            let ab = if c.bf16 { 2 } else { 4 };
            let up: Vec<_> = dirs
                .iter()
                .map(|w| {
                    let at2: Vec<f32> = w.a.iter().map(|a| a * std::f32::consts::LOG2_E).collect();
                    (
                        g.upload(&w.conv_w).unwrap(),
                        w.conv_b.as_ref().map(|b| g.upload(b).unwrap()),
                        g.upload(&w.dt_w).unwrap(),
                        g.upload(&w.dt_b).unwrap(),
                        g.upload(&at2).unwrap(),
                        g.upload(&w.d).unwrap(),
                        upload_act(&g, c.bf16, &channel_major(&w.xd, xdw, ld)),
                    )
                })
                .collect();
            let job = |half: usize, i: usize, y: DevPtr| {
                let u = &up[i];
                SsmJob {
                    x: dxz[half].ptr,
                    z: dxz[half].at(di * ld * ab),
                    xd: u.6.ptr,
                    y,
                    conv_w: u.0.ptr,
                    conv_b: u.1.as_ref().map_or(0, |b| b.ptr),
                    dt_w: u.2.ptr,
                    dt_b: u.3.ptr,
                    at2: u.4.ptr,
                    dskip: u.5.ptr,
                    reverse: dirs[i].reverse as i32,
                    _pad: 0,
                }
            };
            let params = |job: [SsmJob; SSM_JOBS]| SsmParams {
                job,
                ld: ld as i64,
                di: di as i32,
                nseq: nseq as i32,
                seqlen: len as i32,
                _pad: 0,
            };
            let what = format!("scan di={di} nseq={nseq} len={len}");
            let got = |y: &super::device::Buf, slot: usize| {
                let t = download_act(&g, c.bf16, y.at(slot * di * ld * ab), di * ld);
                row_major(&t, di, ld, rows)
            };
            // Both scan variants where the wide one is compiled (bf16 on
            // GPUs with room for two of its blocks per SM).
            let variants: &[bool] = if g.f.ssm_scan_wide.is_some() {
                &[false, true]
            } else {
                &[false]
            };
            for &wide in variants {
                let what = format!("{what}{}", if wide { " (wide)" } else { "" });
                let none = SsmJob::default();
                let y = upload_act(&g, c.bf16, &vec![f32::NAN; 2 * di * ld]);
                let both = [job(0, 0, y.ptr), job(0, 1, y.at(di * ld * ab)), none, none];
                launch::scan_with(&g, &params(both), 2, wide).unwrap();
                for (slot, dir) in ["forward", "reverse"].iter().enumerate() {
                    check(
                        &format!("{what}, two directions, {dir}"),
                        c,
                        &got(&y, slot),
                        &want[0][slot],
                    );
                }
                let y = upload_act(&g, c.bf16, &vec![f32::NAN; di * ld]);
                let one = [job(0, 1, y.ptr), none, none, none];
                launch::scan_with(&g, &params(one), 1, wide).unwrap();
                check(
                    &format!("{what}, one direction"),
                    c,
                    &got(&y, 0),
                    &want[0][1],
                );
                let y = upload_act(&g, c.bf16, &vec![f32::NAN; 4 * di * ld]);
                let four: [SsmJob; SSM_JOBS] =
                    std::array::from_fn(|j| job(j / 2, j % 2, y.at(j * di * ld * ab)));
                launch::scan_with(&g, &params(four), 4, wide).unwrap();
                for j in 0..4 {
                    check(
                        &format!("{what}, four jobs, half {} direction {}", j / 2, j % 2),
                        c,
                        &got(&y, j),
                        &want[j / 2][j % 2],
                    );
                }
                checked += 7;
            }
        }
    }
    println!("ops_scan_matches_the_spec: {checked} outputs checked");
}

/// The conv + SiLU that feeds `x_proj`, in walk order, by segments of
/// rows that start and end inside sequences (as `U_SEGMENT` cuts a long
/// batch).
#[test]
fn ops_conv_matches_the_spec() {
    let mut rng = StdRng::seed_from_u64(15);
    let mut checked = 0;
    for c in &cases() {
        let Some(g) = open(c, "ops_conv_matches_the_spec") else {
            return;
        };
        for (di, nseq, len) in SIZES {
            let rows = nseq * len;
            let ld = rows.next_multiple_of(8);
            let xz = random_xz(&mut rng, c, rows, di);
            let dxz = upload_act(&g, c.bf16, &channel_major(&xz, 2 * di, ld));
            for reverse in [false, true] {
                let w = random_dir(&mut rng, c, di, rows, reverse);
                // Walk-ordered rows: step `st` of sequence `s`.
                let want: Vec<f64> = (0..rows)
                    .flat_map(|walk| {
                        let (s, st) = (walk / len, walk % len);
                        let (w, xz) = (&w, &xz);
                        (0..di).map(move |ch| {
                            let mut acc = w.conv_b.as_ref().map_or(0.0, |b| b[ch] as f64);
                            for j in 0..c.k {
                                let back = (c.k - 1 - j) as isize;
                                let src = st as isize - back;
                                if src >= 0 {
                                    let src = src as usize;
                                    let pos = if reverse { len - 1 - src } else { src };
                                    let xr = s * len + pos;
                                    acc +=
                                        w.conv_w[ch * c.k + j] as f64 * xz[xr * 2 * di + ch] as f64;
                                }
                            }
                            silu(acc)
                        })
                    })
                    .collect();
                let cw = g.upload(&w.conv_w).unwrap();
                let cb = w.conv_b.as_ref().map(|b| g.upload(b).unwrap());
                // Whole, and in segments of 17 rows.
                for seg in [rows, 17] {
                    let useg = seg.min(rows);
                    let u = upload_act(&g, c.bf16, &vec![f32::NAN; useg * di]);
                    let mut got = Vec::with_capacity(rows * di);
                    let mut row0 = 0;
                    while row0 < rows {
                        let n = seg.min(rows - row0);
                        let p = ConvParams {
                            x: dxz.ptr,
                            u: u.ptr,
                            w: cw.ptr,
                            b: cb.as_ref().map_or(0, |b| b.ptr),
                            ld: ld as i64,
                            row0: row0 as i64,
                            ld_u: useg as i32,
                            di: di as i32,
                            seqlen: len as i32,
                            rows: n as i32,
                            reverse: reverse as i32,
                            _pad: 0,
                        };
                        launch::conv(&g, p).unwrap();
                        let t = download_act(&g, c.bf16, u.ptr, useg * di);
                        got.extend(row_major(&t, di, useg, n));
                        row0 += n;
                    }
                    let what = format!(
                        "conv di={di} nseq={nseq} len={len} reverse={reverse} segment={seg}"
                    );
                    check(&what, c, &got, &want);
                    checked += 1;
                }
            }
        }
    }
    println!("ops_conv_matches_the_spec: {checked} outputs checked");
}

mod xproj;
