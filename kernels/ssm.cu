// Selective scan of Mamba directions (spec sections 5-6) in one pass over
// the sequence: every state update is computed once. Fused with the
// causal conv + SiLU, dt_proj, softplus, exp(delta*A), the D skip and the
// SiLU(z) gate.
//
// Parallelism at batch 1 comes from time, inside a warp: a warp owns one
// channel of one direction and walks its sequence in tiles of TILE steps;
// lane l holds SLICE consecutive steps of the tile for all NSTATE states.
// Per state, each lane runs its steps from a zero state, the 32 lanes'
// (decay, end state) pairs are combined by a shuffle scan (with the state
// carried from the previous tile folded into lane 0), and each lane reruns
// its steps from its true entering state, now producing y. The decays
// exp2(delta*at2) of the first run are kept in registers for the second,
// so there is one exponential per update.
//
// A block is SSM_WARPS channels of one direction ("job") and sequence;
// the tile of x_proj output (dt_low | B | C, the same for every channel)
// is staged in shared memory once per block, double-buffered with
// cp.async. Both directions of a mixer half, or of both halves of a PS
// layer, are one launch (blockIdx.y = job); each writes its own gated
// output, side by side for one out_proj per half.
//
// Layouts (channel-major, so a warp's reads and writes are contiguous):
//   x, z     [di][ld]    act_t  in_proj output, rows = positions
//   job.xd   [XDW][ld]   act_t  x_proj output, rows = WALK steps: a reverse
//                               job's conv/x_proj ran in walk order
//   job.y    [di][ld]    act_t  gated output, rows = positions
// where a row is seq * seqlen + index and ld >= nseq * seqlen.
//
//   u     = silu(conv_b + sum_k conv_w[k] * x[walk s-(K-1)+k])
//   delta = softplus(dt_b + dt_w . dt_low)
//   h_n   = exp2(delta * at2_n) * h_n + delta * u * B_n
//   y     = (D*u + sum_n C_n * h_n) * silu(z)

// SLICE, the steps per lane (8, 16 or 32), is set by the host to fit the
// GPU's shared memory (kernels/mod.rs, Defines::fit_shared): longer slices
// spread the per-state shuffle scan over more updates.
#ifndef SLICE
#define SLICE 16
#endif
#define TILE (32 * SLICE)

// Blocks per SM the registers are capped for (1: up to 255 registers).
// The host compiles this file a second time, in a namespace, as
// `ssm_scan_wide` (SSM_ENTRY; SLICE 16, two blocks per SM at 128
// registers) for launches with more blocks than SMs: twice the warps per
// scheduler hide more latency than the shorter slices cost (kernels/mod.rs).
#ifndef SSM_MINB
#define SSM_MINB 1
#endif
#define SSM_WARPS 8
#define SSM_THREADS (SSM_WARPS * 32)
#define XDW (DTRANK + 2 * NSTATE)
// bf16 on sm_80+: dt_proj of a tile is tensor-core work (one m16n8k16 mma
// per 16 steps of the block's 8 channels and 16 of dt_rank), done once by
// the block and handed to the channels' warps as f32 deltas in shared
// memory, instead of dt_rank unpacks and FMAs per step in every lane.
// dt_w is rounded to bf16 for it, as upstream's autocast does. f32 keeps
// exact FMAs.
#if ACT_BF16 && __CUDA_ARCH__ >= 800
#define DT_MMA 1
#else
#define DT_MMA 0
#endif
#define DT_KCH ((DTRANK + 15) / 16)
// Elements of act_t per 16-byte chunk, chunks per lane slice.
#define EPC ACT_PER16
#define CPS (SLICE / EPC)

struct SsmJob {
    // x and z of the job's mixer half (in_proj output): both directions of
    // a half share them; a PS layer's two halves have their own.
    const act_t *x;
    const act_t *z;
    const act_t *xd;
    act_t *y;
    const float *conv_w;
    const float *conv_b;
    const float *dt_w;
    const float *dt_b;
    const float *at2;
    const float *dskip;
    int reverse;
    int _pad;
};

// Directions per launch: both of a mixer half, or of both halves of a PS
// layer (the host's paired mode, for grids that would not fill the GPU).
#define SSM_JOBS 4

