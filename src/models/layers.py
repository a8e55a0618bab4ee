"""Convolution building blocks shared by the SSD backbones, extra layers and heads.

Every block exists in two formulations that hold the same parameters (names, shapes, meaning), so a
checkpoint written by one loads into the other and into the MindSpore model zoo's SSD:

* plain (``fast=False``): NCHW tensors and MindSpore's Conv2D/BatchNorm primitives, as the model zoo
  builds them; right for Ascend and GPU.
* fast (``fast=True``, CPU): MindSpore 2.10's CPU Conv2D runs every 3x3 convolution through oneDNN's
  reference kernel (about 3 s for one 96-channel depthwise layer at 150x150, batch 8), and its
  BatchNorm + ReLU6 pair makes five passes over memory. The fast formulation keeps tensors channels
  last (NHWC) so that every 1x1 convolution is one large matrix product (oneDNN's fast path), and
  runs the 3x3 depthwise convolutions, the stem's im2col and training-mode BatchNorm (+ ReLU6) in a
  small C++ kernel library (forward and gradients, compiled once per machine, called through
  ``ops.Custom``).

Padding is TensorFlow "same" (``pad_mode='same'``) everywhere, as in the model zoo: for stride 2 on
an even input the extra row and column go at the bottom and right.
"""
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile

import mindspore as ms
from mindspore import nn, ops, Parameter
from mindspore.common.initializer import HeNormal, initializer

# BatchNorm settings of the model zoo's SSD-MobileNetV2 (eps 1e-3, moving-average momentum 0.97).
BN_EPS = 1e-3
BN_MOMENTUM = 0.97

LOGGER = logging.getLogger(__name__)

