// Causal depthwise conv1d + SiLU of one Mamba direction, the input of the
// x_proj GEMM (the scan recomputes the same values from x on the fly, in
// the same order of operations).
//
//   x  [di][ld]        act_t  in_proj output, channel-major, rows = positions
//   w  [di, KCONV]     f32    conv weight; b [di] f32 or null
//   u  [di][ld_u]      act_t  output for WALK rows row0 .. row0+rows
//
// A walk row is seq * seqlen + s, where step s is position s of a forward
// pass and position seqlen-1-s of a reverse one (the reference's Mamba on
// the reversed input), so x_proj's output is in the order the scan walks:
//
//   u[c, row] = silu(b[c] + sum_k w[c, k] * x[c, pos(s - (K-1) + k)])
//
// with taps before the walk's start zero. A thread computes CONV_ROWS
// consecutive walk rows of one channel (one 64-bit division for all of
// them, each input loaded once); consecutive threads take consecutive runs
// of one channel, so loads and stores are contiguous.

struct ConvParams {
    const act_t *x;
    act_t *u;
    const float *w;
    const float *b;
    i64 ld;
    i64 row0;
    int ld_u;
    int di;
    int seqlen;
    int rows;
    int reverse;
    int _pad;
};

#define CONV_THREADS 256
#define CONV_ROWS 8

extern "C" __global__ void conv_walk(ConvParams p) {
    const int j0 = (blockIdx.x * CONV_THREADS + threadIdx.x) * CONV_ROWS;
    const int c = blockIdx.y;
    if (j0 >= p.rows) return;
    float w[KCONV];
#pragma unroll
    for (int k = 0; k < KCONV; k++) w[k] = p.w[c * KCONV + k];
    const float bias = p.b ? p.b[c] : 0.0f;
    const act_t *xc = p.x + c * p.ld;
    act_t *u = p.u + (i64)c * p.ld_u + j0;
    const i64 row = p.row0 + j0;
    const i64 seq = row / p.seqlen;
    const int s0 = (int)(row - seq * p.seqlen);
    const int L = p.seqlen;
    if (s0 + CONV_ROWS <= L && j0 + CONV_ROWS <= p.rows) {
        // v[k] is x at walk step s0 - (K-1) + k.
        const act_t *x = xc + seq * L;
        float v[CONV_ROWS + KCONV - 1];
#pragma unroll
        for (int k = 0; k < CONV_ROWS + KCONV - 1; k++) {
            const int sk = s0 - (KCONV - 1) + k;
            v[k] = sk >= 0 ? act_ld(x + (p.reverse ? L - 1 - sk : sk)) : 0.0f;
        }
        // Whole 16-byte stores where the rows allow (every segment but a
        // last, odd-length one).
        __align__(16) act_t out[CONV_ROWS];
#pragma unroll
        for (int t = 0; t < CONV_ROWS; t++) {
            float acc = bias;
#pragma unroll
            for (int k = 0; k < KCONV; k++) acc = fmaf(w[k], v[t + k], acc);
            out[t] = to_act(silu(acc));
        }
        const int per = 16 / (int)sizeof(act_t);
        if (p.ld_u % per == 0) {
#pragma unroll
            for (int q = 0; q < CONV_ROWS / per; q++)
                reinterpret_cast<uint4 *>(u)[q] = reinterpret_cast<const uint4 *>(out)[q];
        } else {
#pragma unroll
            for (int t = 0; t < CONV_ROWS; t++) u[t] = out[t];
        }
        return;
    }
    // A run that crosses a sequence end or ends the segment: row by row.
    for (int t = 0; t < CONV_ROWS && j0 + t < p.rows; t++) {
        const i64 r = row + t;
        const i64 sq = r / L;
        const int s = (int)(r - sq * L);
        const act_t *x = xc + sq * L;
        float acc = bias;
#pragma unroll
        for (int k = 0; k < KCONV; k++) {
            const int sk = s - (KCONV - 1) + k;
            const float xv = sk >= 0 ? act_ld(x + (p.reverse ? L - 1 - sk : sk)) : 0.0f;
            acc = fmaf(w[k], xv, acc);
        }
        u[t] = to_act(silu(acc));
    }
}