struct SsmParams {
    SsmJob job[SSM_JOBS];
    i64 ld;
    int di;
    int nseq;
    int seqlen;
    int _pad;
};

// Shared-memory position of walk step j (0..TILE) of a staged column.
// Lanes read their slice chunk by chunk; the chunks of a slice are stored
// XOR-swizzled so that 8 consecutive lanes reading "their chunk k" hit 8
// different bank groups (one wavefront per 128 bytes).
__device__ __forceinline__ int ssm_swz(int slice) {
    return (slice / (8 / CPS)) & (CPS - 1);
}
__device__ __forceinline__ int ssm_idx(int j) {
    const int s = j / SLICE, w = j % SLICE;
    return s * SLICE + (((w / EPC) ^ ssm_swz(s)) * EPC) + w % EPC;
}

// The lane's SLICE values of one staged column, as f32.
__device__ __forceinline__ void ssm_slice(const act_t *col, int lane, float v[SLICE]) {
    const act_t *base = col + lane * SLICE;
    const int sw = ssm_swz(lane);
#pragma unroll
    for (int k = 0; k < CPS; k++)
        act_unpack16(*reinterpret_cast<const uint4 *>(base + ((k ^ sw) * EPC)), v + k * EPC);
}

#if DT_MMA
// Position of walk step j in a channel's row of deltas (f32, TILE per
// row): 16-byte chunks of a slice XOR-swizzled like ssm_idx, so that lanes
// reading their slices chunk by chunk do not collide on banks.
#define FPC 4
#define FCPS (SLICE / FPC)
// The chunk swizzle of a slice's deltas (ssm_swz for f32 chunks).
__device__ __forceinline__ int ssm_fswz(int slice) {
    return (slice / (8 / FCPS)) & (FCPS - 1);
}
__device__ __forceinline__ int ssm_fidx(int j) {
    const int s = j / SLICE, w = j % SLICE;
    return s * SLICE + (((w / FPC) ^ ssm_fswz(s)) * FPC) + w % FPC;
}

__device__ __forceinline__ u32 ssm_pack(act_t lo, act_t hi) { return (u32)lo | ((u32)hi << 16); }

// delta = softplus(dt_b + dt_w . dt_low) for walk steps s0 .. s0+TILE of
// the block's SSM_WARPS channels, into drow ([SSM_WARPS][TILE], ssm_fidx);
// zero at steps past the sequence (n valid steps). Warp w does the
// 16-step blocks w, w+8, ... as m16n8k16 mmas: rows = steps, columns =
// channels, k = dt_rank (zero-padded to 16).
__device__ __forceinline__ void ssm_deltas(const act_t *buf, const u32 (&wb)[DT_KCH][2],
                                           const float (&bias)[2], int n, float *drow) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, q = lane & 3;
#if DTRANK % 16 == 0
    // The staged dt_low columns are the A operand stored k-major: one
    // ldmatrix.x4.trans per 16 k gives the fragment. Lane l points at row
    // k = l % 8 (+8 for matrices 2, 3) of the 8-step chunk m0 (+8 for
    // matrices 1, 3); chunks are whole 16-byte units of the swizzle.
    const int lk = (lane & 7) + ((lane >> 4) << 3), lm = ((lane >> 3) & 1) << 3;
    const u32 abase = smem_addr(buf + lk * TILE);
#endif
    // Two 16-step blocks per pass: both blocks' fragments are loaded
    // before either mma, so the second load's latency hides behind the
    // first (the asm statements keep their order).
    static_assert((TILE / 16) % (2 * SSM_WARPS) == 0, "whole pairs of step blocks per warp");
    for (int mb = warp; mb < TILE / 16; mb += 2 * SSM_WARPS) {
        float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int kc = 0; kc < DT_KCH; kc++) {
            u32 a[2][4];
#pragma unroll
            for (int b = 0; b < 2; b++) {
                const int m0 = (mb + b * SSM_WARPS) * 16;
#if DTRANK % 16 == 0
                const u32 addr = abase + (u32)((kc * 16 * TILE + ssm_idx(m0 + lm)) * (int)sizeof(act_t));
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(a[b][0]), "=r"(a[b][1]), "=r"(a[b][2]), "=r"(a[b][3])
                             : "r"(addr));
#else
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    // a0: (g, 2q..), a1: (g+8, 2q..), a2: (g, 2q+8..), a3: (g+8, 2q+8..)
                    const int m = m0 + g + (i & 1) * 8;
                    const int k = kc * 16 + 2 * q + (i >> 1) * 8;
                    const act_t lo = k < DTRANK ? buf[k * TILE + ssm_idx(m)] : (act_t)0;
                    const act_t hi = k + 1 < DTRANK ? buf[(k + 1) * TILE + ssm_idx(m)] : (act_t)0;
                    a[b][i] = ssm_pack(lo, hi);
                }
