// The dense convolution of the fast formulation (src/models/layers.py), wrapped as ops.Custom "aot" in
// src/native/kernels.py: NHWC float32 input x [B, H, W, C], weight w [O, C, k, k] (MindSpore's layout),
// output y [B, Ho, Wo, O], any kernel size k, stride s, dilation d and zero padding (top pt, left pl; the
// output shape gives the rest). The last input, geometry, is int64 [k, s, d, pad]: pad zero rows and
// columns on each side, or -1 for TensorFlow "same" padding (the odd row and column at the bottom and right).
//
// * DenseConvForward(x, w, geometry) -> y
// * DenseConvBackwardInput(dy, w, x, geometry) -> dx      (x only gives dx its shape)
// * DenseConvBackwardWeight(x, dy, w, geometry) -> dw     (w only gives dw its shape)
//
// Each pass walks the output pixels in tiles of a few hundred: the tile's windows are copied into a
// per-thread buffer (im2col, tap-major: column tap * C + c) and multiplied with the weight by oneDNN's
// sgemm (the one MindSpore ships, single-threaded here, one tile per thread at a time). Nothing but x is
// kept for the backward pass: the windows are built again, tile by tile, for the weight gradient, and the
// input gradient is made per tile (dy tile x weight) and added back into dx, in two rounds over chunks of
// output rows so that no two threads add to the same input row at once. Results are deterministic for a
// given thread count (SSD_KERNEL_THREADS, else the CPUs this process may use).
//
// A 3x3 window at stride 1 between layers of at least 32 channels (VGG16's 3x3 layers, the FPN towers and
// heads) runs as Winograd F(4x4, 3x3) or F(2x2, 3x3) instead: see below.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"
#include "vec.h"

namespace {

using ssd_native::MaxThreads;
using ssd_native::ParallelFor;
using ssd_native::Vec;
using ssd_native::Load;
using ssd_native::Store;
using ssd_native::ForChannelBlocks;

// dnnl_sgemm: row-major C = alpha * op(A) * op(B) + beta * C; 0 on success.
typedef int (*Sgemm)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                     float, float *, int64_t);

// oneDNN's sgemm from the library named at build time (SSD_DNNL_LIBRARY, MindSpore's own libdnnl), or null.
Sgemm FindSgemm() {
  static const Sgemm f = [] {
    void *lib = dlopen(SSD_DNNL_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    return lib == nullptr ? nullptr : reinterpret_cast<Sgemm>(dlsym(lib, "dnnl_sgemm"));
  }();
  return f;
}

// sgemm that records a failure (a nonzero oneDNN status) in ``failed``: the kernel then returns 1 and
// MindSpore raises, rather than passing on a half-computed tensor.
struct Gemm {
  Sgemm f = FindSgemm();
  std::atomic<bool> failed{false};
  void operator()(char ta, char tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                  int64_t ldb, float beta, float *c, int64_t ldc) {
    if (f(ta, tb, m, n, k, 1.f, a, lda, b, ldb, beta, c, ldc) != 0) failed = true;
  }
  int Status() const { return failed ? 1 : 0; }
};

// Work per parallel item large enough that ParallelFor uses every thread.
const int64_t kSplit = 1 << 20;

// Shapes of one convolution: input [B, H, W, C], output [B, Ho, Wo, O], window k x k.
struct Conv {
  int64_t B, H, W, C, O, Ho, Wo, k, s, d, pt, pl;
  Conv(const int64_t *x, const int64_t *y, const void *geometry)
      : B(x[0]), H(x[1]), W(x[2]), C(x[3]), O(y[3]), Ho(y[1]), Wo(y[2]) {
    const int64_t *g = static_cast<const int64_t *>(geometry);
    k = g[0], s = g[1], d = g[2];
    pt = g[3] >= 0 ? g[3] : std::max<int64_t>((Ho - 1) * s + (k - 1) * d + 1 - H, 0) / 2;
    pl = g[3] >= 0 ? g[3] : std::max<int64_t>((Wo - 1) * s + (k - 1) * d + 1 - W, 0) / 2;
  }
  int64_t Taps() const { return k * k; }
  bool Winograd() const;
  int64_t Columns() const { return k * k * C; }
  int64_t Pixels() const { return B * Ho * Wo; }
  // Output pixels per tile: a window buffer of about 4 MB x scale, at least 64 and at most 1024 x scale
  // pixels (measured: scale 1 suits the forward pass, 2 the weight gradient, 4 the input gradient).
  int64_t Tile(int64_t scale) const {
    return std::min<int64_t>(std::max<int64_t>(scale * (1 << 20) / Columns(), 64), 1024 * scale);
  }
  // Input row and column that tap t of output pixel p reads (may lie in the padding).
  void Source(int64_t p, int64_t t, int64_t *b, int64_t *iy, int64_t *ix) const {
    const int64_t ox = p % Wo, oy = p / Wo % Ho;
    *b = p / (Wo * Ho);
    *iy = oy * s - pt + t / k * d;
    *ix = ox * s - pl + t % k * d;
  }
};

// w [O, C, k*k] -> [O, k*k, C]: the weight as the matrix of the tap-major windows.
std::vector<float> TapMajor(const float *w, const Conv &g) {
  std::vector<float> m(g.O * g.Columns());
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t t = 0; t < g.Taps(); ++t) m[(o * g.Taps() + t) * g.C + c] = w[(o * g.C + c) * g.Taps() + t];
  return m;
}

