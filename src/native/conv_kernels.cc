// Fast CPU kernels of the fast formulation of src/models/layers.py, wrapped as ops.Custom "aot" in src/native/kernels.py.
//
// NHWC float32 kernels, parallel over rows (std::thread), vectorised over channels:
// * DwForward{S}(x, w) -> y, DwBackwardInput{S}(dy, w, x) -> dx, DwBackwardWeight{S}(x, dy, w) -> dw:
//   3x3 depthwise convolution with weight [C, 1, 3, 3], TF "same" padding, stride S (1 or 2); the same for
//   5x5 (weight [C, 1, 5, 5]) as Dw5Forward{S}, Dw5BackwardInput{S}, Dw5BackwardWeight{S};
// * BnForward{R}(x, gamma, beta, moving_mean, moving_var, settings) -> (y, batch mean, biased batch variance,
//   new moving mean, new moving variance) and BnBackward{R}: training BatchNorm then ReLU6 (R=1) or
//   nothing (R=0), moving averages kept as nn.BatchNorm2d keeps them (unbiased variance);
// * BnApply{R}(x, gamma, beta, mean, var, settings) -> y and BnApplyBackward{R}: inference BatchNorm (+ ReLU6);
// * MaxPoolForward(x, geometry) -> y and MaxPoolBackward(dy, x, geometry) -> dx: max pooling over k x k
//   windows at stride s (geometry int64 [k, s]), TF "same" padding, the gradient going to the first largest
//   input of each window (recomputed from x, so nothing but x is kept for the backward pass).
// settings is the layer's own float64 [eps, momentum] (momentum as nn.BatchNorm2d takes it: the weight of
// the old moving average), so every layer normalises with its own eps.
// Sums over rows are deterministic for a given thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>
#include <sched.h>

#include "parallel.h"
#include "vec.h"

