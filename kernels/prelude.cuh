// Shared by every kernel: prepended to each .cu by the Rust side
// (crates/strand-core/src/backend/cuda/kernels/), after the defines it
// chooses per model:
//
//   ACT_BF16  1: activations between kernels and GEMMs are bf16 (stored as
//             raw 16-bit words); 0: f32. Arithmetic is always f32.
//   NSTATE    d_state (N), DTRANK dt_rank (R), KCONV d_conv (K): sizes of
//             register arrays in the scan, so they must be constants.
//
// No CUDA headers: NVRTC on a bare driver machine has no include path.
// Every params struct here is mirrored field for field by a #[repr(C)]
// struct in kernels/mod.rs; pointers are 64-bit on both sides.

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;
typedef unsigned long long u64;

#if ACT_BF16
typedef u16 act_t;
__device__ __forceinline__ float act_ld(const act_t *p) {
    return __uint_as_float(((u32)*p) << 16);
}
// Round to nearest even; NaN stays a quiet NaN.
__device__ __forceinline__ act_t to_act(float v) {
    u32 u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (act_t)0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (act_t)(u >> 16);
}
// Two values as one word of bf16 (lo in the low half), rounded to nearest
// even like to_act: one instruction on sm_80 and later.
__device__ __forceinline__ u32 to_act2(float lo, float hi) {
#if __CUDA_ARCH__ >= 800
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (u32)to_act(lo) | ((u32)to_act(hi) << 16);
#endif
}
#else
typedef float act_t;
__device__ __forceinline__ float act_ld(const act_t *p) { return *p; }
__device__ __forceinline__ act_t to_act(float v) { return v; }
#endif

// Elements of act_t per 16 bytes, and those 16 bytes (one vector load)
// as f32.
#define ACT_PER16 (16 / (int)sizeof(act_t))
__device__ __forceinline__ void act_unpack16(const uint4 q, float *v) {
    const u32 w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int e = 0; e < 4; e++) {
#if ACT_BF16
        v[2 * e] = __uint_as_float(w[e] << 16);
        v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
#else
        v[e] = __uint_as_float(w[e]);
#endif
    }
}

// A shared-memory pointer as the 32-bit address that ldmatrix, ld.shared
// and cp.async take.
__device__ __forceinline__ u32 smem_addr(const void *p) {
    u64 a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}

// Asynchronous global -> shared copies (sm_80+; completed by the caller's
// cp.async.commit_group / wait_group).
__device__ __forceinline__ void cp_async16(u32 dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async4(u32 dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(src));
}

// The MUFU unit's base-2 exponential and logarithm: one instruction each,
// relative error about 2^-22, subnormal results flushed to zero (a decay
// below 1e-38 is zero for every purpose here).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float lg2(float x) {
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

#if ACT_BF16
// With bf16 activations (2^-8 relative) the MUFU tanh (about 2^-11) is
// ample, and SiLU costs one special-function op instead of two:
// x * sigmoid(x) = h + h * tanh(h), h = x / 2. silu_half takes h, for
// callers that fold the 1/2 into their weights (scaling by a power of two
// is exact, so h is bit for bit x / 2): one multiply fewer.
__device__ __forceinline__ float silu_half(float h) {
    float t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(h));
    return fmaf(h, t, h);
}
__device__ __forceinline__ float silu(float x) { return silu_half(0.5f * x); }
#else
__device__ __forceinline__ float silu(float x) {
    return __fdividef(x, 1.0f + ex2(-x * LOG2E));
}
#endif

// The reference's softplus, log(1 + e^x) (x itself above 20), as
// max(x, 0) + log1p(t) with t = e^-|x| in (0, 1]: log1p(t) by its series
// below t = 1/16 (error under t^6/6, 2e-7 relative), else log2(1 + t) *
// ln 2; both in log2 units, so one FMA scales and adds. Above x = 20,
// t < 2e-9 and the sum is x to the last bit, as the reference's
// threshold makes it. Two MUFU ops, no division; both forms are computed
// and one is selected, so lanes that disagree do not diverge.
__device__ __forceinline__ float softplus(float x) {
    const float t = ex2(-fabsf(x) * LOG2E);
    // log2(1 + t) = log2(e) * (t - t^2/2 + t^3/3 - t^4/4 + t^5/5 - ...)
    const float series =
        t * (LOG2E - t * (LOG2E / 2.0f - t * (LOG2E / 3.0f - t * (LOG2E / 4.0f - t * (LOG2E / 5.0f)))));
    const float l2 = t < 0.0625f ? series : lg2(1.0f + t);
    return fmaf(l2, LN2, fmaxf(x, 0.0f));
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
