//! Per-op GPU-vs-CPU checks (the shape of ggml's test-backend-ops): each
//! fused kernel on random inputs against a float64 loop written from the
//! spec, launched through the same `launch` functions as a forward pass,
//! at sizes that hit tile edges (1, 31, 32, 33 steps), chunk edges (chunks
//! of 32 and 64 steps and the production chunking), sequence boundaries
//! inside a batch, channel counts that are not a multiple of a block, one
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
    xd: Vec<f32>,
    reverse: bool,
}

/// The spec's scan of one direction in f64: `y [rows, di]`, not gated.
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
                let xd = &w.xd[row * xdw..(row + 1) * xdw];
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
        dt_w: v(di * r, 0.5),
        dt_b: v(di, 1.0),
        a,
        d: v(di, 1.0),
        xd: v(rows * (r + 2 * n), 1.0),
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

/// (channels, sequences, steps): tile edges at 31/32/33, several sequences
/// in a batch, channel counts that are not a multiple of a block.
const SIZES: [(usize, usize, usize); 6] = [
    (64, 1, 1),
    (64, 1, 33),
    (48, 3, 32),
    (64, 2, 77),
    (40, 2, 31),
    (160, 1, 300),
];

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

/// The chunked scan, as the fused mixer runs it: the forward direction
/// ungated, then the reverse direction accumulated onto it and gated; and
/// one direction alone, gated. Every chunking: one chunk, 32 and 64 steps,
/// and the production choice.
#[test]
fn ops_scan_matches_the_spec() {
    let mut rng = StdRng::seed_from_u64(14);
    let mut checked = 0;
    for c in &cases() {
        let Some(g) = open(c, "ops_scan_matches_the_spec") else {
            return;
        };
        for (di, nseq, len) in SIZES {
            let rows = nseq * len;
            let xz = random_xz(&mut rng, c, rows, di);
            let gate = gates(&xz, di);
            let dirs = [
                random_dir(&mut rng, c, di, rows, false),
                random_dir(&mut rng, c, di, rows, true),
            ];
            let ys: Vec<Vec<f64>> = dirs
                .iter()
                .map(|w| reference(c, di, nseq, len, &xz, w))
                .collect();
            // In bf16 the first direction's output is stored (rounded)
            // before the second adds to it.
            let both: Vec<f64> = (0..rows * di)
                .map(|i| (act_round(c.bf16, ys[0][i] as f32) as f64 + ys[1][i]) * gate[i])
                .collect();
            let alone: Vec<f64> = (0..rows * di).map(|i| ys[1][i] * gate[i]).collect();
            let dxz = upload_act(&g, c.bf16, &xz);
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
                        g.upload(&w.xd).unwrap(),
                    )
                })
                .collect();
            let mut chunkings = vec![(len, 1), (32, len.div_ceil(32)), (64, len.div_ceil(64))];
            chunkings.push(launch::chunking(di, nseq, len));
            for (chunk, nchunks) in chunkings {
                let state = g.alloc(nseq * nchunks * c.n * di * 4).unwrap();
                let dsum = g.alloc(nseq * nchunks * di * 4).unwrap();
                let params = |i: usize, y: DevPtr, accumulate: bool, gate: bool| {
                    let u = &up[i];
                    ScanParams {
                        xz: dxz.ptr,
                        xd: u.6.ptr,
                        y,
                        conv_w: u.0.ptr,
                        conv_b: u.1.as_ref().map_or(0, |b| b.ptr),
                        dt_w: u.2.ptr,
                        dt_b: u.3.ptr,
                        at2: u.4.ptr,
                        dskip: u.5.ptr,
                        state: state.ptr,
                        dsum: dsum.ptr,
                        ld_xz: (2 * di) as i32,
                        di: di as i32,
                        nseq: nseq as i32,
                        seqlen: len as i32,
                        chunk: chunk as i32,
                        nchunks: nchunks as i32,
                        reverse: dirs[i].reverse as i32,
                        accumulate: accumulate as i32,
                        gate: gate as i32,
                    }
                };
                let what = format!("scan di={di} nseq={nseq} len={len} chunk={chunk}");
                let y = upload_act(&g, c.bf16, &vec![f32::NAN; rows * di]);
                launch::scan(&g, &params(0, y.ptr, false, false), c.n).unwrap();
                launch::scan(&g, &params(1, y.ptr, true, true), c.n).unwrap();
                check(
                    &format!("{what}, two directions"),
                    c,
                    &download_act(&g, c.bf16, y.ptr, rows * di),
                    &both,
                );
                let y = upload_act(&g, c.bf16, &vec![f32::NAN; rows * di]);
                launch::scan(&g, &params(1, y.ptr, false, true), c.n).unwrap();
                check(
                    &format!("{what}, one direction"),
                    c,
                    &download_act(&g, c.bf16, y.ptr, rows * di),
                    &alone,
                );
                checked += 2;
            }
        }
    }
    println!("ops_scan_matches_the_spec: {checked} outputs checked");
}

/// The conv + SiLU that feeds `x_proj`, by segments of rows that start
/// and end inside sequences (as `U_SEGMENT` cuts a long batch).
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
            let xz = random_xz(&mut rng, c, rows, di);
            for reverse in [false, true] {
                let w = random_dir(&mut rng, c, di, rows, reverse);
                let want: Vec<f64> = (0..rows)
                    .flat_map(|row| {
                        let (s, l) = (row / len, row % len);
                        let w = &w;
                        let xz = &xz;
                        (0..di).map(move |ch| {
                            let mut acc = w.conv_b.as_ref().map_or(0.0, |b| b[ch] as f64);
                            for j in 0..c.k {
                                let back = (c.k - 1 - j) as isize;
                                let src = if reverse {
                                    l as isize + back
                                } else {
                                    l as isize - back
                                };
                                if (0..len as isize).contains(&src) {
                                    let xr = s * len + src as usize;
                                    acc +=
                                        w.conv_w[ch * c.k + j] as f64 * xz[xr * 2 * di + ch] as f64;
                                }
                            }
                            silu(acc)
                        })
                    })
                    .collect();
                let dxz = upload_act(&g, c.bf16, &xz);
                let cw = g.upload(&w.conv_w).unwrap();
                let cb = w.conv_b.as_ref().map(|b| g.upload(b).unwrap());
                // Whole, and in segments of 17 rows.
                for seg in [rows, 17] {
                    let u = upload_act(&g, c.bf16, &vec![f32::NAN; seg.min(rows) * di]);
                    let mut got = Vec::with_capacity(rows * di);
                    let mut row0 = 0;
                    while row0 < rows {
                        let n = seg.min(rows - row0);
                        let p = ConvParams {
                            xz: dxz.ptr,
                            u: u.ptr,
                            w: cw.ptr,
                            b: cb.as_ref().map_or(0, |b| b.ptr),
                            ld_xz: (2 * di) as i32,
                            di: di as i32,
                            seqlen: len as i32,
                            row0: row0 as i32,
                            rows: n as i32,
                            reverse: reverse as i32,
                        };
                        launch::conv(&g, p).unwrap();
                        got.extend(download_act(&g, c.bf16, u.ptr, n * di));
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
