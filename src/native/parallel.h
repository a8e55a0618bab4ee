// Threads of the compiled kernels (src/native/conv_kernels.cc, src/native/dense_conv.cc): how many, and
// one contiguous range of work per thread.
#ifndef SSD_NATIVE_PARALLEL_H_
#define SSD_NATIVE_PARALLEL_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <system_error>
#include <thread>
#include <vector>
#include <sched.h>

namespace ssd_native {

// Threads: SSD_KERNEL_THREADS, else the CPUs this process may run on. Plain threads started per call
// and joined, so no idle worker spins while MindSpore's own thread pool runs the next operator.
inline int MaxThreads() {
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

}  // namespace ssd_native

#endif  // SSD_NATIVE_PARALLEL_H_
