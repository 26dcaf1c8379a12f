// Fused residual add + RMSNorm/LayerNorm (spec sections 4 and 9), one warp
// per row.
//
//   hidden   [rows, width]  act_t  mixer output of the previous block (or
//                                  the embedding when first != 0)
//   residual [rows, width]  f32    running residual, updated in place:
//                                  residual = hidden + residual (first:
//                                  hidden), with the two halves swapped
//                                  when swap != 0 (fused PS blocks)
//   w, b     [d]            f32    norm weight and bias (b null: RMSNorm)
//
// Each half h of `halves` (PS: 2, PH: 1) is normalised on its own:
//   out[h*d + j] = (x[xi] - mean) * rstd * w[wi] + b[wi]
// with x the half of the updated residual, xi = d-1-j when that half's flip
// is FLIP_INPUT (the RC half's mixer input, written channel-reversed) and
// wi = d-1-j when it is FLIP_WEIGHT (the final norm's RC half). `norm_block`
// writes the result over `hidden` (act_t), `norm_final` to `out` (f32).
// `out` may be `residual` itself because the final norm never flips its
// input (flip1 != FLIP_INPUT), so each lane reads only what it overwrites.
//
// Statistics are f32 over lanes, reduced by shuffles; LayerNorm takes the
// variance about the mean in a second pass rather than E[x^2] - mean^2.

#define FLIP_NONE 0
#define FLIP_INPUT 1
#define FLIP_WEIGHT 2

struct NormParams {
    act_t *hidden;
    float *residual;
    const float *w;
    const float *b;
    float *out;
    int rows;
    int d;
    int halves;
    int first;
    int swap;
    int flip1;  // flip of half 1; half 0 is never flipped
    float eps;
    int _pad;
};

template <bool FINAL>
__device__ void add_norm(const NormParams &p) {
    int row = (int)(((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (row >= p.rows) return;
    int d = p.d, width = d * p.halves;
    act_t *h = p.hidden + (i64)row * width;
    float *r = p.residual + (i64)row * width;

    // Lane-private pairs (j, j+d): with swap, each lane reads both elements
    // before writing either, so no lane overwrites what another still reads.
    float sum[2] = {0.0f, 0.0f};
    for (int j = lane; j < d; j += 32) {
        float a = act_ld(h + j);
        if (!p.first) a += r[j];
        if (p.halves == 1) {
            r[j] = a;
            sum[0] += a;
            continue;
        }
        float b = act_ld(h + j + d);
        if (!p.first) b += r[j + d];
        if (p.swap) {
            float t = a;
            a = b;
            b = t;
        }
        r[j] = a;
        r[j + d] = b;
        sum[0] += a;
        sum[1] += b;
    }
    __syncwarp();
    float mean[2] = {0.0f, 0.0f}, rstd[2];
    if (p.b) {
        mean[0] = warp_sum(sum[0]) / d;
        mean[1] = warp_sum(sum[1]) / d;
    }
    float sq[2] = {0.0f, 0.0f};
    for (int j = lane; j < width; j += 32) {
        float c = r[j] - mean[j >= d];
        sq[j >= d] += c * c;
    }
    rstd[0] = rsqrtf(warp_sum(sq[0]) / d + p.eps);
    rstd[1] = rsqrtf(warp_sum(sq[1]) / d + p.eps);
    for (int j = lane; j < width; j += 32) {
        int half = j >= d, k = j - half * d;
        int flip = half ? p.flip1 : FLIP_NONE;
        int xi = flip == FLIP_INPUT ? d - 1 - k : k;
        int wi = flip == FLIP_WEIGHT ? d - 1 - k : k;
        float v = (r[half * d + xi] - mean[half]) * rstd[half] * p.w[wi] + (p.b ? p.b[wi] : 0.0f);
        if (FINAL) {
            p.out[(i64)row * width + j] = v;
        } else {
            h[j] = to_act(v);
        }
    }
}

extern "C" __global__ void norm_block(NormParams p) { add_norm<false>(p); }
extern "C" __global__ void norm_final(NormParams p) { add_norm<true>(p); }