namespace {

using ssd_native::MaxThreads;
using ssd_native::ParallelFor;
using ssd_native::Vec;
using ssd_native::Load;
using ssd_native::Store;
using ssd_native::ForChannelBlocks;

// A BatchNorm layer's settings: its eps and the weight of the old moving average.
struct BnSettings {
  double eps, momentum;
};

BnSettings Settings(const void *p) {
  const double *d = static_cast<const double *>(p);
  return {d[0], d[1]};
}

// A K x K "same" window on NHWC tensors: input [B, H, W, C], output [B, Ho, Wo, C].
struct Geo {
  int64_t B, H, W, C, Ho, Wo, pt, pl, s, k;
  Geo(const int64_t *in, const int64_t *out, int64_t stride, int64_t kernel)
      : B(in[0]), H(in[1]), W(in[2]), C(in[3]), Ho(out[1]), Wo(out[2]), s(stride), k(kernel) {
    pt = std::max<int64_t>((Ho - 1) * s + k - H, 0) / 2;
    pl = std::max<int64_t>((Wo - 1) * s + k - W, 0) / 2;
  }
  // Output index along one axis that tap t reads input i from, or -1.
  int64_t Source(int64_t i, int64_t pad, int t, int64_t size) const {
    const int64_t u = i + pad - t;
    return (u < 0 || u % s != 0 || u / s >= size) ? -1 : u / s;
  }
};

// Weight [C, 1, K, K] -> [K*K, C], so that channel loops are contiguous.
std::vector<float> TapsFirst(const float *w, int64_t C, int taps) {
  std::vector<float> t(taps * C);
  for (int64_t c = 0; c < C; ++c)
    for (int k = 0; k < taps; ++k) t[k * C + c] = w[c * taps + k];
  return t;
}

// The K*K taps of channels [c0, c0 + W) in registers.
template <int W, int K> inline void LoadTaps(const float *taps, int64_t C, int64_t c0, Vec<W> *k) {
  for (int t = 0; t < K * K; ++t) k[t] = Load<W>(taps + t * C + c0);
}

// Output columns [lo, hi) whose K input columns ox*s - pl + 0..K-1 all lie inside [0, W).
struct Interior {
  int64_t lo, hi;
  explicit Interior(const Geo &g) {
    lo = std::min<int64_t>((g.pl + g.s - 1) / g.s, g.Wo);
    hi = std::max<int64_t>(std::min<int64_t>(g.W + g.pl - g.k >= 0 ? (g.W + g.pl - g.k) / g.s + 1 : 0, g.Wo), lo);
  }
};

// The K input rows under output row ``row`` (b * Ho + oy); rows in the padding point at ``zeros``.
template <int K>
inline void WindowRows(const float *x, const Geo &g, int64_t row, const float *zeros, const float **rows) {
  const int64_t b = row / g.Ho, oy = row % g.Ho;
  for (int ky = 0; ky < K; ++ky) {
    const int64_t iy = oy * g.s + ky - g.pt;
    rows[ky] = (iy < 0 || iy >= g.H) ? zeros : x + (b * g.H + iy) * g.W * g.C;
  }
}

// Sum over the K*K taps of k[t] * rows[t / K][ox * s - pl + t % K] for channels [c0, c0 + W).
template <int W, int K, bool kChecked>
inline Vec<W> WindowSum(const Vec<W> *k, const float *const *rows, const Geo &g, int64_t ox, int64_t c0) {
  Vec<W> acc = {};
  const int64_t ix0 = ox * g.s - g.pl;
  for (int t = 0; t < K * K; ++t) {
    const int64_t ix = ix0 + t % K;
    if (!kChecked || (ix >= 0 && ix < g.W)) acc += k[t] * Load<W>(rows[t / K] + ix * g.C + c0);
  }
  return acc;
}

// Stride 1, four neighbouring outputs at once from the K + 3 input columns col0..col0+K+2 of each of the
// K rows, so that every input vector is loaded once instead of K times. Output i, tap (ky, kx) reads
// column col0 + i + kx (forward), or col0 + i + K - 1 - kx (kFlip: the input gradient); taps are added in
// the order WindowSum / TransposedSum add them.
template <int W, int K, bool kFlip>
inline void FourOutputs(const Vec<W> *k, const float *const *rows, int64_t col0, int64_t C, int64_t c0, float *out) {
  Vec<W> a[4] = {};
  for (int ky = 0; ky < K; ++ky) {
    Vec<W> v[K + 3];
    const float *r = rows[ky] + col0 * C + c0;
    for (int j = 0; j < K + 3; ++j) v[j] = Load<W>(r + j * C);
    for (int kx = 0; kx < K; ++kx)
      for (int i = 0; i < 4; ++i) a[i] += k[ky * K + kx] * v[i + (kFlip ? K - 1 - kx : kx)];
  }
  for (int i = 0; i < 4; ++i) Store<W>(out + i * C, a[i]);
}

template <int K>
void DwForward(const float *x, const float *w, float *y, const Geo &g) {
  const std::vector<float> taps = TapsFirst(w, g.C, K * K), zeros(g.W * g.C, 0.f);
  const Interior in(g);
  ParallelFor(g.B * g.Ho, (K * K + 1) * g.Wo * g.C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      const float *rows[K];
      WindowRows<K>(x, g, row, zeros.data(), rows);
      float *out = y + row * g.Wo * g.C;
      ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
        constexpr int W = decltype(width)::value;
        Vec<W> k[K * K];
        LoadTaps<W, K>(taps.data(), g.C, c0, k);
        for (int64_t ox = 0; ox < in.lo; ++ox)
          Store<W>(out + ox * g.C + c0, WindowSum<W, K, true>(k, rows, g, ox, c0));
        int64_t ox = in.lo;
        if (g.s == 1)
          for (; ox + 4 <= in.hi; ox += 4) FourOutputs<W, K, false>(k, rows, ox - g.pl, g.C, c0, out + ox * g.C + c0);
        for (; ox < in.hi; ++ox) Store<W>(out + ox * g.C + c0, WindowSum<W, K, false>(k, rows, g, ox, c0));
        for (int64_t ox = in.hi; ox < g.Wo; ++ox)
          Store<W>(out + ox * g.C + c0, WindowSum<W, K, true>(k, rows, g, ox, c0));
      });
    }
  });
}

