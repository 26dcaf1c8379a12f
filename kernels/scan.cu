// Selective scan of one Mamba direction (spec sections 5-6), fused with
// the causal conv + SiLU, dt_proj, softplus, exp(delta*A), the D skip and
// SiLU(z) gating. Chunked along the sequence so that a single sequence
// fills the GPU:
//
//   1. scan_chunk_state: every chunk but the last (in walk order) runs the
//      recurrence from a zero state and stores its end state S_k and the
//      sum of its step sizes.
//   2. scan_carry: per (sequence, state, channel), walks the chunks in
//      order: H_0 = 0, H_{k+1} = exp2(at2 * sum_k delta) * H_k + S_k, and
//      stores H_k (the state entering chunk k) over S_k.
//   3. scan_output: every chunk reruns the recurrence from H_k and writes
//      y. The exponentials are computed twice (phases 1 and 3); that is
//      the price of parallelism along the sequence at batch 1.
//
// Inputs (rows are sequence-major: row = seq * seqlen + l):
//   xz  [rows, ld_xz]  act_t   x = columns 0..di, z = di..2di
//   xd  [rows, XDW]    f32     x_proj output: dt_low (R) | B (N) | C (N)
//   y   [rows, di]     act_t   output; with accumulate, the other
//                              direction's ungated output is added first
//   conv_w [di, K], conv_b [di] (or null), dt_w [di, R], dt_b [di],
//   at2 [di, N] = A * log2(e), dskip [di]: all f32
//   state [nseq, nchunks, N, di], dsum [nseq, nchunks, di]: f32 scratch
//
// A reverse pass walks l = seqlen-1 .. 0; its conv looks right instead of
// left. "Walk index" s is the step number; the position is POS(s).
//
//   u     = silu(conv_b + sum_k conv_w[k] * x[walk s-(K-1)+k])
//   delta = softplus(dt_b + dt_w . dt_low)
//   h_n   = exp2(delta * at2_n) * h_n + delta * u * B_n
//   y     = D*u + sum_n C_n * h_n, (+ y_other), (* silu(z))
//
// One thread per channel holds all N states in registers; a block is CB
// channels of one chunk. Each SUB-step tile of xd is staged in shared
// memory (every channel reads every row); x, z and y_other are staged
// per thread, in the thread's own column, so those loads are issued all
// at once instead of one per step.

#define CB 128
#if ACT_BF16
#define SUB 32
#else
#define SUB 16
#endif
#define XDW (DTRANK + 2 * NSTATE)
// Resident blocks per SM the compiler must allow for (it caps registers
// to fit); set per program by the host (kernels.rs).
#ifndef SCAN_MIN_BLOCKS
#define SCAN_MIN_BLOCKS 1
#endif
// Shared-memory copies of dt_low, B and C are padded to whole float4s so
// the inner loop reads four values per instruction.
#define R4 ((DTRANK + 3) / 4 * 4)
#define N4 ((NSTATE + 3) / 4 * 4)

struct ScanParams {
    const act_t *xz;
    const float *xd;
    act_t *y;
    const float *conv_w;
    const float *conv_b;
    const float *dt_w;
    const float *dt_b;
    const float *at2;
    const float *dskip;
    float *state;
    float *dsum;
    int ld_xz;
    int di;
    int nseq;
    int seqlen;
    int chunk;
    int nchunks;
    int reverse;
    int accumulate;
    int gate;
};

// Rows a position step; all staging loads of a tile are issued before the
// first store into shared memory, so a tile costs one memory round trip
// rather than one per row (profiled: load-to-store chains were a third of
// all stall cycles).
#define POS(s) (p.reverse ? p.seqlen - 1 - (s) : (s))
// 16-byte vectors per row of a block's channels, rows covered by one pass
// of the block's threads, and passes per tile.
#define VPR (CB * (int)sizeof(act_t) / 16)
#define RPP (CB / VPR)
#define VPASSES ((SUB + RPP - 1) / RPP)
// Elements of a tile of xd each thread stages.
#define XD_ITERS ((SUB * XDW + CB - 1) / CB)