# NHWC float32 kernels, parallel over rows (std::thread), vectorised over channels:
# * DwForward{S}(x, w) -> y, DwBackwardInput{S}(dy, w, x) -> dx, DwBackwardWeight{S}(x, dy, w) -> dw:
#   3x3 depthwise convolution with weight [C, 1, 3, 3], TF "same" padding, stride S (1 or 2);
# * Im2Col{S}(x) -> cols [B, Ho, Wo, C*9] (column c*9 + ky*3 + kx) and its gradient Col2Im{S};
# * BnForward{R}(x, gamma, beta, moving_mean, moving_var) -> (y, batch mean, biased batch variance,
#   new moving mean, new moving variance) and BnBackward{R}: training BatchNorm then ReLU6 (R=1) or
#   nothing (R=0), moving averages kept as nn.BatchNorm2d keeps them (unbiased variance);
# * BnApply{R}(x, gamma, beta, mean, var) -> y and BnApplyBackward{R}: inference BatchNorm (+ ReLU6).
# Sums over rows are deterministic for a given thread count.
_KERNEL_SOURCE = r"""
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

namespace {

const double kEps = @EPS@, kMomentum = @MOMENTUM@;

// Threads: SSD_KERNEL_THREADS, else the CPUs this process may run on. Plain threads started per call
// and joined, so no idle worker spins while MindSpore's own thread pool runs the next operator.
int MaxThreads() {
  static const int n = [] {
    const char *env = std::getenv("SSD_KERNEL_THREADS");
    if (env != nullptr && std::atoi(env) > 0) return std::atoi(env);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  return n;
}

// f(lo, hi, t) over [0, n) in one contiguous range per thread t; returns the thread count. Jobs
// touching fewer than 64K floats per thread stay on the calling thread.
template <typename F>
int ParallelFor(int64_t n, int64_t floats_per_item, F f) {
  const int64_t useful = std::max<int64_t>(1, n * floats_per_item / 65536);
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({MaxThreads(), n, useful})));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    try {
      pool.emplace_back([&f, n, t, threads] { f(n * t / threads, n * (t + 1) / threads, t); });
    } catch (const std::system_error &) {  // no thread to be had: do that range here
      f(n * t / threads, n * (t + 1) / threads, t);
    }
  }
  f(0, n / threads, 0);
  for (auto &worker : pool) worker.join();
  return threads;
}

// A 3x3 "same" window on NHWC tensors: input [B, H, W, C], output [B, Ho, Wo, C].
struct Geo {
  int64_t B, H, W, C, Ho, Wo, pt, pl, s;
  Geo(const int64_t *in, const int64_t *out, int64_t stride)
      : B(in[0]), H(in[1]), W(in[2]), C(in[3]), Ho(out[1]), Wo(out[2]), s(stride) {
    pt = std::max<int64_t>((Ho - 1) * s + 3 - H, 0) / 2;
    pl = std::max<int64_t>((Wo - 1) * s + 3 - W, 0) / 2;
  }
  // Output index along one axis that tap k reads input i from, or -1.
  int64_t Source(int64_t i, int64_t pad, int k, int64_t size) const {
    const int64_t t = i + pad - k;
    return (t < 0 || t % s != 0 || t / s >= size) ? -1 : t / s;
  }
};

// Weight [C, 1, 3, 3] -> [9, C], so that channel loops are contiguous.
std::vector<float> TapsFirst(const float *w, int64_t C) {
  std::vector<float> t(9 * C);
  for (int64_t c = 0; c < C; ++c)
    for (int k = 0; k < 9; ++k) t[k * C + c] = w[c * 9 + k];
  return t;
}

// Channel blocks of W floats (GCC vector extensions; AVX-512 registers for W = 16).
template <int W> struct VecOf { typedef float type __attribute__((vector_size(4 * W))); };
template <> struct VecOf<1> { typedef float type; };
template <int W> using Vec = typename VecOf<W>::type;

template <int W> inline Vec<W> Load(const float *p) {
  Vec<W> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int W> inline void Store(float *p, const Vec<W> &v) { std::memcpy(p, &v, sizeof(v)); }

// f(width, c0) for every channel block: 16 wide, then 8, then single channels.
template <typename F>
void ForChannelBlocks(int64_t C, F f) {
  int64_t c = 0;
  for (; c + 16 <= C; c += 16) f(std::integral_constant<int, 16>(), c);
  for (; c + 8 <= C; c += 8) f(std::integral_constant<int, 8>(), c);
  for (; c < C; ++c) f(std::integral_constant<int, 1>(), c);
}

// The nine taps of channels [c0, c0 + W) in registers.
template <int W> inline void LoadTaps(const float *taps, int64_t C, int64_t c0, Vec<W> *k) {
  for (int t = 0; t < 9; ++t) k[t] = Load<W>(taps + t * C + c0);
}

void DwForward(const float *x, const float *w, float *y, const Geo &g) {
  const std::vector<float> taps = TapsFirst(w, g.C);
  ParallelFor(g.B * g.Ho, 10 * g.Wo * g.C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.Ho, oy = row % g.Ho;
      const float *rows[3];
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t iy = oy * g.s + ky - g.pt;
        rows[ky] = (iy < 0 || iy >= g.H) ? nullptr : x + (b * g.H + iy) * g.W * g.C;
      }
      ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
        constexpr int W = decltype(width)::value;
        Vec<W> k[9];
        LoadTaps<W>(taps.data(), g.C, c0, k);
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          Vec<W> acc = {};
          for (int t = 0; t < 9; ++t) {
            const int64_t ix = ox * g.s + t % 3 - g.pl;
            if (rows[t / 3] != nullptr && ix >= 0 && ix < g.W) acc += k[t] * Load<W>(rows[t / 3] + ix * g.C + c0);
          }
          Store<W>(y + (row * g.Wo + ox) * g.C + c0, acc);
        }
      });
    }
  });
}

template <int S>
void DwBackwardInput(const float *dy, const float *w, float *dx, const Geo &g) {
  const std::vector<float> taps = TapsFirst(w, g.C);
  ParallelFor(g.B * g.H, 10 * g.W * g.C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.H, iy = row % g.H;
      const float *rows[3];
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t oy = g.Source(iy, g.pt, ky, g.Ho);
        rows[ky] = oy < 0 ? nullptr : dy + (b * g.Ho + oy) * g.Wo * g.C;
      }
      ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
        constexpr int W = decltype(width)::value;
        Vec<W> k[9];
        LoadTaps<W>(taps.data(), g.C, c0, k);
        for (int64_t ix = 0; ix < g.W; ++ix) {
          Vec<W> acc = {};
          for (int t = 0; t < 9; ++t) {
            const int64_t u = ix + g.pl - t % 3, ox = u / S;  // stride as a constant: / and % are shifts
            if (rows[t / 3] != nullptr && u >= 0 && u % S == 0 && ox < g.Wo)
              acc += k[t] * Load<W>(rows[t / 3] + ox * g.C + c0);
          }
          Store<W>(dx + (row * g.W + ix) * g.C + c0, acc);
        }
      });
    }
  });
}

void DwBackwardWeight(const float *x, const float *dy, float *dw, const Geo &g) {
  std::vector<double> part(static_cast<size_t>(MaxThreads()) * 9 * g.C, 0.0);
  const int threads = ParallelFor(g.B * g.Ho, 10 * g.Wo * g.C, [&](int64_t lo, int64_t hi, int t) {
    double *mine = part.data() + static_cast<size_t>(t) * 9 * g.C;
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.Ho, oy = row % g.Ho;
      const float *rows[3], *grad = dy + row * g.Wo * g.C;
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t iy = oy * g.s + ky - g.pt;
        rows[ky] = (iy < 0 || iy >= g.H) ? nullptr : x + (b * g.H + iy) * g.W * g.C;
      }
      ForChannelBlocks(g.C, [&](auto width, int64_t c0) {
        constexpr int W = decltype(width)::value;
        Vec<W> acc[9] = {};
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          const Vec<W> gv = Load<W>(grad + ox * g.C + c0);
          for (int k = 0; k < 9; ++k) {
            const int64_t ix = ox * g.s + k % 3 - g.pl;
            if (rows[k / 3] != nullptr && ix >= 0 && ix < g.W) acc[k] += gv * Load<W>(rows[k / 3] + ix * g.C + c0);
          }
        }
        for (int k = 0; k < 9; ++k) {
          float lanes[W];
          Store<W>(lanes, acc[k]);
          for (int i = 0; i < W; ++i) mine[k * g.C + c0 + i] += lanes[i];
        }
      });
    }
  });
  for (int64_t c = 0; c < g.C; ++c)
    for (int k = 0; k < 9; ++k) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += part[(static_cast<size_t>(t) * 9 + k) * g.C + c];
      dw[c * 9 + k] = static_cast<float>(s);
    }
}

// The stem's im2col: columns [B, Ho, Wo, C*9] (column c*9 + ky*3 + kx) of 3x3 "same" windows.
void Im2Col(const float *x, float *cols, const Geo &g) {
  ParallelFor(g.B * g.Ho, 9 * g.Wo * g.C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.Ho, oy = row % g.Ho;
      for (int64_t ox = 0; ox < g.Wo; ++ox) {
        float *out = cols + (row * g.Wo + ox) * g.C * 9;
        for (int k = 0; k < 9; ++k) {
          const int64_t iy = oy * g.s + k / 3 - g.pt, ix = ox * g.s + k % 3 - g.pl;
          const bool inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
          const float *in = x + ((b * g.H + iy) * g.W + ix) * g.C;
          for (int64_t c = 0; c < g.C; ++c) out[c * 9 + k] = inside ? in[c] : 0.f;
        }
      }
    }
  });
}

void Col2Im(const float *cols, float *dx, const Geo &g) {
  ParallelFor(g.B * g.H, 9 * g.W * g.C, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.H, iy = row % g.H;
      for (int64_t ix = 0; ix < g.W; ++ix) {
        float *out = dx + (row * g.W + ix) * g.C;
        std::fill(out, out + g.C, 0.f);
        for (int k = 0; k < 9; ++k) {
          const int64_t oy = g.Source(iy, g.pt, k / 3, g.Ho), ox = g.Source(ix, g.pl, k % 3, g.Wo);
          if (oy < 0 || ox < 0) continue;
          const float *in = cols + ((b * g.Ho + oy) * g.Wo + ox) * g.C * 9;
          for (int64_t c = 0; c < g.C; ++c) out[c] += in[c * 9 + k];
        }
      }
    }
  });
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

template <bool R>
void BnForward(const float *x, const float *gamma, const float *beta, const float *moving_mean,
               const float *moving_var, float *y, float *mean, float *var, float *new_mean, float *new_var,
               int64_t N, int64_t C) {
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
    scale[c] = static_cast<float>(gamma[c] / std::sqrt(v + kEps));
    shift[c] = static_cast<float>(beta[c] - (m + k[c]) * scale[c]);
    mean[c] = static_cast<float>(m + k[c]);
    var[c] = static_cast<float>(v);
    new_mean[c] = static_cast<float>(kMomentum * moving_mean[c] + (1.0 - kMomentum) * (m + k[c]));
    const double unbiased = v * N / std::max<int64_t>(N - 1, 1);
    new_var[c] = static_cast<float>(kMomentum * moving_var[c] + (1.0 - kMomentum) * unbiased);
  }
  const float *sc = scale.data(), *sh = shift.data();
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
void BnBackward(const float *dy, const float *x, const float *gamma, const float *beta, const float *mean,
                const float *var, float *dx, float *dgamma, float *dbeta, int64_t N, int64_t C) {
  std::vector<float> scale(C), shift(C), rstd(C), a(C), b(C);
  for (int64_t c = 0; c < C; ++c) {
    rstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + kEps));
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
void Affine(const float *gamma, const float *beta, const float *mean, const float *var, int64_t C,
            std::vector<float> *scale, std::vector<float> *shift, std::vector<float> *rstd) {
  for (int64_t c = 0; c < C; ++c) {
    (*rstd)[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + kEps));
    (*scale)[c] = gamma[c] * (*rstd)[c];
    (*shift)[c] = beta[c] - mean[c] * (*scale)[c];
  }
}

template <bool R>
void BnApply(const float *x, const float *gamma, const float *beta, const float *mean, const float *var, float *y,
             int64_t N, int64_t C) {
  std::vector<float> scale(C), shift(C), rstd(C);
  Affine(gamma, beta, mean, var, C, &scale, &shift, &rstd);
  const float *sc = scale.data(), *sh = shift.data();
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
void BnApplyBackward(const float *dy, const float *x, const float *gamma, const float *beta, const float *mean,
                     const float *var, float *dx, float *dgamma, float *dbeta, int64_t N, int64_t C) {
  std::vector<float> scale(C), shift(C), rstd(C);
  Affine(gamma, beta, mean, var, C, &scale, &shift, &rstd);
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

int64_t Rows(const int64_t *shape, int ndim) {
  int64_t r = 1;
  for (int i = 0; i + 1 < ndim; ++i) r *= shape[i];
  return r;
}

}  // namespace

// MindSpore "aot" entry points: inputs then outputs in p, their shapes in sh.
#define F(i) static_cast<float *>(p[i])
#define KERNEL(name) extern "C" int name(int, void **p, int *nd, int64_t **sh, const char **, void *, void *)

#define WINDOW_KERNELS(S)                                                                             \
  KERNEL(DwForward##S) { DwForward(F(0), F(1), F(2), Geo(sh[0], sh[2], S)); return 0; }               \
  KERNEL(DwBackwardInput##S) { DwBackwardInput<S>(F(0), F(1), F(3), Geo(sh[2], sh[0], S)); return 0; }   \
  KERNEL(DwBackwardWeight##S) { DwBackwardWeight(F(0), F(1), F(3), Geo(sh[0], sh[1], S)); return 0; } \
  KERNEL(Im2Col##S) { Im2Col(F(0), F(1), Geo(sh[0], sh[1], S)); return 0; }                           \
  KERNEL(Col2Im##S) { Col2Im(F(0), F(2), Geo(sh[1], sh[0], S)); return 0; }
WINDOW_KERNELS(1)
WINDOW_KERNELS(2)

#define BN_KERNELS(R)                                                                                 \
  KERNEL(BnForward##R) {                                                                              \
    BnForward<R>(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), F(9), Rows(sh[0], nd[0]),      \
                 sh[0][nd[0] - 1]);                                                                   \
    return 0;                                                                                         \
  }                                                                                                   \
  KERNEL(BnBackward##R) {                                                                             \
    BnBackward<R>(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), Rows(sh[0], nd[0]),           \
                  sh[0][nd[0] - 1]);                                                                  \
    return 0;                                                                                         \
  }
BN_KERNELS(0)
BN_KERNELS(1)

#define BN_APPLY_KERNELS(R)                                                                           \
  KERNEL(BnApply##R) {                                                                                \
    BnApply<R>(F(0), F(1), F(2), F(3), F(4), F(5), Rows(sh[0], nd[0]), sh[0][nd[0] - 1]);             \
    return 0;                                                                                         \
  }                                                                                                   \
  KERNEL(BnApplyBackward##R) {                                                                        \
    BnApplyBackward<R>(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), Rows(sh[0], nd[0]),      \
                       sh[0][nd[0] - 1]);                                                             \
    return 0;                                                                                         \
  }
BN_APPLY_KERNELS(0)
BN_APPLY_KERNELS(1)
""".replace("@EPS@", repr(BN_EPS)).replace("@MOMENTUM@", repr(BN_MOMENTUM))