// dx at input column ix of channels [c0, c0 + W): the taps whose output column (ix + pl - kx) / S exists.
template <int W, int K, int S, bool kChecked>
inline Vec<W> TransposedSum(const Vec<W> *k, const float *const *rows, const Geo &g, int64_t ix, int64_t c0) {
  Vec<W> acc = {};
  for (int t = 0; t < K * K; ++t) {
    const int64_t u = ix + g.pl - t % K, ox = u / S;  // stride as a constant: / and % are shifts
    if (u % S == 0 && (!kChecked || (u >= 0 && ox < g.Wo))) acc += k[t] * Load<W>(rows[t / K] + ox * g.C + c0);
  }
  return acc;
}

template <int K, int S>
void DwBackwardInput(const float *dy, const float *w, float *dx, const Geo &g) {
  const std::vector<float> taps = TapsFirst(w, g.C, K * K), zeros(g.Wo * g.C, 0.f);
  const int64_t lo_x = std::min<int64_t>(std::max<int64_t>(K - 1 - g.pl, 0), g.W);  // u >= 0 for every kx
  const int64_t hi_x = std::max<int64_t>(std::min<int64_t>((g.Wo - 1) * S - g.pl + 1, g.W), lo_x);  // u / S < Wo
  ParallelFor(g.B * g.H, (K * K + 1) * g.W * g.C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.H, iy = row % g.H;
      const float *rows[K];
      for (int ky = 0; ky < K; ++ky) {
        const int64_t oy = g.Source(iy, g.pt, ky, g.Ho);
        rows[ky] = oy < 0 ? zeros.data() : dy + (b * g.Ho + oy) * g.Wo * g.C;
      }
      float *out = dx + row * g.W * g.C;
      ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
        constexpr int W = decltype(width)::value;
        Vec<W> k[K * K];
        LoadTaps<W, K>(taps.data(), g.C, c0, k);
        for (int64_t ix = 0; ix < lo_x; ++ix)
          Store<W>(out + ix * g.C + c0, TransposedSum<W, K, S, true>(k, rows, g, ix, c0));
        int64_t ix = lo_x;
        if (S == 1)
          for (; ix + 4 <= hi_x; ix += 4)
            FourOutputs<W, K, true>(k, rows, ix + g.pl - (K - 1), g.C, c0, out + ix * g.C + c0);
        for (; ix < hi_x; ++ix) Store<W>(out + ix * g.C + c0, TransposedSum<W, K, S, false>(k, rows, g, ix, c0));
        for (int64_t ix = hi_x; ix < g.W; ++ix)
          Store<W>(out + ix * g.C + c0, TransposedSum<W, K, S, true>(k, rows, g, ix, c0));
      });
    }
  });
}

// Per-thread float partial sums over at most kFlushRows rows, added to double totals between blocks of
// rows: vector adds in the row loop, a bounded float sum, and a deterministic result for a thread count.
const int64_t kFlushRows = 64;

template <int W, int K, bool kChecked>
inline void AddWindowProducts(Vec<W> *acc, const Vec<W> &gv, const float *const *rows, const Geo &g, int64_t ox,
                              int64_t c0) {
  const int64_t ix0 = ox * g.s - g.pl;
  for (int t = 0; t < K * K; ++t) {
    const int64_t ix = ix0 + t % K;
    if (!kChecked || (ix >= 0 && ix < g.W)) acc[t] += gv * Load<W>(rows[t / K] + ix * g.C + c0);
  }
}

