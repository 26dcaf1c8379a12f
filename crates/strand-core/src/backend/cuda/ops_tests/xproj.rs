//! The fused conv + `x_proj` (kernels/xproj.cu) against the spec in f64:
//! both directions in one launch (a fused half) and one reverse direction
//! alone (the general path), over the shared sizes whose channel count is
//! a multiple of 8 (the kernel's precondition; others take conv + GEMM).

use super::*;

/// `xd [rows, xdw]` of one direction in walk order: `W · u` with `u` the
/// conv + SiLU of `xz`'s x, rounded to bf16 as the kernel stores it.
fn reference(
    c: &Case,
    di: usize,
    nseq: usize,
    len: usize,
    xz: &[f32],
    w: &Dir,
    wx: &[f32],
) -> Vec<f64> {
    let xdw = c.r + 2 * c.n;
    let mut out = Vec::with_capacity(nseq * len * xdw);
    let mut u = vec![0.0f64; di];
    for walk in 0..nseq * len {
        let (s, st) = (walk / len, walk % len);
        for (ch, u) in u.iter_mut().enumerate() {
            let mut acc = w.conv_b.as_ref().map_or(0.0, |b| b[ch] as f64);
            for j in 0..c.k {
                let src = st as isize - (c.k - 1 - j) as isize;
                if src >= 0 {
                    let src = src as usize;
                    let pos = if w.reverse { len - 1 - src } else { src };
                    acc += w.conv_w[ch * c.k + j] as f64 * xz[(s * len + pos) * 2 * di + ch] as f64;
                }
            }
            *u = act_round(true, silu(acc) as f32) as f64;
        }
        for n in 0..xdw {
            out.push((0..di).map(|ch| wx[n * di + ch] as f64 * u[ch]).sum());
        }
    }
    out
}

#[test]
fn ops_conv_xproj_matches_the_spec() {
    let mut rng = StdRng::seed_from_u64(21);
    let mut checked = 0;
    for c in cases().iter().filter(|c| c.bf16) {
        let Some(g) = open(c, "ops_conv_xproj_matches_the_spec") else {
            return;
        };
        if g.f.conv_xproj.is_none() {
            println!(
                "SKIPPED ops_conv_xproj_matches_the_spec: no conv_xproj on {}",
                g.arch
            );
            return;
        }
        let xdw = c.r + 2 * c.n;
        for (di, nseq, len) in SIZES.into_iter().filter(|s| s.0 % 8 == 0) {
            let rows = nseq * len;
            let ld = rows.next_multiple_of(8);
            let xz = random_xz(&mut rng, c, rows, di);
            let dxz = upload_act(&g, true, &channel_major(&xz, 2 * di, ld));
            let dirs: Vec<(Dir, Vec<f32>)> = [false, true]
                .into_iter()
                .map(|reverse| {
                    let d = random_dir(&mut rng, c, di, rows, reverse);
                    let wx: Vec<f32> = (0..xdw * di)
                        .map(|_| act_round(true, rng.random_range(-0.2f32..0.2)))
                        .collect();
                    (d, wx)
                })
                .collect();
            // Both directions (slots 0, 1), then the reverse one alone.
            for picks in [&[0usize, 1][..], &[1][..]] {
                let xd = upload_act(&g, true, &vec![f32::NAN; 2 * xdw * ld]);
                let mut p = XprojParams {
                    x: dxz.ptr,
                    ld: ld as i64,
                    di: di as i32,
                    nseq: nseq as i32,
                    seqlen: len as i32,
                    ndirs: picks.len() as i32,
                    ..Default::default()
                };
                let mut keep = Vec::new();
                for (slot, &i) in picks.iter().enumerate() {
                    let (d, wx) = &dirs[i];
                    let cw = g.upload(&d.conv_w).unwrap();
                    let cb = d.conv_b.as_ref().map(|b| g.upload(b).unwrap());
                    let w = upload_act(&g, true, wx);
                    p.dir[slot] = XprojDir {
                        conv_w: cw.ptr,
                        conv_b: cb.as_ref().map_or(0, |b| b.ptr),
                        w: w.ptr,
                        xd: xd.ptr + (slot * xdw * ld * 2) as u64,
                        reverse: d.reverse as i32,
                        _pad: 0,
                    };
                    keep.push((cw, cb, w));
                }
                launch::xproj(&g, p).unwrap();
                let all = download_act(&g, true, xd.ptr, 2 * xdw * ld);
                for (slot, &i) in picks.iter().enumerate() {
                    let (d, wx) = &dirs[i];
                    let got = row_major(&all[slot * xdw * ld..], xdw, ld, rows);
                    let want = reference(c, di, nseq, len, &xz, d, wx);
                    let what = format!(
                        "conv_xproj di={di} nseq={nseq} len={len} reverse={} of {} dirs",
                        d.reverse,
                        picks.len()
                    );
                    check(&what, c, &got, &want);
                    checked += 1;
                }
            }
        }
    }
    println!("ops_conv_xproj_matches_the_spec: {checked} outputs checked");
}
