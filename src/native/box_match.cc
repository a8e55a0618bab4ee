// Anchor matching and SSD box encoding of one image in one call (see ssd_match_encode at the end).
//
// The numpy reference is SsdTargetEncoder's numpy path in src/box_coder.py; this file repeats its
// float32 operations in the same order (built with -ffp-contract=off, so no fused multiply-adds), so
// that IoU values, and hence every matching decision, tie and threshold comparison included, are the
// same bit for bit. The one difference: the size targets take the logarithm in double precision and
// round it to float32, where numpy's SIMD float32 log may be a few units in the last place off.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// numpy.minimum / numpy.maximum: a NaN in either operand gives NaN. Bitwise | rather than || keeps
// the loops free of branches, so that the compiler vectorises them.
inline float np_min(float a, float b) { return ((a < b) | (a != a)) ? a : b; }
inline float np_max(float a, float b) { return ((a > b) | (a != a)) ? a : b; }

// Per-thread work space: the pipeline encodes images on several threads at once.
struct Scratch {
  std::vector<float> row;        // IoU of the current ground truth with every anchor
  std::vector<float> best;       // best IoU of each anchor over the ground truths so far (NaN sticks)
  std::vector<int32_t> matched;  // ground truth of that best IoU, later the match (-1: background)
  std::vector<int32_t> forced;   // best anchor of each ground truth
};

Scratch& scratch(int anchors, int boxes) {
  thread_local Scratch space;
  if (space.row.size() < static_cast<size_t>(anchors)) {
    space.row.resize(anchors);
    space.best.resize(anchors);
    space.matched.resize(anchors);
  }
  if (space.forced.size() < static_cast<size_t>(boxes)) space.forced.resize(boxes);
  return space;
}

// Where one row of IoUs peaks: the bit pattern of its largest value (for floats >= -0.0 the integer
// order of the bit patterns is the numeric order, and an integer maximum vectorises where a float one
// does not), or `irregular` when the row holds a NaN or a negative value and needs numpy's rules.
struct RowTop {
  int32_t bits;
  bool irregular;
};

// IoU of ground truth `k` (corners `g`) with every anchor, as AnchorColumns.iou computes it, written to
// `row` and folded into the per-anchor first maximum over ground truths (numpy's max(axis=0), NaN
// sticking, and argmax(axis=0)). The restrict pointers and the corners held in locals tell the compiler
// that the stores alias none of the loads, which it needs to vectorise the loop.
RowTop overlap_row(const float* g, int32_t k, const float* __restrict__ columns, const float* __restrict__ area,
                   int n, float* __restrict__ row, float* __restrict__ best, int32_t* __restrict__ matched) {
  const float top = g[0], left = g[1], bottom = g[2], right = g[3];
  const float g_area = (bottom - top) * (right - left);
  const float* ymin = columns;
  const float* xmin = columns + n;
  const float* ymax = columns + 2 * n;
  const float* xmax = columns + 3 * n;
  const bool first = k == 0;
  int32_t top_bits = INT32_MIN;
  int irregular = 0;
  for (int j = 0; j < n; ++j) {
    const float h = np_max(np_min(bottom, ymax[j]) - np_max(top, ymin[j]), 0.0f);
    const float w = np_max(np_min(right, xmax[j]) - np_max(left, xmin[j]), 0.0f);
    const float inter = h * w;
    const float union_area = g_area + area[j] - inter;
    const float v = inter / union_area;
    row[j] = v;
    const float best_so_far = best[j];
    const int32_t matched_so_far = matched[j];
    const bool better = v > best_so_far;
    best[j] = (first | better | (v != v)) ? v : best_so_far;
    matched[j] = (first | better) ? k : matched_so_far;
    int32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    top_bits = bits > top_bits ? bits : top_bits;
    irregular |= (v != v) | (v < 0.0f);
  }
  return RowTop{top_bits, irregular != 0};
}

