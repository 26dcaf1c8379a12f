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

// 8 consecutive values as f32 (act_t or f32 storage), and back.
__device__ __forceinline__ void nv_load(const act_t *p, float (&v)[8]) {
#pragma unroll
    for (int k = 0; k < 8 / ACT_PER16; k++)
        act_unpack16(reinterpret_cast<const uint4 *>(p)[k], v + k * ACT_PER16);
}
__device__ __forceinline__ void nv_loadf(const float *p, float (&v)[8]) {
    const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void nv_storef(float *p, const float (&v)[8]) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void nv_store(act_t *p, const float (&v)[8]) {
#if ACT_BF16
    *reinterpret_cast<uint4 *>(p) =
        make_uint4(to_act2(v[0], v[1]), to_act2(v[2], v[3]), to_act2(v[4], v[5]), to_act2(v[6], v[7]));
#else
    nv_storef(p, v);
#endif
}

// Rows whose halves are whole 16-byte runs per lane (d a multiple of 8, at
// most NV_CH runs of 8 per lane and half): every value is loaded once into
// registers, the statistics taken from them, and the output written from
// them. A flipped half's lane writes the mirrored run of the output (its
// values reversed), so no value crosses lanes.
#define NV_CH 2
template <bool FINAL>
__device__ void add_norm_vec(const NormParams &p, int row, int lane) {
    const int d = p.d, halves = p.halves, width = d * halves;
    act_t *h = p.hidden + (i64)row * width;
    float *r = p.residual + (i64)row * width;
    float x[2][NV_CH][8];
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < NV_CH; c++) {
        const int j0 = (c * 32 + lane) * 8;
        if (j0 >= d) break;
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            if (hh >= halves) break;
            float v[8];
            nv_load(h + hh * d + j0, v);
            if (!p.first) {
                float q[8];
                nv_loadf(r + hh * d + j0, q);
#pragma unroll
                for (int e = 0; e < 8; e++) v[e] += q[e];
            }
#pragma unroll
            for (int e = 0; e < 8; e++) x[hh][c][e] = v[e];
        }
        if (halves == 2 && p.swap) {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float t = x[0][c][e];
                x[0][c][e] = x[1][c][e];
                x[1][c][e] = t;
            }
        }
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            if (hh >= halves) break;
            nv_storef(r + hh * d + j0, x[hh][c]);
#pragma unroll
            for (int e = 0; e < 8; e++) sum[hh] += x[hh][c][e];
        }
    }
    float mean[2] = {0.0f, 0.0f}, sq[2] = {0.0f, 0.0f};
    if (p.b) {
        mean[0] = warp_sum(sum[0]) / d;
        mean[1] = warp_sum(sum[1]) / d;
    }
#pragma unroll
    for (int c = 0; c < NV_CH; c++) {
        if ((c * 32 + lane) * 8 >= d) break;
#pragma unroll
        for (int hh = 0; hh < 2; hh++)
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float t = x[hh][c][e] - mean[hh];
                sq[hh] += hh < halves ? t * t : 0.0f;
            }
    }
    const float rstd[2] = {rsqrtf(warp_sum(sq[0]) / d + p.eps), rsqrtf(warp_sum(sq[1]) / d + p.eps)};
#pragma unroll
    for (int c = 0; c < NV_CH; c++) {
        const int j0 = (c * 32 + lane) * 8;
        if (j0 >= d) break;
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            if (hh >= halves) break;
            const int flip = hh ? p.flip1 : FLIP_NONE;
            // FLIP_INPUT: out[d-1-m] = norm(x[m]) * w[d-1-m]: this lane's
            // run m = j0.. lands at outputs d-8-j0 .. d-1-j0, reversed.
            // FLIP_WEIGHT: out[j] = norm(x[j]) * w[d-1-j].
            const int o0 = flip == FLIP_INPUT ? d - 8 - j0 : j0;
            const int w0 = flip == FLIP_NONE ? j0 : d - 8 - j0;
            float wv[8], bv[8];
            nv_loadf(p.w + w0, wv);
            if (p.b) {
                nv_loadf(p.b + w0, bv);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) bv[e] = 0.0f;
            }
            float v[8];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                // Output o0+e: from x[j0+e] (no flip or FLIP_WEIGHT) or
                // x[j0+7-e] (FLIP_INPUT); weight w0+e (no flip, FLIP_INPUT
                // reversed into o0's order) or w0+7-e (FLIP_WEIGHT).
                // (Values selected, not indices: a runtime index into a
                // register array would put it in local memory.)
                const float xv = flip == FLIP_INPUT ? x[hh][c][7 - e] : x[hh][c][e];
                const bool rw = flip == FLIP_WEIGHT;
                v[e] = (xv - mean[hh]) * rstd[hh] * (rw ? wv[7 - e] : wv[e]) + (rw ? bv[7 - e] : bv[e]);
            }
            if (FINAL)
                nv_storef(p.out + (i64)row * width + hh * d + o0, v);
            else
                nv_store(h + hh * d + o0, v);
        }
    }
}

template <bool FINAL>
__device__ void add_norm(const NormParams &p) {
    int row = (int)(((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (row >= p.rows) return;
    int d = p.d, width = d * p.halves;
    if (d % 8 == 0 && d <= NV_CH * 256) {
        add_norm_vec<FINAL>(p, row, lane);
        return;
    }
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
