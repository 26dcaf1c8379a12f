// Causal conv + SiLU fused with x_proj, for both directions of a mixer
// half in one launch (bf16 on sm_80+; f32 keeps conv_walk + an exact
// SGEMM). The conv output u never leaves the SM: a block computes it for
// CX_M positions and a chunk of CX_K channels into shared memory, and
// tensor-core mmas (m16n8k16, f32 accumulation) multiply it by the
// x_proj weight. Numerically the same as conv_walk + a bf16 GEMM: u
// rounded to bf16, products summed in f32, xd rounded to bf16.
//
// Each chunk's inputs (x of its channels over the block's positions and a
// halo, their conv weights, the x_proj weight columns) are staged into
// shared memory by cp.async two chunks ahead, and the conv of chunk c+1
// runs beside the mmas of chunk c: one barrier per chunk.
//
//   x         [di][ld]     act_t  in_proj output, rows = seq * L + position
//   conv_w    [di][KCONV]  f32;  conv_b [di] f32 or null
//   w         [XDW][di]    act_t  x_proj weight (row-major, out x in)
//   xd        [XDW][ld]    act_t  output rows in WALK order: position p is
//                                 row seq * L + p forward, seq * L + L-1-p
//                                 reverse (the scan's order, conv.cu)
//
// Forward u at position p convolves x at p-(K-1) .. p, reverse u at p
// (walk step L-1-p) convolves x at p+(K-1) .. p, taps outside the
// sequence zero:
//   u_f[c, p] = silu(b_f[c] + sum_k w_f[c, k] * x[c, p - (K-1) + k])
//   u_r[c, p] = silu(b_r[c] + sum_k w_r[c, k] * x[c, p + (K-1) - k])
//   xd[:, walk(p)] = W . u[:, p]

struct XprojDir {
    const float *conv_w;
    const float *conv_b;
    const act_t *w;
    act_t *xd;
    int reverse;
    int _pad;
};

struct XprojParams {
    XprojDir dir[2];
    const act_t *x;
    i64 ld;
    int di;
    int nseq;
    int seqlen;
    int ndirs;
};

#define XDW_P (DTRANK + 2 * NSTATE)
#define CX_M 128                      // positions per block (8 warps x 16)
#define CX_K 32                       // channels per chunk (2 k16 steps)
#define CX_RUN 16                     // positions per thread in the conv
#define CX_NT ((XDW_P + 15) / 16 * 2) // n8 tiles (even: an ldmatrix.x4 loads two)
#define CX_HALO 8                     // staged positions either side (>= K-1)
#define CX_XW (CX_M + 2 * CX_HALO)    // staged positions per channel
#define CX_LD (CX_M + 8)              // smem row strides: consecutive rows in
#define CX_KP (CX_K + 8)              // different 16-byte bank groups, so
                                      // ldmatrix is conflict-free
#define CX_THREADS 256

// Shared memory (elements of act_t unless noted): three stage buffers and
// two of u, so that the conv of chunk c+1 and the mmas of chunk c share one
// barrier interval (the mmas' fragment loads wait behind conv work, not a
// barrier) while chunk c+2 is staged. Per stage buffer:
// x [CX_K][CX_XW], W [2][CX_NT*8][CX_KP], conv w f32 [2][CX_K][KCONV]
// then conv b f32 [2][CX_K].
#define CX_XS (CX_K * CX_XW)
#define CX_WS (2 * CX_NT * 8 * CX_KP)
#define CX_CS (2 * CX_K * (KCONV + 1) * (4 / (int)sizeof(act_t))) // f32 in act_t units
#define CX_STAGE (CX_XS + CX_WS + CX_CS)
#define CX_US (2 * CX_K * CX_LD)
#define CX_OS (2 * XDW_P * CX_LD)
#define CX_SMEM_MAIN (3 * CX_STAGE + 2 * CX_US)
#define CX_SMEM ((CX_SMEM_MAIN > CX_OS ? CX_SMEM_MAIN : CX_OS) * 2) // bytes