// numpy.argmax of one row: the first NaN if there is one, else the first maximum.
int32_t first_argmax(const float* row, int n) {
  int32_t arg = 0;
  float top = row[0];
  if (top != top) return 0;
  for (int j = 1; j < n; ++j) {
    const float v = row[j];
    if (v != v) return j;
    if (v > top) {
      top = v;
      arg = j;
    }
  }
  return arg;
}

// numpy.argmax of a row whose peak `top` overlap_row found: the first element equal to it (+0.0 and
// -0.0 are equal, as for numpy).
int32_t best_anchor(const float* row, int n, RowTop top) {
  if (top.irregular) return first_argmax(row, n);
  float peak;
  std::memcpy(&peak, &top.bits, sizeof peak);
  int32_t j = 0;
  while (row[j] != peak) ++j;
  return j;
}

// Regression target of corner box `g` against centre-form anchor `a` (box_coder.encode).
void encode_box(const float* g, const float* a, float centre_scale, float size_scale, float log_clamp,
                float* out) {
  const float h = g[2] - g[0];
  const float w = g[3] - g[1];
  out[0] = (g[0] + h / 2.0f - a[0]) / (a[2] * centre_scale);
  out[1] = (g[1] + w / 2.0f - a[1]) / (a[3] * centre_scale);
  out[2] = static_cast<float>(std::log(static_cast<double>(np_max(h / a[2], log_clamp)))) / size_scale;
  out[3] = static_cast<float>(std::log(static_cast<double>(np_max(w / a[3], log_clamp)))) / size_scale;
}

}  // namespace

// Matches `count` ground-truth corner boxes `gt` [count, 4] (labels `labels` [count]) to `n` anchors and
// writes every anchor's regression target to `loc` [n, 4] (zeros where unmatched) and its label to
// `target` [n] (0 where unmatched). Anchors come as corner columns `columns` [4, n] (ymin, xmin, ymax,
// xmax rows), their areas `area` [n] and centre form `centres` [n, 4]. Returns the number of matches.
//
// Matching (SSD paper, section 2.2): an anchor goes to the ground truth it overlaps most when that IoU
// exceeds `threshold`; then each ground truth takes its best anchor (an anchor that several share stays
// with the first of them, as in the model zoo's ssd_bboxes_encode).
extern "C" int ssd_match_encode(const float* gt, const int32_t* labels, int count, const float* columns,
                                const float* area, const float* centres, int n, float threshold,
                                float centre_scale, float size_scale, float log_clamp, float* loc,
                                int32_t* target) {
  if (count <= 0 || n <= 0) {
    for (int j = 0; j < n; ++j) {
      loc[4 * j] = loc[4 * j + 1] = loc[4 * j + 2] = loc[4 * j + 3] = 0.0f;
      target[j] = 0;
    }
    return 0;
  }
  Scratch& s = scratch(n, count);
  for (int32_t k = 0; k < count; ++k) {
    const RowTop top = overlap_row(gt + 4 * k, k, columns, area, n, s.row.data(), s.best.data(), s.matched.data());
    s.forced[k] = best_anchor(s.row.data(), n, top);
  }
  int32_t* matched = s.matched.data();
  for (int j = 0; j < n; ++j) matched[j] = s.best[j] > threshold ? matched[j] : -1;
  for (int32_t k = count - 1; k >= 0; --k) matched[s.forced[k]] = k;
  int num_match = 0;
  for (int j = 0; j < n; ++j) {
    float* out = loc + 4 * j;
    const int32_t k = matched[j];
    if (k < 0) {
      out[0] = out[1] = out[2] = out[3] = 0.0f;
      target[j] = 0;
      continue;
    }
    encode_box(gt + 4 * k, centres + 4 * j, centre_scale, size_scale, log_clamp, out);
    target[j] = labels[k];
    ++num_match;
  }
  return num_match;
}