// Asynchronous copies global -> shared (sm_80+): no registers held, every
// copy of a tile in flight at once.
__device__ __forceinline__ u32 smem_addr(const void *p) {
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_addr(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}

template <bool OUT>
__device__ __forceinline__ void stage_tile(const ScanParams &p, int t0, int n, i64 base, int cc,
                                           float (*sdt)[R4], float (*sb)[N4], float (*sc)[N4],
                                           act_t (*sx)[CB], act_t (*sz)[CB], act_t (*sy)[CB]) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int q = 0; q < XD_ITERS; q++) {
        int e = q * CB + tid, i = e / XDW, col = e - i * XDW;
        if (i < n) {
            const float *src = p.xd + (base + POS(t0 + i)) * XDW + col;
            if (col < DTRANK) cp_async4(&sdt[i][col], src);
            else if (col < DTRANK + NSTATE) cp_async4(&sb[i][col - DTRANK], src);
            else if (OUT) cp_async4(&sc[i][col - DTRANK - NSTATE], src);
        }
    }
    const int c0 = blockIdx.x * CB;
    // Whole 16-byte vectors when the block's channels are a full, aligned
    // run (di a multiple of CB: every published model); else per element.
    if (p.di % CB == 0) {
        const int r0 = tid / VPR, v = tid % VPR;
        const int epv = 16 / (int)sizeof(act_t);
#pragma unroll
        for (int q = 0; q < VPASSES; q++) {
            const int r = q * RPP + r0;
            if (r < n) {
                const i64 row = base + POS(t0 + r);
                const act_t *x = p.xz + row * p.ld_xz + c0 + v * epv;
                cp_async16(&sx[r][v * epv], x);
                if (OUT) {
                    cp_async16(&sz[r][v * epv], x + p.di);
                    if (p.accumulate) cp_async16(&sy[r][v * epv], p.y + row * p.di + c0 + v * epv);
                }
            }
        }
    } else {
        for (int i = 0; i < n; i++) {
            const i64 row = base + POS(t0 + i);
            sx[i][tid] = p.xz[row * p.ld_xz + cc];
            if (OUT) {
                sz[i][tid] = p.xz[row * p.ld_xz + p.di + cc];
                if (p.accumulate) sy[i][tid] = p.y[row * p.di + cc];
            }
        }
    }
    cp_async_wait_all();
}
#undef POS

