// Small row-wise ops of the general (untied or ew_multiply) mixer path and
// of projection biases. All matrices are row-major with a row stride (ld).
//
//   add_bias:  out[r, j] += scale * b[j]              out act_t, b f32 [n]
//              (with transposed: out is channel-major, out[j][r])
//   combine:   dst[r, j] = dst[r, j] (+ or *) src[r, j]   both act_t
//   copy_cols: dst[r, j] = src[r, j]                      both act_t

struct RowsParams {
    act_t *dst;
    const act_t *src;
    const float *b;
    int ld_dst;
    int ld_src;
    int rows;
    int n;
    float scale;
    int mul;
    int transposed;
    int _pad;
};

#define ROWS_INDEX                                    \
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; \
    if (i >= (i64)p.rows * p.n) return;               \
    i64 r = i / p.n;                                  \
    int j = (int)(i - r * p.n);

extern "C" __global__ void add_bias(RowsParams p) {
    ROWS_INDEX
    act_t *o = p.transposed ? p.dst + (i64)j * p.ld_dst + r : p.dst + r * p.ld_dst + j;
    *o = to_act(act_ld(o) + p.scale * p.b[j]);
}

extern "C" __global__ void combine(RowsParams p) {
    ROWS_INDEX
    act_t *o = p.dst + r * p.ld_dst + j;
    float a = act_ld(o), b = act_ld(p.src + r * p.ld_src + j);
    *o = to_act(p.mul ? a * b : a + b);
}

extern "C" __global__ void copy_cols(RowsParams p) {
    ROWS_INDEX
    p.dst[r * p.ld_dst + j] = p.src[r * p.ld_src + j];
}
