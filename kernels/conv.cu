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
// with taps before the walk's start zero. One thread per (walk row,
// channel); consecutive threads take consecutive rows of one channel, so
// loads and stores are contiguous (the K taps overlap and hit in L1).

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

extern "C" __global__ void conv_walk(ConvParams p) {
    const int j = blockIdx.x * CONV_THREADS + threadIdx.x;
    const int c = blockIdx.y;
    if (j >= p.rows) return;
    const i64 row = p.row0 + j;
    const i64 seq = row / p.seqlen;
    const int s = (int)(row - seq * p.seqlen);
    const act_t *x = p.x + c * p.ld + seq * p.seqlen;
    float acc = p.b ? p.b[c] : 0.0f;
#pragma unroll
    for (int k = 0; k < KCONV; k++) {
        const int sk = s - (KCONV - 1) + k;
        const float v = sk >= 0 ? act_ld(x + (p.reverse ? p.seqlen - 1 - sk : sk)) : 0.0f;
        acc = fmaf(p.w[c * KCONV + k], v, acc);
    }
    p.u[(i64)c * p.ld_u + j] = to_act(silu(acc));
}