template <bool OUT>
__device__ __forceinline__ void scan_chunk(const ScanParams &p) {
    __shared__ __align__(16) float sdt[SUB][R4];
    __shared__ __align__(16) float sb[SUB][N4];
    __shared__ __align__(16) float sc[OUT ? SUB : 1][N4];
    __shared__ __align__(16) act_t sx[SUB][CB];
    __shared__ __align__(16) act_t sz[OUT ? SUB : 1][CB];
    __shared__ __align__(16) act_t sy[OUT ? SUB : 1][CB];

    const int tid = threadIdx.x;
    const int c = blockIdx.x * CB + tid;
    const bool on = c < p.di;
    const int cc = on ? c : 0;  // in-range index for weight loads
    const int k = blockIdx.y, seq = blockIdx.z;
    const int s0 = k * p.chunk, s1 = min(s0 + p.chunk, p.seqlen);
    const i64 base = (i64)seq * p.seqlen;
    const int di = p.di;
#define POS(s) (p.reverse ? p.seqlen - 1 - (s) : (s))

    float cw[KCONV], dw[DTRANK], a2[NSTATE], h[NSTATE];
#pragma unroll
    for (int j = 0; j < KCONV; j++) cw[j] = p.conv_w[cc * KCONV + j];
#pragma unroll
    for (int r = 0; r < DTRANK; r++) dw[r] = p.dt_w[cc * DTRANK + r];
    const i64 st = ((i64)seq * p.nchunks + k) * NSTATE * di + cc;
#pragma unroll
    for (int n = 0; n < NSTATE; n++) {
        a2[n] = p.at2[cc * NSTATE + n];
        h[n] = OUT ? p.state[st + (i64)n * di] : 0.0f;
    }
    const float cb = p.conv_b ? p.conv_b[cc] : 0.0f;
    const float db = p.dt_b[cc], dskip = p.dskip[cc];

    // Conv window: win[j] holds x at walk index s-(K-1)+j.
    float win[KCONV];
#pragma unroll
    for (int j = 0; j < KCONV - 1; j++) {
        int sj = s0 - (KCONV - 1) + j;
        win[j] = sj >= 0 ? act_ld(p.xz + (base + POS(sj)) * p.ld_xz + cc) : 0.0f;
    }
    float dsum = 0.0f;

    for (int t0 = s0; t0 < s1; t0 += SUB) {
        const int n = min(SUB, s1 - t0);
        __syncthreads();  // the previous tile is consumed
        stage_tile<OUT>(p, t0, n, base, cc, sdt, sb, sc, sx, sz, sy);
        __syncthreads();
        if (!on) continue;
        for (int i = 0; i < n; i++) {
            win[KCONV - 1] = act_ld(&sx[i][tid]);
            float acc = cb;
#pragma unroll
            for (int j = 0; j < KCONV; j++) acc = fmaf(cw[j], win[j], acc);
#pragma unroll
            for (int j = 0; j < KCONV - 1; j++) win[j] = win[j + 1];
            const float u = silu(acc);

            // Four partial sums: a 16-long dependent FMA chain per step
            // would dominate the step's latency.
            float dtp[4] = {db, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int r4 = 0; r4 < R4; r4 += 4) {
                const float4 v = *reinterpret_cast<const float4 *>(&sdt[i][r4]);
                const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (r4 + j < DTRANK) dtp[j] = fmaf(dw[r4 + j], vs[j], dtp[j]);
            }
            const float dt = (dtp[0] + dtp[1]) + (dtp[2] + dtp[3]);
            const float delta = softplus(dt);
            const float du = delta * u;
            if (!OUT) dsum += delta;

            // Per-lane partial sums of C·h, for the same reason.
            float yp[4] = {dskip * u, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int m4 = 0; m4 < N4; m4 += 4) {
                const float4 b = *reinterpret_cast<const float4 *>(&sb[i][m4]);
                const float bs[4] = {b.x, b.y, b.z, b.w};
                float cs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                if (OUT) {
                    const float4 c4 = *reinterpret_cast<const float4 *>(&sc[i][m4]);
                    cs[0] = c4.x, cs[1] = c4.y, cs[2] = c4.z, cs[3] = c4.w;
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int m = m4 + j;
                    if (m >= NSTATE) break;
                    // delta > 0 and A < 0: the exponent is never positive.
                    const float da = ex2(delta * a2[m]);
                    h[m] = fmaf(da, h[m], du * bs[j]);
                    if (OUT) yp[j] = fmaf(h[m], cs[j], yp[j]);
                }
            }
            if (OUT) {
                float yv = (yp[0] + yp[1]) + (yp[2] + yp[3]);
                i64 row = base + POS(t0 + i);
                if (p.accumulate) yv += act_ld(&sy[i][tid]);
                if (p.gate) yv *= silu(act_ld(&sz[i][tid]));
                p.y[row * di + c] = to_act(yv);
            }
        }
    }
    if (!OUT && on) {
#pragma unroll
        for (int m = 0; m < NSTATE; m++) p.state[st + (i64)m * di] = h[m];
        p.dsum[((i64)seq * p.nchunks + k) * di + c] = dsum;
    }
#undef POS
}

extern "C" __global__ void __launch_bounds__(CB, SCAN_MIN_BLOCKS) scan_chunk_state(ScanParams p) {
    scan_chunk<false>(p);
}

extern "C" __global__ void __launch_bounds__(CB, SCAN_MIN_BLOCKS) scan_output(ScanParams p) {
    scan_chunk<true>(p);
}

// Loads run CARRY_BATCH chunks ahead of the dependent FMA chain: the chain
// is one FMA per chunk, so without this every chunk would wait a full
// memory round trip.
#define CARRY_BATCH 16

extern "C" __global__ void scan_carry(ScanParams p) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)p.nseq * NSTATE * p.di) return;
    const int c = (int)(i % p.di), m = (int)(i / p.di % NSTATE);
    const int seq = (int)(i / ((i64)NSTATE * p.di));
    const float a2 = p.at2[c * NSTATE + m];
    const i64 stride = (i64)NSTATE * p.di;
    float *__restrict__ state = p.state + (i64)seq * p.nchunks * stride + (i64)m * p.di + c;
    const float *__restrict__ dsum = p.dsum + (i64)seq * p.nchunks * p.di + c;
    float carried = 0.0f;
    for (int k0 = 0; k0 < p.nchunks; k0 += CARRY_BATCH) {
        float end[CARRY_BATCH], decay[CARRY_BATCH];
#pragma unroll
        for (int j = 0; j < CARRY_BATCH; j++) {
            int k = k0 + j;
            end[j] = k < p.nchunks ? state[k * stride] : 0.0f;
            decay[j] = k + 1 < p.nchunks ? dsum[(i64)k * p.di] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < CARRY_BATCH; j++) {
            int k = k0 + j;
            if (k >= p.nchunks) break;
            state[k * stride] = carried;
            carried = fmaf(ex2(a2 * decay[j]), carried, end[j]);
        }
    }
}