// The windows of output pixels [p0, p1) as rows of cols (tap-major; zeros where a tap is in the padding).
void Im2Col(const float *x, const Conv &g, int64_t p0, int64_t p1, float *cols) {
  const size_t bytes = g.C * sizeof(float);
  for (int64_t p = p0; p < p1; ++p) {
    float *row = cols + (p - p0) * g.Columns();
    for (int64_t t = 0; t < g.Taps(); ++t) {
      int64_t b, iy, ix;
      g.Source(p, t, &b, &iy, &ix);
      if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W)
        std::memset(row + t * g.C, 0, bytes);
      else
        std::memcpy(row + t * g.C, x + ((b * g.H + iy) * g.W + ix) * g.C, bytes);
    }
  }
}

// Adds the window gradients of output pixels [p0, p1) (rows of dcols) to dx.
void Col2Im(const float *dcols, const Conv &g, int64_t p0, int64_t p1, float *dx) {
  for (int64_t p = p0; p < p1; ++p) {
    const float *row = dcols + (p - p0) * g.Columns();
    for (int64_t t = 0; t < g.Taps(); ++t) {
      int64_t b, iy, ix;
      g.Source(p, t, &b, &iy, &ix);
      if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) continue;
      float *out = dx + ((b * g.H + iy) * g.W + ix) * g.C;
      const float *in = row + t * g.C;
#pragma omp simd
      for (int64_t c = 0; c < g.C; ++c) out[c] += in[c];
    }
  }
}

// ---- Winograd F(MxM, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) ----
// For a 3x3 window at stride 1, each MxM block of outputs is A^T [(G g G^T) . (B^T d B)] A of its NxN input
// patch d (N = M + 2): N*N products per pair of channels instead of 9*M*M, as N*N matrix products per block
// of tiles. M = 4 (36 products for 16 outputs: 4 times fewer multiply-adds than direct) where a pass has
// many tiles (LargeTiles), else M = 2 (16 for 4: 2.25 times fewer).
// The input gradient is the forward pass of the output gradient with the flipped, transposed kernel; the
// weight gradient is the adjoint of the same products: dU = sum over tiles of (B^T d B) x (A dY A^T), then
// dg = G^T dU G (in double).
const int64_t kWinogradMinChannels = 32;  // below this the thin products lose to one wide im2col product

bool Conv::Winograd() const { return k == 3 && s == 1 && d == 1 && std::min(C, O) >= kWinogradMinChannels; }

// The transforms of F(MxM, 3x3) along one axis, on values s apart, results rs apart: In = B^T (N -> N),
// Out = A^T (N -> M), Grad = A (M -> N), written out, on floats or channel vectors;
// G [N x 3] (in double) for the weights.
template <int M> struct Transform;