template <int K>
void DwBackwardWeight(const float *x, const float *dy, float *dw, const Geo &g) {
  const size_t per_thread = K * K * static_cast<size_t>(g.C);
  const std::vector<float> zeros(g.W * g.C, 0.f);
  const Interior in(g);
  std::vector<double> part(static_cast<size_t>(MaxThreads()) * per_thread, 0.0);
  const int threads = ParallelFor(g.B * g.Ho, (K * K + 1) * g.Wo * g.C, [&](int64_t lo, int64_t hi, int t) {
    double *mine = part.data() + static_cast<size_t>(t) * per_thread;
    std::vector<float> block(per_thread, 0.f);
    for (int64_t row = lo; row < hi; ++row) {
      const float *rows[K], *grad = dy + row * g.Wo * g.C;
      WindowRows<K>(x, g, row, zeros.data(), rows);
      ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
        constexpr int W = decltype(width)::value;
        Vec<W> acc[K * K] = {};
        for (int64_t ox = 0; ox < in.lo; ++ox)
          AddWindowProducts<W, K, true>(acc, Load<W>(grad + ox * g.C + c0), rows, g, ox, c0);
        for (int64_t ox = in.lo; ox < in.hi; ++ox)
          AddWindowProducts<W, K, false>(acc, Load<W>(grad + ox * g.C + c0), rows, g, ox, c0);
        for (int64_t ox = in.hi; ox < g.Wo; ++ox)
          AddWindowProducts<W, K, true>(acc, Load<W>(grad + ox * g.C + c0), rows, g, ox, c0);
        for (int t = 0; t < K * K; ++t) {
          float *sum = block.data() + t * g.C + c0;
          Store<W>(sum, Load<W>(sum) + acc[t]);
        }
      });
      if ((row - lo + 1) % kFlushRows == 0 || row + 1 == hi) {
        for (size_t i = 0; i < per_thread; ++i) mine[i] += block[i];
        std::fill(block.begin(), block.end(), 0.f);
      }
    }
  });
  for (int64_t c = 0; c < g.C; ++c)
    for (int t = 0; t < K * K; ++t) {
      double s = 0.0;
      for (int th = 0; th < threads; ++th) s += part[static_cast<size_t>(th) * per_thread + t * g.C + c];
      dw[c * K * K + t] = static_cast<float>(s);
    }
}

// Per-channel sums s1, s2 of what f(row, a1, a2) adds for each row of an [N, C] tensor: float partials
// over blocks of 256 rows, double across blocks and threads (in thread order: deterministic).
template <typename F>
void ChannelSums(int64_t N, int64_t C, double *s1, double *s2, F f) {
  std::vector<double> part(static_cast<size_t>(MaxThreads()) * 2 * C, 0.0);
  const int threads = ParallelFor(N, C, [&](int64_t lo, int64_t hi, int t) {
    double *p1 = part.data() + static_cast<size_t>(t) * 2 * C, *p2 = p1 + C;
    std::vector<float> a1(C), a2(C);
    for (int64_t r0 = lo; r0 < hi; r0 += 256) {
      std::fill(a1.begin(), a1.end(), 0.f);
      std::fill(a2.begin(), a2.end(), 0.f);
      for (int64_t r = r0; r < std::min(hi, r0 + 256); ++r) f(r, a1.data(), a2.data());
      for (int64_t c = 0; c < C; ++c) {
        p1[c] += a1[c];
        p2[c] += a2[c];
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    s1[c] = s2[c] = 0.0;
    for (int t = 0; t < threads; ++t) {
      s1[c] += part[static_cast<size_t>(t) * 2 * C + c];
      s2[c] += part[static_cast<size_t>(t) * 2 * C + C + c];
    }
  }
}

template <bool R>
inline float Activate(float t) {
  return R ? std::min(std::max(t, 0.f), 6.f) : t;
}

template <bool R>
inline float PassGrad(float t, float g) {
  return (!R || (t > 0.f && t < 6.f)) ? g : 0.f;
}

// y = Activate(x * scale + shift) per channel, rows [N, C] in parallel.
template <bool R>
void ScaleShift(const float *x, float *y, const float *sc, const float *sh, int64_t N, int64_t C) {
  ParallelFor(N, 2 * C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t r = lo; r < hi; ++r) {
      const float *p = x + r * C;
      float *q = y + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) q[c] = Activate<R>(p[c] * sc[c] + sh[c]);
    }
  });
}