_CXX_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-pthread", "-shared", "-fPIC", "-std=c++14"]


def _cpu_fingerprint():
    """Model and ISA flags of this CPU: kernels built with -march=native must not move to another CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            lines = [line for line in info if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return os.uname().machine


def _cache_dir():
    default = os.path.join(os.path.expanduser("~"), ".cache", "ssd_mindspore")
    path = os.environ.get("SSD_KERNEL_CACHE", default)
    try:
        os.makedirs(path, exist_ok=True)
        return path
    except OSError:
        return tempfile.gettempdir()


@functools.lru_cache(maxsize=None)
def kernel_library():
    """Path of the compiled CPU kernels (built once per machine), or None when they cannot be built."""
    key = hashlib.sha1("\n".join([_KERNEL_SOURCE, " ".join(_CXX_FLAGS), _cpu_fingerprint()]).encode()).hexdigest()
    lib = os.path.join(_cache_dir(), "ssd_kernels_%s.so" % key[:16])
    if os.path.isfile(lib):
        return lib
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        LOGGER.warning("no C++ compiler found: using the plain (slow on CPU) formulation")
        return None
    src, tmp = "%s.%d.cc" % (lib[:-3], os.getpid()), "%s.%d.tmp" % (lib, os.getpid())
    with open(src, "w", encoding="utf-8") as out:
        out.write(_KERNEL_SOURCE)
    done = subprocess.run([cxx, *_CXX_FLAGS, src, "-o", tmp], capture_output=True, text=True, check=False)
    os.remove(src)
    if done.returncode != 0:
        LOGGER.warning("building the CPU kernels failed, using the plain formulation: %s",
                       (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1])
        return None
    os.replace(tmp, lib)
    return lib


def _kernel(name, out_shape, out_dtype, bprop=None):
    lib = kernel_library()
    if lib is None:
        raise RuntimeError("the fast CPU kernels are not available on this machine (no C++ compiler?)")
    return ops.Custom("%s:%s" % (lib, name), out_shape, out_dtype, "aot", bprop=bprop)


def _same(size, stride):
    return -(-size // stride)


def _first(*args):
    return args[0]


def _last(*args):
    return args[-1]


def depthwise_op(stride):
    """``op(x_nhwc, w) -> y_nhwc``: compiled depthwise 3x3 convolution with its own gradient."""
    def out_shape(x, w):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3]]

    grad_x = _kernel("DwBackwardInput%d" % stride, _last, _first)
    grad_w = _kernel("DwBackwardWeight%d" % stride, _last, _first)

    def bprop(x, w, out, dout):
        return grad_x(dout, w, x), grad_w(x, dout, w)

    return _kernel("DwForward%d" % stride, out_shape, _first, bprop)


def im2col_op(stride):
    """``op(x_nhwc) -> cols [B, Ho, Wo, C*9]``: the 3x3 "same" windows, column c*9 + ky*3 + kx."""
    def out_shape(x):
        return [x[0], _same(x[1], stride), _same(x[2], stride), x[3] * 9]

    col2im = _kernel("Col2Im%d" % stride, _last, _first)

    def bprop(x, out, dout):
        return (col2im(dout, x),)

    return _kernel("Im2Col%d" % stride, out_shape, _first, bprop)


def batch_norm_op(relu6):
    """``op(x_nhwc, gamma, beta, moving_mean, moving_var) -> (y, batch_mean, batch_var, new_moving_mean,
    new_moving_var)``: training BatchNorm (+ ReLU6) and the moving-average update, compiled."""
    def shapes(x, gamma, *_):
        return x, gamma, gamma, gamma, gamma

    def dtypes(x, *_):
        return (x,) * 5

    grad = _kernel("BnBackward%d" % relu6, lambda dy, x, gamma, *_: (x, gamma, gamma),
                   lambda *types: types[:1] * 3)

    def bprop(x, gamma, beta, moving_mean, moving_var, out, dout):
        dx, dgamma, dbeta = grad(dout[0], x, gamma, beta, out[1], out[2])
        return dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var)

    return _kernel("BnForward%d" % relu6, shapes, dtypes, bprop)


def batch_norm_apply_op(relu6):
    """``op(x_nhwc, gamma, beta, mean, var) -> y``: BatchNorm with given statistics (+ ReLU6)."""
    grad = _kernel("BnApplyBackward%d" % relu6, lambda dy, x, gamma, *_: (x, gamma, gamma),
                   lambda *dtypes: dtypes[:1] * 3)

    def bprop(x, gamma, beta, mean, var, out, dout):
        dx, dgamma, dbeta = grad(dout, x, gamma, beta, mean, var)
        return dx, dgamma, dbeta, ops.zeros_like(mean), ops.zeros_like(var)

    return _kernel("BnApply%d" % relu6, _first, _first, bprop)


def conv_weight(shape, init=None):
    """Initial weights, by default He-normal (fan in), which keeps the activation variance through ReLU
    layers (He et al. 2015, "Delving Deep into Rectifiers")."""
    init = init if init is not None else HeNormal(mode="fan_in", nonlinearity="relu")
    return Parameter(initializer(init, shape, ms.float32), name="weight")


class Conv1x1(nn.Cell):
    """Pointwise convolution, weight [out, in, 1, 1] (+ bias [out]). Fast: one NHWC matrix product."""

    def __init__(self, in_channels, out_channels, has_bias=False, fast=False, weight_init=None, bias_init="zeros"):
        super().__init__()
        self.weight = conv_weight((out_channels, in_channels, 1, 1), weight_init)
        self.bias = Parameter(initializer(bias_init, (out_channels,), ms.float32), name="bias") if has_bias else None
        self.fast = fast
        self.matrix = (out_channels, in_channels)
        if fast:
            self.matmul = ops.MatMul(transpose_b=True)
        else:
            self.conv = ops.Conv2D(out_channels, 1)
            self.bias_add = ops.BiasAdd()

    def construct(self, x):
        if self.fast:
            rows = ops.reshape(x, (-1, self.matrix[1]))
            y = self.matmul(rows, ops.reshape(self.weight, self.matrix))
            if self.bias is not None:
                y = y + self.bias
            return ops.reshape(y, x.shape[:-1] + (self.matrix[0],))
        y = self.conv(x, self.weight)
        return y if self.bias is None else self.bias_add(y, self.bias)


class DepthwiseConv3x3(nn.Cell):
    """3x3 depthwise convolution ("same" padding, stride 1 or 2) with weight [C, 1, 3, 3] and no bias."""

    def __init__(self, channels, stride=1, fast=False):
        super().__init__()
        self.weight = conv_weight((channels, 1, 3, 3))
        if fast:
            self.conv = depthwise_op(stride)
        else:
            self.conv = ops.Conv2D(channels, 3, pad_mode="same", stride=stride, group=channels)

    def construct(self, x):
        return self.conv(x, self.weight)


class DenseConv3x3(nn.Cell):
    """Dense 3x3 convolution without bias ("same" padding), weight [out, in, 3, 3] (the MobileNetV2 stem).

    Fast: im2col (compiled) then one matrix product with the weight viewed as [out, in*9].
    """

    def __init__(self, in_channels, out_channels, stride=1, fast=False):
        super().__init__()
        self.weight = conv_weight((out_channels, in_channels, 3, 3))
        self.fast = fast
        self.matrix = (out_channels, in_channels * 9)
        if fast:
            self.im2col = im2col_op(stride)
            self.matmul = ops.MatMul(transpose_b=True)
        else:
            self.conv = ops.Conv2D(out_channels, 3, pad_mode="same", stride=stride)

    def construct(self, x):
        if not self.fast:
            return self.conv(x, self.weight)
        cols = self.im2col(x)
        y = self.matmul(ops.reshape(cols, (-1, self.matrix[1])), ops.reshape(self.weight, self.matrix))
        return ops.reshape(y, cols.shape[:-1] + (self.matrix[0],))


class FastBatchNorm(nn.Cell):
    """BatchNorm over the last (channel) axis, optionally followed by ReLU6, with nn.BatchNorm2d's
    parameters and semantics (batch statistics in training, moving averages updated with the unbiased
    variance; moving statistics in inference), each way one compiled kernel."""

    def __init__(self, channels, relu6):
        super().__init__()
        self.gamma = Parameter(initializer("ones", (channels,), ms.float32), name="gamma")
        self.beta = Parameter(initializer("zeros", (channels,), ms.float32), name="beta")
        self.moving_mean = Parameter(initializer("zeros", (channels,), ms.float32), name="moving_mean",
                                     requires_grad=False)
        self.moving_variance = Parameter(initializer("ones", (channels,), ms.float32), name="moving_variance",
                                         requires_grad=False)
        self.train_op = batch_norm_op(int(relu6))
        self.infer_op = batch_norm_apply_op(int(relu6))

    def construct(self, x):
        if self.training:
            y, _, _, mean, var = self.train_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)
            ops.assign(self.moving_mean, mean)
            ops.assign(self.moving_variance, var)
            return y
        return self.infer_op(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)


def batch_norm(channels, fast=False):
    """BatchNorm with the model zoo's settings (parameters gamma, beta, moving_mean, moving_variance)."""
    if fast:
        return FastBatchNorm(channels, relu6=False)
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def batch_norm_relu6(channels, fast=False):
    """[BatchNorm, ReLU6] as two cells (the model zoo's layout); fast: the fused cell and an Identity."""
    if fast:
        return [FastBatchNorm(channels, relu6=True), nn.Identity()]
    return [batch_norm(channels), nn.ReLU6()]