template <> struct Transform<2> {
  static constexpr int N = 4;
  template <int s, int rs, typename T>
  static inline void In(const T *d, T *r) {
    r[0] = d[0] - d[2 * s];
    r[rs] = d[s] + d[2 * s];
    r[2 * rs] = d[2 * s] - d[s];
    r[3 * rs] = d[s] - d[3 * s];
  }
  template <int s, int rs, typename T>
  static inline void Out(const T *m, T *r) {
    r[0] = m[0] + m[s] + m[2 * s];
    r[rs] = m[s] - m[2 * s] - m[3 * s];
  }
  template <int s, int rs, typename T>
  static inline void Grad(const T *e, T *r) {
    r[0] = e[0];
    r[rs] = e[0] + e[s];
    r[2 * rs] = e[0] - e[s];
    r[3 * rs] = -e[s];
  }
  static double G(int i, int j) {
    static const double m[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    return m[i][j];
  }
};

template <> struct Transform<4> {
  static constexpr int N = 6;
  template <int s, int rs, typename T>
  static inline void In(const T *d, T *r) {
    const T d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s];
    r[0] = 4.f * d[0] - 5.f * d2 + d4;
    r[rs] = d4 + d3 - 4.f * (d1 + d2);
    r[2 * rs] = d4 - d3 + 4.f * (d1 - d2);
    r[3 * rs] = d4 - d2 + 2.f * (d3 - d1);
    r[4 * rs] = d4 - d2 - 2.f * (d3 - d1);
    r[5 * rs] = 4.f * d1 - 5.f * d3 + d[5 * s];
  }
  template <int s, int rs, typename T>
  static inline void Out(const T *m, T *r) {
    const T a = m[s] + m[2 * s], b = m[s] - m[2 * s], c = m[3 * s] + m[4 * s], e = m[3 * s] - m[4 * s];
    r[0] = m[0] + a + c;
    r[rs] = b + 2.f * e;
    r[2 * rs] = a + 4.f * c;
    r[3 * rs] = b + 8.f * e + m[5 * s];
  }
  template <int s, int rs, typename T>
  static inline void Grad(const T *e, T *r) {
    const T e0 = e[0], e1 = e[s], e2 = e[2 * s], e3 = e[3 * s];
    r[0] = e0;
    r[rs] = e0 + e1 + e2 + e3;
    r[2 * rs] = e0 - e1 + e2 - e3;
    r[3 * rs] = e0 + 2.f * e1 + 4.f * e2 + 8.f * e3;
    r[4 * rs] = e0 - 2.f * e1 + 4.f * e2 - 8.f * e3;
    r[5 * rs] = e3;
  }
  static double G(int i, int j) {
    static const double m[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    return m[i][j];
  }
};

// Tiles of MxM outputs over input [B, H, W, C] -> output [B, Ho, Wo, O], padding pt, pl.
template <int M>
struct Wino {
  static constexpr int N = Transform<M>::N;
  int64_t B, H, W, C, O, Ho, Wo, pt, pl, th, tw;
  Wino(int64_t b, int64_t h, int64_t w, int64_t c, int64_t o, int64_t ho, int64_t wo, int64_t top, int64_t left)
      : B(b), H(h), W(w), C(c), O(o), Ho(ho), Wo(wo), pt(top), pl(left), th((ho + M - 1) / M), tw((wo + M - 1) / M) {}
  int64_t Tiles() const { return B * th * tw; }
  // Tiles per block: about 4 MB of transformed inputs or outputs, 16 to 512 tiles.
  int64_t Block() const {
    return std::min<int64_t>(std::max<int64_t>((1 << 20) / (N * N * std::max(C, O)), 16), 512);
  }
  // Batch index and the top-left output pixel of tile i.
  void Corner(int64_t i, int64_t *b, int64_t *oy, int64_t *ox) const {
    *b = i / (th * tw);
    *oy = i / tw % th * M;
    *ox = i % tw * M;
  }
};

// Per-thread buffers of the transforms: an NxN patch of C channels, an MxM block of O channels.
template <int M>
struct Scratch {
  std::vector<float> patch, block;
  explicit Scratch(const Wino<M> &g) : patch(Wino<M>::N * Wino<M>::N * g.C), block(M * M * g.O) {}
};

// The NxN input patch of tile i (zeros outside x) -> V[k * stride + c] = (B^T d B)[k].
template <int M>
void InputTransform(const float *x, const Wino<M> &g, int64_t i, Scratch<M> *s, float *v, int64_t stride) {
  constexpr int N = Wino<M>::N;
  int64_t b, oy, ox;
  g.Corner(i, &b, &oy, &ox);
  float *patch = s->patch.data();
  for (int k = 0; k < N * N; ++k) {
    const int64_t iy = oy - g.pt + k / N, ix = ox - g.pl + k % N;
    float *cell = patch + k * g.C;
    if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W)
      std::memset(cell, 0, g.C * sizeof(float));
    else
      std::memcpy(cell, x + ((b * g.H + iy) * g.W + ix) * g.C, g.C * sizeof(float));
  }
  ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
    constexpr int W = decltype(width)::value;
    Vec<W> d[N * N], t[N * N], r[N];
    for (int k = 0; k < N * N; ++k) d[k] = Load<W>(patch + k * g.C + c0);
    for (int j = 0; j < N; ++j) Transform<M>::template In<N, N>(d + j, t + j);  // B^T d
    for (int q = 0; q < N; ++q) {                                             // (B^T d) B
      Transform<M>::template In<1, 1>(t + q * N, r);
      for (int j = 0; j < N; ++j) Store<W>(v + (q * N + j) * stride + c0, r[j]);
    }
  });
}

