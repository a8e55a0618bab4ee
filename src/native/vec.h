// Channel vectors of the compiled kernels (src/native/conv_kernels.cc, src/native/dense_conv.cc).
#ifndef SSD_NATIVE_VEC_H_
#define SSD_NATIVE_VEC_H_

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ssd_native {

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

}  // namespace ssd_native

#endif  // SSD_NATIVE_VEC_H_
