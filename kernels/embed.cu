// Token embedding gather (spec section 3).
//
//   ids   [rows]          token ids, checked < vocab on the host
//   table [vocab, d]      f32 embedding matrix
//   comp  [vocab]         complement map (PS only)
//   out   [rows, width]   act_t; width = d (PH) or 2d (PS)
//
// PS: out[:, d:2d] = revC(table[comp[id]]), the channel-reversed embedding
// of the complement token, so the RC half needs no flip later.

struct EmbedParams {
    const u32 *ids;
    const float *table;
    const u32 *comp;
    act_t *out;
    int rows;
    int d;
    int width;
    int _pad;
};

extern "C" __global__ void embed(EmbedParams p) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)p.rows * p.width) return;
    int row = (int)(i / p.width), j = (int)(i % p.width);
    u32 id = p.ids[row];
    float v = j < p.d ? p.table[(i64)id * p.d + j]
                      : p.table[(i64)p.comp[id] * p.d + (2 * p.d - 1 - j)];
    p.out[i] = to_act(v);
}