// M[k * stride + o] of tile i -> its MxM outputs A^T M A, those inside y.
template <int M>
void OutputTransform(const float *m, int64_t stride, const Wino<M> &g, int64_t i, float *y, Scratch<M> *s) {
  constexpr int N = Wino<M>::N;
  float *block = s->block.data();
  ForChannelBlocks(g.O, [&](auto width, int64_t o0) {
    constexpr int W = decltype(width)::value;
    Vec<W> e[N * N], t[M * N], r[M];
    for (int k = 0; k < N * N; ++k) e[k] = Load<W>(m + k * stride + o0);
    for (int j = 0; j < N; ++j) Transform<M>::template Out<N, N>(e + j, t + j);  // A^T M
    for (int q = 0; q < M; ++q) {                                              // (A^T M) A
      Transform<M>::template Out<1, 1>(t + q * N, r);
      for (int j = 0; j < M; ++j) Store<W>(block + (q * M + j) * g.O + o0, r[j]);
    }
  });
  int64_t b, oy, ox;
  g.Corner(i, &b, &oy, &ox);
  for (int k = 0; k < M * M; ++k) {
    const int64_t yy = oy + k / M, xx = ox + k % M;
    if (yy < g.Ho && xx < g.Wo)
      std::memcpy(y + ((b * g.Ho + yy) * g.Wo + xx) * g.O, block + k * g.O, g.O * sizeof(float));
  }
}

// The MxM output gradients of tile i (zeros outside dy) -> D[k * stride + o] = (A dY A^T)[k].
template <int M>
void GradTransform(const float *dy, const Wino<M> &g, int64_t i, float *d, int64_t stride, Scratch<M> *s) {
  constexpr int N = Wino<M>::N;
  int64_t b, oy, ox;
  g.Corner(i, &b, &oy, &ox);
  float *block = s->block.data();
  for (int k = 0; k < M * M; ++k) {
    const int64_t yy = oy + k / M, xx = ox + k % M;
    if (yy < g.Ho && xx < g.Wo)
      std::memcpy(block + k * g.O, dy + ((b * g.Ho + yy) * g.Wo + xx) * g.O, g.O * sizeof(float));
    else
      std::memset(block + k * g.O, 0, g.O * sizeof(float));
  }
  ForChannelBlocks(g.O, [&](auto width, int64_t o0) {
    constexpr int W = decltype(width)::value;
    Vec<W> e[M * M], t[N * M], r[N];
    for (int k = 0; k < M * M; ++k) e[k] = Load<W>(block + k * g.O + o0);
    for (int j = 0; j < M; ++j) Transform<M>::template Grad<M, M>(e + j, t + j);  // A dY
    for (int q = 0; q < N; ++q) {                                               // (A dY) A^T
      Transform<M>::template Grad<1, 1>(t + q * M, r);
      for (int j = 0; j < N; ++j) Store<W>(d + (q * N + j) * stride + o0, r[j]);
    }
  });
}

