// Causal depthwise conv1d + SiLU of one Mamba direction, for the x_proj
// GEMM (the scan recomputes the same values from x on the fly).
//
//   xz [nseq*seqlen, ld_xz]  act_t  in_proj output; x = columns 0..di
//   w  [di, KCONV]           f32    conv weight; b [di] f32 or null
//   u  [rows, di]            act_t  output for rows row0 .. row0+rows
//
// u[l, c] = silu(b[c] + sum_k w[c, k] * x[src(l, k), c]) where a forward
// pass reads src = l - (K-1) + k and a reverse pass (the reference's
// Mamba on the position-reversed input, read in original order) reads
// src = l + (K-1) - k; taps outside the sequence are zero. Rows are
// sequence-major: row = s * seqlen + l.

struct ConvParams {
    const act_t *xz;
    act_t *u;
    const float *w;
    const float *b;
    int ld_xz;
    int di;
    int seqlen;
    int row0;
    int rows;
    int reverse;
};

// Grid: x = blocks of CONV_ROWS rows of the segment, y = blocks of
// channels. Each thread walks its rows keeping the last K inputs in
// registers, so every x is loaded once instead of K times.
#define CONV_ROWS 16

// The common case: a whole block of rows inside one sequence. Every input
// (the rows and the K-1 halo) is loaded up front, with no per-row index
// arithmetic; the sums are formed in the same order as the general path,
// so both give the same bits.
template <bool REVERSE>
__device__ __forceinline__ void conv_rows(const ConvParams &p, int c, i64 first, i64 seq_row,
                                          int l0, float bias, const float *w) {
    const act_t *x = p.xz + seq_row * p.ld_xz + c;
    // Forward: v[j] = x[l0 - (K-1) + j]; reverse: v[j] = x[l0 + j].
    float v[CONV_ROWS + KCONV - 1];
#pragma unroll
    for (int j = 0; j < CONV_ROWS + KCONV - 1; j++) {
        const int src = REVERSE ? l0 + j : l0 - (KCONV - 1) + j;
        v[j] = src >= 0 && src < p.seqlen ? act_ld(x + (i64)src * p.ld_xz) : 0.0f;
    }
#pragma unroll
    for (int t = 0; t < CONV_ROWS; t++) {
        float acc = bias;
#pragma unroll
        for (int k = 0; k < KCONV; k++)
            acc = fmaf(w[k], REVERSE ? v[t + KCONV - 1 - k] : v[t + k], acc);
        p.u[(first + t) * p.di + c] = to_act(silu(acc));
    }
}

extern "C" __global__ void conv_silu(ConvParams p) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= p.di) return;
    const i64 first = (i64)blockIdx.x * CONV_ROWS;  // within the segment
    const int nrows = (int)min((i64)CONV_ROWS, p.rows - first);
    const float bias = p.b ? p.b[c] : 0.0f;
    float w[KCONV];
#pragma unroll
    for (int k = 0; k < KCONV; k++) w[k] = p.w[c * KCONV + k];
    {
        const i64 row = p.row0 + first;
        const int l0 = (int)(row % p.seqlen);
        if (nrows == CONV_ROWS && l0 + CONV_ROWS <= p.seqlen) {
            if (p.reverse) conv_rows<true>(p, c, first, row - l0, l0, bias, w);
            else conv_rows<false>(p, c, first, row - l0, l0, bias, w);
            return;
        }
    }
    // Blocks that straddle sequences or end the segment: row by row.
    // Walk order: a reverse pass visits rows from the last to the first,
    // so its window also holds the K-1 previous inputs of the walk.
    float win[KCONV];
    i64 seq_row0 = -1;
    for (int t = 0; t < nrows; t++) {
        const int tt = p.reverse ? nrows - 1 - t : t;
        const i64 row = p.row0 + first + tt;
        const int l = (int)(row % p.seqlen);
        const i64 r0 = row - l;
        const act_t *x = p.xz + r0 * p.ld_xz + c;
        if (r0 != seq_row0) {
            // First row of this thread in this sequence: load the window.
            seq_row0 = r0;
#pragma unroll
            for (int k = 0; k < KCONV - 1; k++) {
                int src = p.reverse ? l + (KCONV - 1) - k : l - (KCONV - 1) + k;
                win[k] = src >= 0 && src < p.seqlen ? act_ld(x + (i64)src * p.ld_xz) : 0.0f;
            }
        }
        win[KCONV - 1] = act_ld(x + (i64)l * p.ld_xz);
        float acc = bias;
#pragma unroll
        for (int k = 0; k < KCONV; k++) acc = fmaf(w[k], win[k], acc);
#pragma unroll
        for (int k = 0; k < KCONV - 1; k++) win[k] = win[k + 1];
        p.u[(first + tt) * p.di + c] = to_act(silu(acc));
    }
}