template <bool R>
void BnForward(const float *x, const float *gamma, const float *beta, const float *moving_mean,
               const float *moving_var, BnSettings bn, float *y, float *mean, float *var, float *new_mean,
               float *new_var, int64_t N, int64_t C) {
  std::vector<double> s1(C), s2(C);
  const float *k = x;  // the first row as shift keeps E[d^2] - E[d]^2 accurate when |mean| >> std
  ChannelSums(N, C, s1.data(), s2.data(), [&](int64_t r, float *a1, float *a2) {
    const float *p = x + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float d = p[c] - k[c];
      a1[c] += d;
      a2[c] += d * d;
    }
  });
  std::vector<float> scale(C), shift(C);
  for (int64_t c = 0; c < C; ++c) {
    const double m = s1[c] / N, v = std::max(s2[c] / N - m * m, 0.0);
    scale[c] = static_cast<float>(gamma[c] / std::sqrt(v + bn.eps));
    shift[c] = static_cast<float>(beta[c] - (m + k[c]) * scale[c]);
    mean[c] = static_cast<float>(m + k[c]);
    var[c] = static_cast<float>(v);
    new_mean[c] = static_cast<float>(bn.momentum * moving_mean[c] + (1.0 - bn.momentum) * (m + k[c]));
    const double unbiased = v * N / std::max<int64_t>(N - 1, 1);
    new_var[c] = static_cast<float>(bn.momentum * moving_var[c] + (1.0 - bn.momentum) * unbiased);
  }
  ScaleShift<R>(x, y, scale.data(), shift.data(), N, C);
}

template <bool R>
void BnBackward(const float *dy, const float *x, const float *gamma, const float *beta, const float *mean,
                const float *var, double eps, float *dx, float *dgamma, float *dbeta, int64_t N, int64_t C) {
  std::vector<float> scale(C), shift(C), rstd(C), a(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    rstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
    scale[c] = gamma[c] * rstd[c];
    shift[c] = beta[c] - mean[c] * scale[c];
  }
  const float *sc = scale.data(), *sh = shift.data(), *m = mean;
  std::vector<double> sg(C), sgx(C);
  ChannelSums(N, C, sg.data(), sgx.data(), [&](int64_t r, float *a1, float *a2) {
    const float *p = x + r * C, *g = dy + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float gi = PassGrad<R>(p[c] * sc[c] + sh[c], g[c]);
      a1[c] += gi;
      a2[c] += gi * (p[c] - m[c]);
    }
  });
  for (int64_t c = 0; c < C; ++c) {  // dx = scale * (g - mean(g) - xhat * mean(g * xhat))
    dbeta[c] = static_cast<float>(sg[c]);
    dgamma[c] = static_cast<float>(sgx[c] * rstd[c]);
    a[c] = static_cast<float>(-scale[c] * sg[c] / N);
    b[c] = static_cast<float>(-scale[c] * rstd[c] * rstd[c] * sgx[c] / N);
  }
  const float *pa = a.data(), *pb = b.data();
  ParallelFor(N, 3 * C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t r = lo; r < hi; ++r) {
      const float *p = x + r * C, *g = dy + r * C;
      float *q = dx + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c)
        q[c] = sc[c] * PassGrad<R>(p[c] * sc[c] + sh[c], g[c]) + pa[c] + pb[c] * (p[c] - m[c]);
    }
  });
}