// U[k][in][out] = (G g G^T)[k] of the 3x3 kernel from input channel ``in`` to output channel ``out``:
// w[out][in] as stored, or, with ``flip``, w[in][out] turned by 180 degrees (the input gradient's kernel).
template <int M>
std::vector<float> WinogradWeights(const float *w, int64_t ins, int64_t outs, bool flip) {
  constexpr int N = Wino<M>::N;
  std::vector<float> u(N * N * ins * outs);
  ParallelFor(ins, outs * N * N * 4, [&](int64_t lo, int64_t hi, int) {
    for (int64_t a = lo; a < hi; ++a)
      for (int64_t o = 0; o < outs; ++o) {
        const float *k = flip ? w + (a * outs + o) * 9 : w + (o * ins + a) * 9;
        double g[9], t[N * 3];
        for (int j = 0; j < 9; ++j) g[j] = flip ? k[8 - j] : k[j];
        for (int i = 0; i < N; ++i)  // G g
          for (int j = 0; j < 3; ++j)
            t[i * 3 + j] = Transform<M>::G(i, 0) * g[j] + Transform<M>::G(i, 1) * g[3 + j] +
                           Transform<M>::G(i, 2) * g[6 + j];
        for (int i = 0; i < N; ++i)  // (G g) G^T
          for (int j = 0; j < N; ++j) {
            const double v = t[i * 3] * Transform<M>::G(j, 0) + t[i * 3 + 1] * Transform<M>::G(j, 1) +
                             t[i * 3 + 2] * Transform<M>::G(j, 2);
            u[((i * N + j) * ins + a) * outs + o] = static_cast<float>(v);
          }
      }
  });
  return u;
}

// y = x convolved with the kernels U (WinogradWeights), tile blocks shared out among the threads.
template <int M>
void WinogradConv(const float *x, const std::vector<float> &u, float *y, const Wino<M> &g, Gemm *sgemm) {
  constexpr int N = Wino<M>::N;
  const int64_t block = g.Block(), blocks = (g.Tiles() + block - 1) / block;
  ParallelFor(blocks, kSplit, [&](int64_t lo, int64_t hi, int) {
    std::vector<float> v(N * N * block * g.C), m(N * N * block * g.O);
    Scratch<M> s(g);
    for (int64_t n = lo; n < hi; ++n) {
      const int64_t t0 = n * block, t1 = std::min(g.Tiles(), t0 + block);
      for (int64_t i = t0; i < t1; ++i) InputTransform(x, g, i, &s, v.data() + (i - t0) * g.C, block * g.C);
      for (int k = 0; k < N * N; ++k)
        (*sgemm)('N', 'N', t1 - t0, g.O, g.C, v.data() + k * block * g.C, g.C, u.data() + k * g.C * g.O, g.O, 0.f,
                 m.data() + k * block * g.O, g.O);
      for (int64_t i = t0; i < t1; ++i) OutputTransform(m.data() + (i - t0) * g.O, block * g.O, g, i, y, &s);
    }
  });
}

// dw [O, C, 3, 3] = G^T dU G of the sums over tiles dU[k] = V[k]^T D[k].
template <int M>
void WinogradWeightGrad(const float *x, const float *dy, float *dw, const Wino<M> &g, Gemm *sgemm) {
  constexpr int N = Wino<M>::N;
  const int64_t block = g.Block(), blocks = (g.Tiles() + block - 1) / block, size = N * N * g.C * g.O;
  std::vector<float> part(static_cast<size_t>(MaxThreads()) * size, 0.f);
  const int threads = ParallelFor(blocks, kSplit, [&](int64_t lo, int64_t hi, int t) {
    std::vector<float> v(N * N * block * g.C), d(N * N * block * g.O);
    Scratch<M> s(g);
    float *mine = part.data() + static_cast<size_t>(t) * size;
    for (int64_t n = lo; n < hi; ++n) {
      const int64_t t0 = n * block, t1 = std::min(g.Tiles(), t0 + block);
      for (int64_t i = t0; i < t1; ++i) {
        InputTransform(x, g, i, &s, v.data() + (i - t0) * g.C, block * g.C);
        GradTransform(dy, g, i, d.data() + (i - t0) * g.O, block * g.O, &s);
      }
      for (int k = 0; k < N * N; ++k)
        (*sgemm)('T', 'N', g.C, g.O, t1 - t0, v.data() + k * block * g.C, g.C, d.data() + k * block * g.O, g.O, 1.f,
                 mine + k * g.C * g.O, g.O);
    }
  });
  ParallelFor(g.C, N * N * g.O * threads, [&](int64_t lo, int64_t hi, int) {
    for (int64_t c = lo; c < hi; ++c)
      for (int64_t o = 0; o < g.O; ++o) {
        double du[N * N], t[3 * N];
        for (int k = 0; k < N * N; ++k) {
          du[k] = 0.0;
          for (int i = 0; i < threads; ++i) du[k] += part[static_cast<size_t>(i) * size + (k * g.C + c) * g.O + o];
        }
        for (int i = 0; i < 3; ++i)  // G^T dU
          for (int j = 0; j < N; ++j) {
            t[i * N + j] = 0.0;
            for (int k = 0; k < N; ++k) t[i * N + j] += Transform<M>::G(k, i) * du[k * N + j];
          }
        float *out = dw + (o * g.C + c) * 9;
        for (int i = 0; i < 3; ++i)  // (G^T dU) G
          for (int j = 0; j < 3; ++j) {
            double v = 0.0;
            for (int k = 0; k < N; ++k) v += t[i * N + k] * Transform<M>::G(k, j);
            out[i * 3 + j] = static_cast<float>(v);
          }
      }
  });
}