def conv3x3(in_channels, out_channels, stride=1, groups=1, fast=False):
    """A 3x3 convolution without bias: depthwise when groups == in_channels == out_channels, else dense."""
    if groups == 1:
        return DenseConv3x3(in_channels, out_channels, stride, fast)
    if groups != in_channels or in_channels != out_channels:
        raise ValueError("only dense or depthwise 3x3 convolutions are supported, got groups=%d" % groups)
    return DepthwiseConv3x3(in_channels, stride, fast)


class ConvBNReLU(nn.Cell):
    """Convolution (1x1, dense 3x3 or depthwise 3x3), BatchNorm and ReLU6, held as ``features.0/1/2``."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, fast=False):
        super().__init__()
        if kernel_size == 1:
            conv = Conv1x1(in_channels, out_channels, fast=fast)
        else:
            conv = conv3x3(in_channels, out_channels, stride, groups, fast)
        self.features = nn.SequentialCell([conv] + batch_norm_relu6(out_channels, fast))

    def construct(self, x):
        return self.features(x)


class InvertedResidual(nn.Cell):
    """MobileNetV2 bottleneck (Sandler et al. 2018, "MobileNetV2", fig. 4d): 1x1 expansion + ReLU6,
    3x3 depthwise + ReLU6, linear 1x1 projection + BN (``conv.0..3``); identity shortcut when the
    stride is 1 and the channels match. ``last_relu`` adds a final ReLU6 (the SSD extra layers)."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio, last_relu=False, fast=False):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_channels, hidden, kernel_size=1, fast=fast))
        layers += [ConvBNReLU(hidden, hidden, 3, stride, groups=hidden, fast=fast),
                   Conv1x1(hidden, out_channels, fast=fast), batch_norm(out_channels, fast)]
        self.conv = nn.SequentialCell(layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.last_relu = last_relu
        self.relu = nn.ReLU6()

    def construct(self, x):
        out = self.conv(x)
        if self.use_residual:
            out = out + x
        if self.last_relu:
            out = self.relu(out)
        return out