// Inference BatchNorm (given statistics) + optional ReLU6, and its gradient for gamma, beta and x.
void Affine(const float *gamma, const float *beta, const float *mean, const float *var, double eps, int64_t C,
            std::vector<float> *scale, std::vector<float> *shift, std::vector<float> *rstd) {
  for (int64_t c = 0; c < C; ++c) {
    (*rstd)[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
    (*scale)[c] = gamma[c] * (*rstd)[c];
    (*shift)[c] = beta[c] - mean[c] * (*scale)[c];
  }
}

template <bool R>
void BnApply(const float *x, const float *gamma, const float *beta, const float *mean, const float *var, double eps,
             float *y, int64_t N, int64_t C) {
  std::vector<float> scale(C), shift(C), rstd(C);
  Affine(gamma, beta, mean, var, eps, C, &scale, &shift, &rstd);
  ScaleShift<R>(x, y, scale.data(), shift.data(), N, C);
}

template <bool R>
void BnApplyBackward(const float *dy, const float *x, const float *gamma, const float *beta, const float *mean,
                     const float *var, double eps, float *dx, float *dgamma, float *dbeta, int64_t N, int64_t C) {
  std::vector<float> scale(C), shift(C), rstd(C);
  Affine(gamma, beta, mean, var, eps, C, &scale, &shift, &rstd);
  const float *sc = scale.data(), *sh = shift.data(), *m = mean;
  std::vector<double> sg(C), sgx(C);
  ChannelSums(N, C, sg.data(), sgx.data(), [&](int64_t r, float *a1, float *a2) {
    const float *p = x + r * C, *g = dy + r * C;
    float *q = dx + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float gi = PassGrad<R>(p[c] * sc[c] + sh[c], g[c]);
      q[c] = gi * sc[c];
      a1[c] += gi;
      a2[c] += gi * (p[c] - m[c]);
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    dbeta[c] = static_cast<float>(sg[c]);
    dgamma[c] = static_cast<float>(sgx[c] * rstd[c]);
  }
}

// ---- max pooling: k x k windows, stride s, TF "same" padding (cells in the padding never win) ----

struct Pool {
  int64_t B, H, W, C, Ho, Wo, k, s, pt, pl;
  Pool(const int64_t *in, const int64_t *out, const void *geometry)
      : B(in[0]), H(in[1]), W(in[2]), C(in[3]), Ho(out[1]), Wo(out[2]) {
    const int64_t *g = static_cast<const int64_t *>(geometry);
    k = g[0], s = g[1];
    pt = std::max<int64_t>((Ho - 1) * s + k - H, 0) / 2;
    pl = std::max<int64_t>((Wo - 1) * s + k - W, 0) / 2;
  }
};

// Per channel, the largest input in the window of output (b, oy, ox) and its tap ky * k + kx (the first of
// equal values in row-major order), over the taps inside the input.
void WindowMax(const float *x, const Pool &g, int64_t b, int64_t oy, int64_t ox, float *best, int32_t *tap) {
  bool first = true;
  for (int64_t ky = 0; ky < g.k; ++ky) {
    const int64_t iy = oy * g.s - g.pt + ky;
    if (iy < 0 || iy >= g.H) continue;
    for (int64_t kx = 0; kx < g.k; ++kx) {
      const int64_t ix = ox * g.s - g.pl + kx;
      if (ix < 0 || ix >= g.W) continue;
      const float *in = x + ((b * g.H + iy) * g.W + ix) * g.C;
      const int32_t t = static_cast<int32_t>(ky * g.k + kx);
      if (first) {
        std::memcpy(best, in, g.C * sizeof(float));
        std::fill(tap, tap + g.C, t);
        first = false;
        continue;
      }
#pragma omp simd
      for (int64_t c = 0; c < g.C; ++c) {
        const bool larger = in[c] > best[c];
        best[c] = larger ? in[c] : best[c];
        tap[c] = larger ? t : tap[c];
      }
    }
  }
}

void MaxPoolForward(const float *x, float *y, const Pool &g) {
  ParallelFor(g.B * g.Ho, g.k * g.k * g.Wo * g.C, [&](int64_t lo, int64_t hi, int) {
    std::vector<int32_t> tap(g.C);
    for (int64_t row = lo; row < hi; ++row)
      for (int64_t ox = 0; ox < g.Wo; ++ox)
        WindowMax(x, g, row / g.Ho, row % g.Ho, ox, y + (row * g.Wo + ox) * g.C, tap.data());
  });
}

// dx, one input row per job: the windows covering the row are maximised again and each output's gradient
// goes to its winning input if that lies in this row, so no two threads write the same element.
void MaxPoolBackward(const float *dy, const float *x, float *dx, const Pool &g) {
  ParallelFor(g.B * g.H, g.k * g.k * g.W * g.C, [&](int64_t lo, int64_t hi, int) {
    std::vector<float> best(g.C);
    std::vector<int32_t> tap(g.C);
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.H, iy = row % g.H;
      float *out = dx + row * g.W * g.C;
      std::fill(out, out + g.W * g.C, 0.f);
      for (int64_t ky = 0; ky < g.k; ++ky) {
        const int64_t u = iy + g.pt - ky, oy = u / g.s;
        if (u < 0 || u % g.s != 0 || oy >= g.Ho) continue;
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          WindowMax(x, g, b, oy, ox, best.data(), tap.data());
          const float *grad = dy + ((b * g.Ho + oy) * g.Wo + ox) * g.C;
          float *row_out = out + (ox * g.s - g.pl) * g.C;
          const int32_t first = static_cast<int32_t>(ky * g.k), k = static_cast<int32_t>(g.k);
          for (int64_t c = 0; c < g.C; ++c) {
            const int32_t kx = tap[c] - first;  // the winner's column if it lies in this row
            if (kx >= 0 && kx < k) row_out[kx * g.C + c] += grad[c];
          }
        }
      }
    }
  });
}