// Whether F(4x4, 3x3) beats F(2x2, 3x3) for B outputs of Ho x Wo: with at least 1024 tiles of 4x4 (each
// pass transforms the weight once, 36 values per pair of channels, and streams them once per block of
// tiles; with fewer tiles that cost outweighs the smaller products) on maps of at least 8x8.
bool LargeTiles(int64_t B, int64_t Ho, int64_t Wo) {
  return std::min(Ho, Wo) >= 8 && B * ((Ho + 3) / 4) * ((Wo + 3) / 4) >= 1024;
}

template <int M>
int WinogradForward(const float *x, const float *w, float *y, const Conv &g, Gemm *sgemm) {
  WinogradConv(x, WinogradWeights<M>(w, g.C, g.O, false), y, Wino<M>(g.B, g.H, g.W, g.C, g.O, g.Ho, g.Wo, g.pt, g.pl),
               sgemm);
  return sgemm->Status();
}

// The input gradient: the forward pass of dy with the flipped kernel, padded 2 - pt and 2 - pl.
template <int M>
int WinogradBackwardInput(const float *dy, const float *w, float *dx, const Conv &g, Gemm *sgemm) {
  WinogradConv(dy, WinogradWeights<M>(w, g.O, g.C, true), dx,
               Wino<M>(g.B, g.Ho, g.Wo, g.O, g.C, g.H, g.W, 2 - g.pt, 2 - g.pl), sgemm);
  return sgemm->Status();
}

template <int M>
int WinogradBackwardWeight(const float *x, const float *dy, float *dw, const Conv &g, Gemm *sgemm) {
  WinogradWeightGrad(x, dy, dw, Wino<M>(g.B, g.H, g.W, g.C, g.O, g.Ho, g.Wo, g.pt, g.pl), sgemm);
  return sgemm->Status();
}

// ---- the general path: windows copied tile by tile, one matrix product per tile ----------------------

// f(p0, p1) for every tile of ``tile`` output pixels in [lo, hi).
template <typename F>
void Tiles(int64_t tile, int64_t lo, int64_t hi, F f) {
  for (int64_t p0 = lo; p0 < hi; p0 += tile) f(p0, std::min(hi, p0 + tile));
}

// f(p0, p1, cols) for every tile of ``tile`` output pixels, the tiles shared out among the threads; cols is
// the thread's buffer of tile x Columns() floats. Returns the thread count.
template <typename F>
int ParallelTiles(const Conv &g, int64_t tile, F f) {
  const int64_t tiles = (g.Pixels() + tile - 1) / tile;
  return ParallelFor(tiles, kSplit, [&](int64_t lo, int64_t hi, int t) {
    std::vector<float> cols(tile * g.Columns());
    Tiles(tile, lo * tile, std::min(hi * tile, g.Pixels()), [&](int64_t p0, int64_t p1) { f(p0, p1, cols.data(), t); });
  });
}

int Forward(const float *x, const float *w, float *y, const Conv &g) {
  Gemm sgemm;
  if (sgemm.f == nullptr) return 1;
  if (g.Winograd())
    return LargeTiles(g.B, g.Ho, g.Wo) ? WinogradForward<4>(x, w, y, g, &sgemm)
                                       : WinogradForward<2>(x, w, y, g, &sgemm);
  const std::vector<float> m = TapMajor(w, g);
  ParallelTiles(g, g.Tile(1), [&](int64_t p0, int64_t p1, float *cols, int) {
    Im2Col(x, g, p0, p1, cols);
    sgemm('N', 'T', p1 - p0, g.O, g.Columns(), cols, g.Columns(), m.data(), g.Columns(), 0.f, y + p0 * g.O, g.O);
  });
  return sgemm.Status();
}

