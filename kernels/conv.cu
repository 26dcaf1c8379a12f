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

// Grid: x = rows of the segment, y = blocks of channels; no 64-bit
// division per element.
extern "C" __global__ void conv_silu(ConvParams p) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= p.di) return;
    const i64 row = p.row0 + (i64)blockIdx.x;
    const int l = (int)(row % p.seqlen);
    const act_t *x = p.xz + (row - l) * p.ld_xz + c;  // the sequence's row 0
    float acc = p.b ? p.b[c] : 0.0f;
#pragma unroll
    for (int k = 0; k < KCONV; k++) {
        int src = p.reverse ? l + (KCONV - 1) - k : l - (KCONV - 1) + k;
        if (src >= 0 && src < p.seqlen) acc = fmaf(p.w[c * KCONV + k], act_ld(x + (i64)src * p.ld_xz), acc);
    }
    p.u[(i64)blockIdx.x * p.di + c] = to_act(silu(acc));
}