int64_t Rows(const int64_t *shape, int ndim) {
  int64_t r = 1;
  for (int i = 0; i + 1 < ndim; ++i) r *= shape[i];
  return r;
}

}  // namespace

// MindSpore "aot" entry points: inputs then outputs in p, their shapes in sh.
#define F(i) static_cast<float *>(p[i])
#define KERNEL(name) extern "C" int name(int, void **p, int *nd, int64_t **sh, const char **, void *, void *)

// Depthwise K x K entry points: DwForward{S}, ... for K = 3 (the names the 3x3 kernels always had), Dw5Forward{S}, ...
#define WINDOW_KERNELS(P, K, S)                                                                            \
  KERNEL(P##Forward##S) { DwForward<K>(F(0), F(1), F(2), Geo(sh[0], sh[2], S, K)); return 0; }              \
  KERNEL(P##BackwardInput##S) { DwBackwardInput<K, S>(F(0), F(1), F(3), Geo(sh[2], sh[0], S, K)); return 0; } \
  KERNEL(P##BackwardWeight##S) { DwBackwardWeight<K>(F(0), F(1), F(3), Geo(sh[0], sh[1], S, K)); return 0; }
WINDOW_KERNELS(Dw, 3, 1)
WINDOW_KERNELS(Dw, 3, 2)
WINDOW_KERNELS(Dw5, 5, 1)
WINDOW_KERNELS(Dw5, 5, 2)

#define BN_KERNELS(R)                                                                                 \
  KERNEL(BnForward##R) {                                                                              \
    BnForward<R>(F(0), F(1), F(2), F(3), F(4), Settings(p[5]), F(6), F(7), F(8), F(9), F(10),          \
                 Rows(sh[0], nd[0]), sh[0][nd[0] - 1]);                                               \
    return 0;                                                                                         \
  }                                                                                                   \
  KERNEL(BnBackward##R) {                                                                             \
    BnBackward<R>(F(0), F(1), F(2), F(3), F(4), F(5), Settings(p[6]).eps, F(7), F(8), F(9),            \
                  Rows(sh[0], nd[0]), sh[0][nd[0] - 1]);                                              \
    return 0;                                                                                         \
  }
BN_KERNELS(0)
BN_KERNELS(1)

#define BN_APPLY_KERNELS(R)                                                                           \
  KERNEL(BnApply##R) {                                                                                \
    BnApply<R>(F(0), F(1), F(2), F(3), F(4), Settings(p[5]).eps, F(6), Rows(sh[0], nd[0]),             \
               sh[0][nd[0] - 1]);                                                                     \
    return 0;                                                                                         \
  }                                                                                                   \
  KERNEL(BnApplyBackward##R) {                                                                        \
    BnApplyBackward<R>(F(0), F(1), F(2), F(3), F(4), F(5), Settings(p[6]).eps, F(7), F(8), F(9),       \
                       Rows(sh[0], nd[0]), sh[0][nd[0] - 1]);                                         \
    return 0;                                                                                         \
  }
BN_APPLY_KERNELS(0)
BN_APPLY_KERNELS(1)

// x [B, H, W, C], geometry int64 [k, s] -> y [B, ceil(H / s), ceil(W / s), C]; (dy, x, geometry) -> dx.
KERNEL(MaxPoolForward) { MaxPoolForward(F(0), F(2), Pool(sh[0], sh[2], p[1])); return 0; }
KERNEL(MaxPoolBackward) { MaxPoolBackward(F(0), F(1), F(3), Pool(sh[1], sh[0], p[2])); return 0; }