int BackwardWeight(const float *x, const float *dy, float *dw, const Conv &g) {
  Gemm sgemm;
  if (sgemm.f == nullptr) return 1;
  if (g.Winograd())
    return LargeTiles(g.B, g.Ho, g.Wo) ? WinogradBackwardWeight<4>(x, dy, dw, g, &sgemm)
                                       : WinogradBackwardWeight<2>(x, dy, dw, g, &sgemm);
  const int64_t size = g.O * g.Columns();
  std::vector<float> part(static_cast<size_t>(MaxThreads()) * size, 0.f);
  const int threads = ParallelTiles(g, g.Tile(2), [&](int64_t p0, int64_t p1, float *cols, int t) {
    Im2Col(x, g, p0, p1, cols);
    sgemm('T', 'N', g.O, g.Columns(), p1 - p0, dy + p0 * g.O, g.O, cols, g.Columns(), 1.f,
          part.data() + static_cast<size_t>(t) * size, g.Columns());
  });
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t t = 0; t < g.Taps(); ++t)
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t at = (o * g.Taps() + t) * g.C + c;
        double sum = 0.0;
        for (int i = 0; i < threads; ++i) sum += part[static_cast<size_t>(i) * size + at];
        dw[(o * g.C + c) * g.Taps() + t] = static_cast<float>(sum);
      }
  return sgemm.Status();
}

int BackwardInput(const float *dy, const float *w, float *dx, const Conv &g) {
  Gemm sgemm;
  if (sgemm.f == nullptr) return 1;
  if (g.Winograd())  // stride 1 "same": the input has the output's size
    return LargeTiles(g.B, g.H, g.W) ? WinogradBackwardInput<4>(dy, w, dx, g, &sgemm)
                                     : WinogradBackwardInput<2>(dy, w, dx, g, &sgemm);
  const std::vector<float> m = TapMajor(w, g);
  const int64_t size = g.B * g.H * g.W * g.C;
  ParallelFor(size / 4096 + 1, kSplit, [&](int64_t lo, int64_t hi, int) {
    std::fill(dx + std::min(size, lo * 4096), dx + std::min(size, hi * 4096), 0.f);
  });
  // Chunks of output rows (b * Ho + oy); chunks two apart never reach the same input row.
  const int64_t rows = g.B * g.Ho, reach = (g.k - 1) * g.d / g.s + 1;
  const int64_t chunk = std::max(reach, (rows + 2 * MaxThreads() - 1) / (2 * MaxThreads()));
  const int64_t chunks = (rows + chunk - 1) / chunk;
  for (int64_t round = 0; round < 2; ++round) {
    ParallelFor((chunks - round + 1) / 2, kSplit, [&](int64_t lo, int64_t hi, int) {
      std::vector<float> dcols(g.Tile(4) * g.Columns());
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t first = (2 * i + round) * chunk * g.Wo;
        const int64_t last = std::min(rows, (2 * i + round + 1) * chunk) * g.Wo;
        Tiles(g.Tile(4), first, last, [&](int64_t p0, int64_t p1) {
          sgemm('N', 'N', p1 - p0, g.Columns(), g.O, dy + p0 * g.O, g.O, m.data(), g.Columns(), 0.f,
                dcols.data(), g.Columns());
          Col2Im(dcols.data(), g, p0, p1, dx);
        });
      }
    });
  }
  return sgemm.Status();
}

}  // namespace

// MindSpore "aot" entry points: inputs then outputs in p, their shapes in sh.
#define F(i) static_cast<float *>(p[i])
#define KERNEL(name) extern "C" int name(int, void **p, int *, int64_t **sh, const char **, void *, void *)

KERNEL(DenseConvForward) { return Forward(F(0), F(1), F(3), Conv(sh[0], sh[3], p[2])); }
KERNEL(DenseConvBackwardInput) { return BackwardInput(F(0), F(1), F(4), Conv(sh[2], sh[0], p[3])); }
KERNEL(DenseConvBackwardWeight) { return BackwardWeight(F(0), F(1), F(4), Conv(sh[0], sh[1], p[3])); }