// Stages chunk c0's inputs into buffer `st`; zero where a channel is past
// di, a position outside the sequence, or a weight row past XDW (so they
// add nothing). A thread copies the same pieces of every chunk: the two
// 8-position runs under its own conv positions (the first and last
// threads of a channel also a halo run), one or two weight runs and one
// run of conv weights; whole aligned 16-byte runs by cp.async, the rest
// (sequence edges, unaligned rows, the last partial chunk) element by
// element. FAST (cx_fast: every copy is a whole aligned run) compiles the
// checks out: they were most of the staging's instructions.
template <bool FAST>
__device__ __forceinline__ void cx_stage(const XprojParams &p, const XprojDir &D0, const XprojDir &D1, int c0,
                                         i64 seq_row, int p0, act_t *st) {
    const int tid = threadIdx.x, L = p.seqlen;
    constexpr int PER_CH = CX_M / CX_RUN; // threads per channel
    const int cl = tid / PER_CH, r = tid % PER_CH, c = c0 + cl;
    {
        act_t *xs = st + cl * CX_XW;
        const act_t *xr = p.x + (i64)c * p.ld + seq_row;
        const bool row_ok = c < p.di && seq_row % 8 == 0 && p.ld % 8 == 0;
        // Runs j (8 staged positions from p0 - CX_HALO + 8j): 1+2r, 2+2r,
        // and the halos 0 (r == 0) and CX_XW/8 - 1 (r == PER_CH - 1).
#pragma unroll
        for (int h = 0; h < 3; h++) {
            const int j = h < 2 ? 1 + 2 * r + h : (r == 0 ? 0 : CX_XW / 8 - 1);
            if (h == 2 && r != 0 && r != PER_CH - 1) break;
            const int a = p0 - CX_HALO + 8 * j;
            act_t *dst = xs + 8 * j;
            if (FAST || (row_ok && a >= 0 && a + 8 <= L)) {
                cp_async16(smem_addr(dst), xr + a);
            } else {
                for (int e = 0; e < 8; e++) dst[e] = c < p.di && a + e >= 0 && a + e < L ? xr[a + e] : (act_t)0;
            }
        }
    }
    constexpr int WRUNS = CX_NT * 8 * (CX_K / 8);
#pragma unroll
    for (int h = 0; h < (2 * WRUNS + CX_THREADS - 1) / CX_THREADS; h++) {
        const int i = tid + h * CX_THREADS;
        if (i >= p.ndirs * WRUNS) break;
        const int d = i / WRUNS, n = (i / (CX_K / 8)) % (CX_NT * 8), k8 = (i % (CX_K / 8)) * 8;
        act_t *dst = st + CX_XS + (d * CX_NT * 8 + n) * CX_KP + k8;
        // di is a multiple of 8 (host): a run of 8 is in or out whole.
        if (n < XDW_P && (FAST || c0 + k8 < p.di))
            cp_async16(smem_addr(dst), (d ? D1.w : D0.w) + (i64)n * p.di + c0 + k8);
        else
            *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
    }
    // Conv weights [d][cl][K] then biases [d][cl], f32: 16-byte runs of
    // the contiguous [c0, c0+CX_K) ranges.
    constexpr int CWR = CX_K * KCONV / 4, CBR = CX_K / 4;
    float *cs = reinterpret_cast<float *>(st + CX_XS + CX_WS);
    if (tid < p.ndirs * (CWR + CBR)) {
        const int d = tid / (CWR + CBR), i = tid % (CWR + CBR);
        const float *cw = d ? D1.conv_w : D0.conv_w, *cb = d ? D1.conv_b : D0.conv_b;
        const bool w = i < CWR;
        const int e0 = w ? 4 * i : 4 * (i - CWR); // element within the chunk's range
        float *dst = w ? cs + d * CX_K * KCONV + e0 : cs + 2 * CX_K * KCONV + d * CX_K + e0;
        const float *src = w ? cw + c0 * KCONV + e0 : cb + c0 + e0;
        const int lim = w ? (p.di - c0) * KCONV : p.di - c0;
        if (FAST || ((w || cb) && e0 + 4 <= lim)) {
            cp_async16(smem_addr(dst), src);
        } else {
            for (int e = 0; e < 4; e++) dst[e] = (w || cb) && e0 + e < lim ? src[e] : 0.0f;
        }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// Whether every copy of the block's chunks is a whole aligned 16-byte run:
// positions and halos inside the sequence, 16-byte aligned rows, whole
// chunks of channels, conv biases present: all but the first and last
// blocks of a sequence, usually.
__device__ __forceinline__ bool cx_fast(const XprojParams &p, const XprojDir &D0, const XprojDir &D1, i64 seq_row,
                                        int p0) {
    return p0 >= CX_HALO && p0 + CX_M + CX_HALO <= p.seqlen && seq_row % 8 == 0 && p.ld % 8 == 0 &&
           p.di % CX_K == 0 && D0.conv_b && (p.ndirs < 2 || D1.conv_b);
}

// u of one direction for the thread's CX_RUN positions, packed as bf16
// pairs; v[j] is x at position pa - (K-1) + j; wk = conv weights.
template <bool REVERSE>
__device__ __forceinline__ void cx_conv(const float (&v)[CX_RUN + 2 * (KCONV - 1)], const float *wk, float b,
                                        u32 (&packed)[CX_RUN / 2]) {
    // Halved weights give a / 2 exactly, silu_half's input.
    float w[KCONV];
#pragma unroll
    for (int k = 0; k < KCONV; k++) w[k] = 0.5f * wk[k];
    const float bh = 0.5f * b;
#pragma unroll
    for (int j = 0; j < CX_RUN; j += 2) {
        float u2[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float a = bh;
#pragma unroll
            for (int k = 0; k < KCONV; k++)
                a = fmaf(w[k], REVERSE ? v[j + h + 2 * (KCONV - 1) - k] : v[j + h + k], a);
            u2[h] = silu_half(a);
        }
        packed[j / 2] = to_act2(u2[0], u2[1]);
    }
}

extern "C" __global__ void __launch_bounds__(CX_THREADS, 2) conv_xproj(XprojParams p) {
#if ACT_BF16 && __CUDA_ARCH__ >= 800
    extern __shared__ __align__(16) unsigned char cx_raw[];
    act_t *smem = reinterpret_cast<act_t *>(cx_raw);
    // The output tile after the last chunk (aliases the rest: dead by then).
    act_t(*os)[XDW_P][CX_LD] = reinterpret_cast<act_t(*)[XDW_P][CX_LD]>(smem);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int L = p.seqlen, seq = blockIdx.y;
    const int p0 = blockIdx.x * CX_M;
    const i64 seq_row = (i64)seq * L;
    const int ndirs = p.ndirs;
    // Selected field by field: indexing the params array would copy it to
    // local memory.
    const XprojDir D0 = p.dir[0], D1 = p.dir[1];

    // Conv role: channel cl of the chunk, positions pr .. pr+CX_RUN.
    const int cl = tid / (CX_M / CX_RUN), pr = (tid % (CX_M / CX_RUN)) * CX_RUN;
    // mma role: rows (positions) warp*16 .. +16 of the block. ldmatrix
    // lane addresses: A k-major with .trans as in ssm_deltas; B (the
    // weight rows, k contiguous) plain: matrices (n-tile t, k 0-7),
    // (t, k 8-15), (t+1, k 0-7), (t+1, k 8-15).
    const int lk = (lane & 7) + ((lane >> 4) << 3), lm = ((lane >> 3) & 1) << 3;
    const int bn = (lane & 7) + ((lane >> 4) << 3), bk = ((lane >> 3) & 1) << 3;
    // Byte addresses in shared memory, computed once: constant offsets per
    // buffer, direction, k step and n tile are added at the ldmatrix.
    const u32 s0 = smem_addr(smem);
    const u32 a_addr = s0 + 2 * (3 * CX_STAGE + lk * CX_LD + warp * 16 + lm);
    const u32 b_off = 2 * (CX_XS + bn * CX_KP + bk);
    float acc[2][CX_NT][4];
#pragma unroll
    for (int d = 0; d < 2; d++)
#pragma unroll
        for (int t = 0; t < CX_NT; t++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[d][t][e] = 0.0f;

    // u of chunk ci (its inputs in stage buffer ci % 3) into u buffer ci & 1.
    auto conv = [&](int ci) {
        const act_t *st = smem + (ci % 3) * CX_STAGE;
        act_t(*us)[CX_K][CX_LD] = reinterpret_cast<act_t(*)[CX_K][CX_LD]>(smem + 3 * CX_STAGE + (ci & 1) * CX_US);
        // The window: staged positions pr + CX_HALO - (K-1) ..
        float v[CX_RUN + 2 * (KCONV - 1)];
        {
            constexpr int V = CX_RUN / 8 + 2;
            float m[8 * V];
            const act_t *row = st + cl * CX_XW + pr;
#pragma unroll
            for (int k = 0; k < V; k++) act_unpack16(*reinterpret_cast<const uint4 *>(row + 8 * k), m + 8 * k);
#pragma unroll
            for (int j = 0; j < CX_RUN + 2 * (KCONV - 1); j++) v[j] = m[CX_HALO - (KCONV - 1) + j];
        }
        const float *cs = reinterpret_cast<const float *>(st + CX_XS + CX_WS);
#pragma unroll
        for (int d = 0; d < 2; d++) {
            if (d >= ndirs) break;
            const float *wk = cs + (d * CX_K + cl) * KCONV;
            const float b = cs[2 * CX_K * KCONV + d * CX_K + cl];
            u32 packed[CX_RUN / 2];
            if (d ? D1.reverse : D0.reverse)
                cx_conv<true>(v, wk, b, packed);
            else
                cx_conv<false>(v, wk, b, packed);
            uint4 *dst = reinterpret_cast<uint4 *>(&us[d][cl][pr]);
#pragma unroll
            for (int k = 0; k < CX_RUN / 8; k++)
                dst[k] = make_uint4(packed[4 * k], packed[4 * k + 1], packed[4 * k + 2], packed[4 * k + 3]);
        }
    };

    const int chunks = (p.di + CX_K - 1) / CX_K;
    const bool fast = cx_fast(p, D0, D1, seq_row, p0);
    auto stage = [&](int ci) {
        act_t *st = smem + (ci % 3) * CX_STAGE;
        if (fast)
            cx_stage<true>(p, D0, D1, ci * CX_K, seq_row, p0, st);
        else
            cx_stage<false>(p, D0, D1, ci * CX_K, seq_row, p0, st);
    };
    stage(0);
    if (chunks > 1) {
        stage(1);
        asm volatile("cp.async.wait_group 1;" ::: "memory");
    } else {
        asm volatile("cp.async.wait_group 0;" ::: "memory");
    }
    __syncthreads();
    conv(0);
    for (int ci = 0; ci < chunks; ci++) {
        // Chunk ci+1 landed, chunk ci's u is complete, and every thread is
        // past chunk ci-1's mmas, the last readers of the stage buffer
        // chunk ci+2 goes to and of the u buffer chunk ci+1 goes to.
        asm volatile("cp.async.wait_group 0;" ::: "memory");
        __syncthreads();
        if (ci + 2 < chunks) stage(ci + 2);
        if (ci + 1 < chunks) conv(ci + 1);
        const u32 ua = a_addr + (ci & 1) * (2 * CX_US);
        const u32 b_addr = s0 + (ci % 3) * (2 * CX_STAGE) + b_off;
#pragma unroll
        for (int kk = 0; kk < CX_K / 16; kk++) {
#pragma unroll
            for (int d = 0; d < 2; d++) {
                if (d >= ndirs) break;
                u32 a[4];
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                             : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                             : "r"(ua + 2 * ((d * CX_K + kk * 16) * CX_LD)));
#pragma unroll
                for (int t = 0; t < CX_NT; t += 2) {
                    u32 b[4];
                    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                                 : "r"(b_addr + 2 * ((d * CX_NT * 8 + t * 8) * CX_KP + kk * 16)));
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(acc[d][t + h][0]), "+f"(acc[d][t + h][1]), "+f"(acc[d][t + h][2]),
                              "+f"(acc[d][t + h][3])
                            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[2 * h]), "r"(b[2 * h + 1]));
                    }
                }
            }
        }
    }
    __syncthreads();  // the output tile aliases the buffers the last mmas read

    // Epilogue: fragments -> os[d][col][position] (bf16), then whole
    // 16-byte runs of walk rows to xd.
    {
        const int g = lane >> 2, q = lane & 3;
#pragma unroll
        for (int d = 0; d < 2; d++) {
            if (d >= ndirs) break;
#pragma unroll
            for (int t = 0; t < CX_NT; t++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    // d0: (row g, col 2q), d1: (g, 2q+1), d2: (g+8, 2q), d3: (g+8, 2q+1)
                    const int col = t * 8 + 2 * q + (e & 1), m = warp * 16 + g + (e >> 1) * 8;
                    if (col < XDW_P) os[d][col][m] = to_act(acc[d][t][e]);
                }
        }
    }
    __syncthreads();
    const int runs = CX_M / 8;
    for (int r = tid; r < ndirs * XDW_P * runs; r += CX_THREADS) {
        const int d = r / (XDW_P * runs), col = (r / runs) % XDW_P, m0 = (r % runs) * 8;
        const int pos = p0 + m0;
        if (pos >= L) continue;
        act_t *out = (d ? D1.xd : D0.xd) + (i64)col * p.ld + seq_row;
        const act_t *src = &os[d][col][m0];
        if (!(d ? D1.reverse : D0.reverse)) {
            if (pos + 8 <= L && (seq_row + pos) % 8 == 0 && p.ld % 8 == 0) {
                *reinterpret_cast<uint4 *>(out + pos) = *reinterpret_cast<const uint4 *>(src);
            } else {
                for (int e = 0; e < 8 && pos + e < L; e++) out[pos + e] = src[e];
            }
        } else {
            // Positions pos .. pos+7 are walk steps L-1-pos down to L-8-pos.
            const int w0 = L - 8 - pos;
            if (w0 >= 0 && (seq_row + w0) % 8 == 0 && p.ld % 8 == 0) {
                u32 wv[4];
#pragma unroll
                for (int e = 0; e < 4; e++) wv[e] = (u32)src[7 - 2 * e] | ((u32)src[6 - 2 * e] << 16);
                *reinterpret_cast<uint4 *>(out + w0) = make_uint4(wv[0], wv[1], wv[2], wv[3]);
            } else {
                for (int e = 0; e < 8 && pos + e < L; e++) out[L - 1 - pos - e] = src[e];
            }
        }
    }
#endif
}