#endif
            }
#pragma unroll
            for (int b = 0; b < 2; b++)
                asm volatile(
                    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                    "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                    : "+f"(d[b][0]), "+f"(d[b][1]), "+f"(d[b][2]), "+f"(d[b][3])
                    : "r"(a[b][0]), "r"(a[b][1]), "r"(a[b][2]), "r"(a[b][3]), "r"(wb[kc][0]), "r"(wb[kc][1]));
        }
        // d0: (step g, channel 2q), d1: (g, 2q+1), d2: (g+8, 2q), d3: (g+8, 2q+1)
#pragma unroll
        for (int b = 0; b < 2; b++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int m = (mb + b * SSM_WARPS) * 16 + g + h * 8;
                float *o = drow + 2 * q * TILE + ssm_fidx(m);
                // Computed, then selected: a branch per value cost more than
                // the softplus of the (zero-padded) steps past the end.
                const bool in = m < n;
                const float s0 = softplus(d[b][2 * h] + bias[0]), s1 = softplus(d[b][2 * h + 1] + bias[1]);
                o[0] = in ? s0 : 0.0f;
                o[TILE] = in ? s1 : 0.0f;
            }
    }
}
#endif

// Stages walk steps s0 .. s0+TILE of a job's xd into `buf` ([XDW][TILE],
// swizzled), zero past the sequence end. Whole tiles at 16-byte aligned
// rows go by cp.async (completed by the caller's wait); others by plain
// loads.
__device__ __forceinline__ void ssm_stage(const act_t *xd, i64 ld, i64 row0, int n, act_t *buf) {
    const int tid = threadIdx.x;
    if (n == TILE && row0 % EPC == 0 && ld % EPC == 0) {
        // A thread copies the same 16-byte chunk of every COLS-th column:
        // its addresses advance by constants (the index arithmetic of a
        // general q -> (column, chunk) split was 13 % of the kernel's
        // instructions).
        constexpr int PER_COL = TILE / EPC, COLS = SSM_THREADS / PER_COL;
        static_assert(SSM_THREADS % PER_COL == 0, "a pass of the block covers whole columns");
        const int kk = tid % PER_COL;
        int col = tid / PER_COL;
        const act_t *src = xd + col * ld + row0 + kk * EPC;
        u32 dst = smem_addr(buf + col * TILE + ssm_idx(kk * EPC));
#pragma unroll 4
        for (; col < XDW; col += COLS) {
            cp_async16(dst, src);
            src += COLS * ld;
            dst += COLS * TILE * (int)sizeof(act_t);
        }
    } else {
        for (int q = tid; q < XDW * TILE; q += SSM_THREADS) {
            const int col = q / TILE, j = q % TILE;
            buf[col * TILE + ssm_idx(j)] = j < n ? xd[col * ld + row0 + j] : (act_t)0;
        }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// Loads the lane's SLICE values of a channel row (x or z) at walk steps
// w0 .. w0+SLICE, in walk order, zero past the sequence end.
__device__ __forceinline__ void ssm_row(const act_t *row, int seqlen, int reverse, int w0,
                                        bool vec, float v[SLICE]) {
    if (vec && w0 + SLICE <= seqlen) {
        // Positions first .. first+SLICE, ascending in memory.
        const int first = reverse ? seqlen - w0 - SLICE : w0;
        const uint4 *p = reinterpret_cast<const uint4 *>(row + first);
        float m[SLICE];
#pragma unroll
        for (int k = 0; k < CPS; k++) act_unpack16(p[k], m + k * EPC);
#pragma unroll
        for (int i = 0; i < SLICE; i++) v[i] = reverse ? m[SLICE - 1 - i] : m[i];
    } else {
#pragma unroll
        for (int i = 0; i < SLICE; i++) {
            const int w = w0 + i;
            v[i] = w < seqlen ? act_ld(row + (reverse ? seqlen - 1 - w : w)) : 0.0f;
        }
    }
}

// What a lane's state loop reads besides its register arrays.
struct SsmLane {
    const act_t *buf;   // the staged tile (ssm_idx layout)
    const float *a2;    // A * log2(e) of the warp's channel, per state
    float *carry;       // state carried between tiles (smem, per state)
#if DT_MMA
    const float *dlane; // the lane's deltas in the warp's row (ssm_fidx)
#endif
    float dsum;         // sum of the lane's deltas
    int lane;
};

// Where the state loop reads the lane's deltas: with the 128-register cap
// of two blocks per SM (the wide scan), re-read from shared memory for
// every state, which leaves the registers to two states' decays and
// inputs (kept in registers there, they spill); with 255, kept in registers (measured: 1.80 vs 1.89
// ms at SLICE 32, but 1.82 vs 1.70 ms wide; docs/benchmarks.md, session
// 8).
#define SSM_DELTA_SMEM (DT_MMA && SSM_MINB > 1)
#if SSM_DELTA_SMEM
// The lane's SLICE deltas from shared memory (volatile: not hoisted into
// registers across the state loop).
__device__ __forceinline__ void ssm_delta_slice(const SsmLane &ln, float (&d)[SLICE]) {
    const int sw = ssm_fswz(ln.lane);
#pragma unroll
    for (int k = 0; k < FCPS; k++) {
        const u32 a = smem_addr(ln.dlane + ((k ^ sw) * FPC));
        asm volatile("ld.shared.v4.f32 {%0,%1,%2,%3}, [%4];"
                     : "=f"(d[4 * k]), "=f"(d[4 * k + 1]), "=f"(d[4 * k + 2]), "=f"(d[4 * k + 3])
                     : "r"(a));
    }
}
#define SSM_DELTA_ARG
#define SSM_DELTA_PARAM
#else
#define SSM_DELTA_ARG delta,
#define SSM_DELTA_PARAM const float(&delta)[SLICE],
#endif

// The lane's slice of state n's B or C column, chunk k, as f32.
__device__ __forceinline__ void ssm_chunk(const SsmLane &ln, int col, int k, float (&v)[EPC]) {
    const act_t *base = ln.buf + col * TILE + ln.lane * SLICE;
    act_unpack16(*reinterpret_cast<const uint4 *>(base + ((k ^ ssm_swz(ln.lane)) * EPC)), v);
}

// One step of the state pipeline, both halves in one loop over the
// lane's slice so that every MUFU exponential of the first has FMAs of
// the second beside it:
//  - FIRST: the first run of state nf from a zero state: its decays and
//    inputs into daF, bF (kept for its second run), its end state
//    returned;
//  - SECOND: the second run of state ns from the lane's true entering
//    state hs with daS, bS of its first run, adding C.h to y.
template <bool FIRST, bool SECOND>
__device__ __forceinline__ float ssm_step(const SsmLane &ln, int nf, SSM_DELTA_PARAM const float (&du)[SLICE],
                                          float (&daF)[SLICE], float (&bF)[SLICE], int ns, float hs,
                                          const float (&daS)[SLICE], const float (&bS)[SLICE],
                                          float (&y)[SLICE]) {
#if SSM_DELTA_SMEM
    float delta[SLICE];
    if (FIRST) ssm_delta_slice(ln, delta);
#endif
    const float an = FIRST ? ln.a2[nf] : 0.0f;
    float hl = 0.0f, h = hs;
#pragma unroll
    for (int k = 0; k < CPS; k++) {
        float bv[EPC], cv[EPC];
        if (FIRST) ssm_chunk(ln, DTRANK + nf, k, bv);
        if (SECOND) ssm_chunk(ln, DTRANK + NSTATE + ns, k, cv);
#pragma unroll
        for (int e = 0; e < EPC; e++) {
            const int i = k * EPC + e;
            if (FIRST) {
                // delta >= 0 and A < 0: the exponent is never positive.
                daF[i] = ex2(delta[i] * an);
                bF[i] = du[i] * bv[e];
                hl = fmaf(daF[i], hl, bF[i]);
            }
            if (SECOND) {
                h = fmaf(daS[i], h, bS[i]);
                y[i] = fmaf(cv[e], h, y[i]);
            }
        }
    }
    return hl;
}

// State n's slices combined across the warp: each lane's (decay, end
// state from zero) by a shuffle scan, lane 0's including the state
// carried in from the previous tile (then updated for the next). Returns
// the lane's true entering state. (Splitting a slice into independent
// chains measured slower: docs/benchmarks.md, 2026-12-04 session 7.)
__device__ __forceinline__ float ssm_combine(const SsmLane &ln, int n, float hl) {
    const int lane = ln.lane;
    const float an = ln.a2[n], c = ln.carry[n];
    float A = ex2(an * ln.dsum);
    float H = lane == 0 ? fmaf(A, c, hl) : hl;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const float hp = __shfl_up_sync(0xffffffffu, H, off);
        const bool in = lane >= off;
        if (off < 16) {
            const float ap = __shfl_up_sync(0xffffffffu, A, off);
            H = in ? fmaf(A, hp, H) : H;
            A = in ? A * ap : A;
        } else {
            H = in ? fmaf(A, hp, H) : H;
        }
    }
    // H is now the true state after the lane's slice.
    const float hprev = __shfl_up_sync(0xffffffffu, H, 1);
    const float last = __shfl_sync(0xffffffffu, H, 31);
    if (lane == 0) ln.carry[n] = last;
    return lane == 0 ? c : hprev;
}

#ifndef SSM_ENTRY
#define SSM_ENTRY ssm_scan
#endif

extern "C" __global__ void __launch_bounds__(SSM_THREADS, SSM_MINB) SSM_ENTRY(SsmParams p) {
    extern __shared__ __align__(16) unsigned char ssm_smem[];
    act_t *bufs = reinterpret_cast<act_t *>(ssm_smem);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // Selected field by field: indexing the params array would copy it to
    // local memory.
    const SsmJob J = blockIdx.y == 0   ? p.job[0]
                     : blockIdx.y == 1 ? p.job[1]
                     : blockIdx.y == 2 ? p.job[2]
                                       : p.job[3];
    const int seq = blockIdx.z, L = p.seqlen;
    const int c = blockIdx.x * SSM_WARPS + warp;
    const bool on = c < p.di;
    const int cc = on ? c : 0;
    const i64 seq_row = (i64)seq * L;
    const int ntiles = (L + TILE - 1) / TILE;
    // Channel rows of x, z, y are 16-byte aligned at every slice when the
    // sequence starts and the leading dimension are.
    const bool vec = seq_row % EPC == 0 && L % EPC == 0 && p.ld % EPC == 0;

    float cw[KCONV];
#pragma unroll
    for (int k = 0; k < KCONV; k++) cw[k] = J.conv_w[cc * KCONV + k];
    const float cb = J.conv_b ? J.conv_b[cc] : 0.0f;
    const float db = J.dt_b[cc], dskip = J.dskip[cc];
    (void)db;
    // Per warp: A*log2(e) and the state carried between tiles (read and
    // written by lane 0 only), in shared memory so that the state loop
    // need not be unrolled to keep them in registers.
#if DT_MMA
    float *dbuf = reinterpret_cast<float *>(bufs + 2 * XDW * TILE);
    float *a2 = dbuf + SSM_WARPS * TILE + warp * 2 * NSTATE;
    // This lane's B fragments of dt_w (k = dt_rank, n = channel g of the
    // block) and the biases of its D columns (channels 2q, 2q+1).
    u32 wb[DT_KCH][2];
    float bias[2];
    {
        const int g = lane >> 2, q = lane & 3;
        const int cg = blockIdx.x * SSM_WARPS + g;
        const float *w = J.dt_w + (cg < p.di ? cg : 0) * DTRANK;
#pragma unroll
        for (int kc = 0; kc < DT_KCH; kc++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int k = kc * 16 + 2 * q + h * 8;
                wb[kc][h] = to_act2(k < DTRANK ? w[k] : 0.0f, k + 1 < DTRANK ? w[k + 1] : 0.0f);
            }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int ch = blockIdx.x * SSM_WARPS + 2 * q + h;
            bias[h] = J.dt_b[ch < p.di ? ch : 0];
        }
    }
#else
    float *a2 = reinterpret_cast<float *>(bufs + 2 * XDW * TILE) + warp * 2 * NSTATE;
#endif
    float *carry = a2 + NSTATE;
    for (int n = lane; n < NSTATE; n += 32) {
        a2[n] = J.at2[cc * NSTATE + n];
        carry[n] = 0.0f;
    }
    __syncwarp();
    // The last KCONV-1 inputs of the previous tile (walk order).
    float xprev[KCONV - 1];
#pragma unroll
    for (int k = 0; k < KCONV - 1; k++) xprev[k] = 0.0f;

    const act_t *xrow = J.x + cc * p.ld + seq_row;
    const act_t *zrow = J.z + cc * p.ld + seq_row;
    act_t *yrow = J.y + cc * p.ld + seq_row;

    ssm_stage(J.xd, p.ld, seq_row, min(TILE, L), bufs);
    for (int t = 0; t < ntiles; t++) {
        const int s0 = t * TILE;
        act_t *buf = bufs + (t & 1) * (XDW * TILE);
        if (t + 1 < ntiles) {
            const int s1 = s0 + TILE;
            ssm_stage(J.xd, p.ld, seq_row + s1, min(TILE, L - s1), bufs + ((t + 1) & 1) * (XDW * TILE));
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        __syncthreads();
        if (t + 1 < ntiles) {
            // The next tile's x and z slices into L2: their loads, at the
            // start and end of that tile, are otherwise the kernel's
            // longest waits (docs/benchmarks.md, 2026-12-04 session 9).
            const int w1 = s0 + TILE + lane * SLICE;
            if (w1 < L) {
                const int first = J.reverse ? max(L - w1 - SLICE, 0) : w1;
                asm volatile("prefetch.global.L2 [%0];" ::"l"(xrow + first));
                asm volatile("prefetch.global.L2 [%0];" ::"l"(zrow + first));
            }
        }
#if DT_MMA
        ssm_deltas(buf, wb, bias, min(TILE, L - s0), dbuf);
        __syncthreads();
#endif
        {
            // Every warp computes (a channel past di computes channel 0 and
            // stores nothing): the shuffles then need no divergence paths.
            const int w0 = s0 + lane * SLICE;
            // Conv window: win[k] is x at walk step w0 - (K-1) + k.
            float win[SLICE + KCONV - 1];
            ssm_row(xrow, L, J.reverse, w0, vec, win + KCONV - 1);
#pragma unroll
            for (int k = 0; k < KCONV - 1; k++) {
                const float up = __shfl_up_sync(0xffffffffu, win[SLICE + k], 1);
                win[k] = lane == 0 ? xprev[k] : up;
            }
#pragma unroll
            for (int k = 0; k < KCONV - 1; k++)
                xprev[k] = __shfl_sync(0xffffffffu, win[SLICE + k], 31);

            float delta[SLICE];
#if DT_MMA
            {
                const float *base = dbuf + warp * TILE + lane * SLICE;
                const int sw = ssm_fswz(lane);
#pragma unroll
                for (int k = 0; k < FCPS; k++) {
                    const float4 v = *reinterpret_cast<const float4 *>(base + ((k ^ sw) * FPC));
                    delta[k * 4] = v.x, delta[k * 4 + 1] = v.y;
                    delta[k * 4 + 2] = v.z, delta[k * 4 + 3] = v.w;
                }
            }
#else
            {
                float dt[SLICE];
#pragma unroll
                for (int i = 0; i < SLICE; i++) dt[i] = db;
#pragma unroll
                for (int r = 0; r < DTRANK; r++) {
                    float v[SLICE];
                    ssm_slice(buf + r * TILE, lane, v);
                    const float w = J.dt_w[cc * DTRANK + r];
#pragma unroll
                    for (int i = 0; i < SLICE; i++) dt[i] = fmaf(w, v[i], dt[i]);
                }
#pragma unroll
                for (int i = 0; i < SLICE; i++) delta[i] = w0 + i < L ? softplus(dt[i]) : 0.0f;
            }
#endif
            float du[SLICE], y[SLICE];
            float dsum = 0.0f;
#pragma unroll
            for (int i = 0; i < SLICE; i++) {
                float acc = cb;
#pragma unroll
                for (int k = 0; k < KCONV; k++) acc = fmaf(cw[k], win[i + k], acc);
                const float u = silu(acc);
                du[i] = delta[i] * u;
                y[i] = dskip * u;
                dsum += delta[i];
            }

            // States are software-pipelined: the first run of state n+1
            // (a MUFU exponential per update) is one loop with the second
            // run of state n (FMAs only), so the MUFU and FMA pipes work at
            // the same time; run apart, each phase left the other pipe
            // idle (docs/benchmarks.md, 2026-12-04 session 8). The shuffle
            // combine of a state sits between steps; its latency overlaps
            // the start of the next step.
            SsmLane ln;
            ln.lane = lane;
            ln.buf = buf;
            ln.a2 = a2;
            ln.carry = carry;
            ln.dsum = dsum;
#if DT_MMA
            ln.dlane = dbuf + warp * TILE + lane * SLICE;
#endif
            float daP[SLICE], bP[SLICE], daQ[SLICE], bQ[SLICE];
            float hl = ssm_step<true, false>(ln, 0, SSM_DELTA_ARG du, daP, bP, 0, 0.0f, daQ, bQ, y);
            float hin = ssm_combine(ln, 0, hl);
#pragma unroll 1
            for (int n = 0; n + 2 < NSTATE; n += 2) {
                hl = ssm_step<true, true>(ln, n + 1, SSM_DELTA_ARG du, daQ, bQ, n, hin, daP, bP, y);
                hin = ssm_combine(ln, n + 1, hl);
                hl = ssm_step<true, true>(ln, n + 2, SSM_DELTA_ARG du, daP, bP, n + 1, hin, daQ, bQ, y);
                hin = ssm_combine(ln, n + 2, hl);
            }
#if NSTATE % 2 == 0
            hl = ssm_step<true, true>(ln, NSTATE - 1, SSM_DELTA_ARG du, daQ, bQ, NSTATE - 2, hin, daP, bP, y);
            hin = ssm_combine(ln, NSTATE - 1, hl);
            ssm_step<false, true>(ln, 0, SSM_DELTA_ARG du, daP, bP, NSTATE - 1, hin, daQ, bQ, y);
#else
            ssm_step<false, true>(ln, 0, SSM_DELTA_ARG du, daQ, bQ, NSTATE - 1, hin, daP, bP, y);
#endif

            float z[SLICE];
            ssm_row(zrow, L, J.reverse, w0, vec, z);
#pragma unroll
            for (int i = 0; i < SLICE; i++) y[i] *= silu(z[i]);
            if (!on) {
            } else if (vec && w0 + SLICE <= L) {
                const int first = J.reverse ? L - w0 - SLICE : w0;
                uint4 *q = reinterpret_cast<uint4 *>(yrow + first);
#pragma unroll
                for (int k = 0; k < CPS; k++) {
                    u32 w[4];
#pragma unroll
                    for (int e = 0; e < 4; e++) {
#if ACT_BF16
                        const int i0 = k * EPC + 2 * e;
                        const float lo = J.reverse ? y[SLICE - 1 - i0] : y[i0];
                        const float hi = J.reverse ? y[SLICE - 2 - i0] : y[i0 + 1];
                        w[e] = to_act2(lo, hi);
#else
                        const int i0 = k * EPC + e;
                        w[e] = __float_as_uint(J.reverse ? y[SLICE - 1 - i0] : y[i0]);
#endif
                    }
                    uint4 o;
                    o.x = w[0], o.y = w[1], o.z = w[2], o.w = w[3];
                    q[k] = o;
                }
            } else {
#pragma unroll
                for (int i = 0; i < SLICE; i++) {
                    const int w = w0 + i;
                    if (w < L) yrow[J.reverse ? L - 1 - w : w] = to_act(y[i]);
                }
            }
        }
        __syncthreads();  // the buffer is restaged two tiles on
    }
}
