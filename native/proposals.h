// Selective search as the SoCo authors ran it (skimage felzenszwalb + AlpacaDB grouping with
// their fixes), reproduced bit for bit where the reference's arithmetic allows it.
// Pure C++ (no Node, no torch) so that a standalone harness can compile it in a second.
// Every function is single-threaded and reentrant: parallelism is across images.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <string>
#include <vector>

namespace soco_ss {

struct Params {
  double scale = 500.0;  // felzenszwalb k on 0..255 intensities (used as scale/255 on 0..1)
  double sigma = 0.9;
  int minSize = 10;
  bool pixelAdjacency = false;  // authors: neighbours = box-corner rule; option: touching pixels
  bool fullHsv = false;         // authors: H,S in [0,1] binned over 0..255 (only V counts)
  bool filter = true;           // ratio3size0308 with fallbacks; false keeps every unique box
  bool numpyTieOrder = false;   // sort edges exactly as numpy's argsort (slower, same ties)
  int maxSide = 0;              // >0: downscale so the longer side is at most this
};

struct Result {
  std::vector<int32_t> boxes;  // x0,y0,x1,y1 (exclusive), original image pixels, unique
  int32_t rawCount = 0;        // regions (every box the authors' code emits, duplicates too)
  int32_t uniqueCount = 0;     // unique raw boxes
  int32_t filterStage = -1;    // 0 ratio+size, 1 ratio only, 2 w,h>=32 only, 3 none; -1 off
  int32_t segments = 0;
  int32_t width = 0, height = 0;  // size the algorithm ran at (after maxSide)
};

// ---------------------------------------------------------------- Gaussian (scipy.ndimage)

// numpy's pairwise sum for n <= 128 as used by ndarray.sum() on a contiguous vector.
inline double numpySum(const double* a, size_t n) {
  if (n < 8) {
    double r = 0.0;
    for (size_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  double r[8];
  for (int j = 0; j < 8; ++j) r[j] = a[j];
  size_t i = 8;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) r[j] += a[i + j];
  double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (; i < n; ++i) res += a[i];
  return res;
}

inline std::vector<double> gaussianKernel(double sigma) {
  const int radius = int(4.0 * sigma + 0.5);  // scipy: truncate=4.0
  std::vector<double> w(2 * radius + 1);
  const double c = -0.5 / (sigma * sigma);
  for (int x = -radius; x <= radius; ++x) w[x + radius] = std::exp(c * double(x * x));
  const double s = numpySum(w.data(), w.size());
  for (double& v : w) v = v / s;
  return w;
}

// scipy 'reflect' (half-sample symmetric): d c b a | a b c d | d c b a
inline int reflectIndex(long i, long n) {
  if (n == 1) return 0;
  const long period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return int(i < n ? i : period - 1 - i);
}

// out = c * w0, then out += (a[-j] + b[j]) * w[j] from the outermost tap in, as ni_filters.c.
inline void gaussianTaps(double* __restrict out, const double* const* lo, const double* const* hi,
                         const double* c0, const double* fw, long r, size_t n) {
  for (size_t k = 0; k < n; ++k) out[k] = c0[k] * fw[0];
  for (long j = -r; j < 0; ++j) {
    const double* __restrict a = lo[j + r];
    const double* __restrict b = hi[j + r];
    const double wj = fw[j];
    for (size_t k = 0; k < n; ++k) out[k] += (a[k] + b[k]) * wj;
  }
}

// rgb (0..255) as img_as_float64 (x * (1/255)), smoothed along axis 0 then axis 1 (scipy's
// order), one row at a time: emit(y, row) gets smoothed row y (W*3 doubles), and row y - 1
// stays valid meanwhile. Input rows are converted once into a ring of 2r+1 rows (axis 0 of row
// y reads rows y-r..y+r or their reflections, all inside that window), so no image-sized
// buffer is needed. buf: scratch, reused across images.
template <class Emit>
inline void smoothRows(const uint8_t* rgb, int W, int H, double sigma, std::vector<double>& buf, Emit&& emit) {
  const size_t rowLen = size_t(W) * 3;
  const double inv = 1.0 / 255.0;
  auto convert = [&](long y, double* __restrict d) {
    const uint8_t* __restrict src = rgb + size_t(y) * rowLen;
    for (size_t k = 0; k < rowLen; ++k) d[k] = double(src[k]) * inv;
  };
  if (!(sigma > 1e-15)) {
    buf.resize(2 * rowLen);
    for (long y = 0; y < H; ++y) {
      double* o = &buf[size_t(y & 1) * rowLen];
      convert(y, o);
      emit(y, static_cast<const double*>(o));
    }
    return;
  }
  const std::vector<double> w = gaussianKernel(sigma);
  const long r = long(w.size() / 2);
  const double* fw = w.data() + r;
  const long ringRows = 2 * r + 1;
  buf.resize(size_t(ringRows) * rowLen + size_t(W + 2 * r) * 3 + 2 * rowLen);
  double* ring = buf.data();
  double* line = ring + size_t(ringRows) * rowLen;
  double* outRows = line + size_t(W + 2 * r) * 3;
  auto in = [&](long y) { return ring + size_t(y % ringRows) * rowLen; };
  std::vector<const double*> lo(r), hi(r), llo(r), lhi(r);
  for (long j = -r; j < 0; ++j) {
    llo[j + r] = &line[size_t(r + j) * 3];
    lhi[j + r] = &line[size_t(r - j) * 3];
  }
  double* mid = &line[size_t(r) * 3];
  long converted = 0;
  for (long y = 0; y < H; ++y) {
    for (const long need = std::min<long>(H - 1, y + r); converted <= need; ++converted)
      convert(converted, in(converted));  // overwrites row converted - 2r - 1, no longer read
    for (long j = -r; j < 0; ++j) {  // axis 0 into the middle of the padded line
      lo[j + r] = in(reflectIndex(y + j, H));
      hi[j + r] = in(reflectIndex(y - j, H));
    }
    gaussianTaps(mid, lo.data(), hi.data(), in(y), fw, r, rowLen);
    for (long x = -r; x < W + r; x += (x == -1 ? W + 1 : 1)) {  // reflected borders
      const double* q = mid + size_t(reflectIndex(x, W)) * 3;
      double* d = &line[size_t(x + r) * 3];
      d[0] = q[0]; d[1] = q[1]; d[2] = q[2];
    }
    double* o = outRows + size_t(y & 1) * rowLen;
    gaussianTaps(o, llo.data(), lhi.data(), mid, fw, r, rowLen);  // axis 1
    emit(y, static_cast<const double*>(o));
  }
}

// ---------------------------------------------------------------- edge sorting

// numpy 1.24 aquicksort (introsort, unstable): reproduces numpy's order of equal costs.
inline void numpyArgsort(const double* v, int64_t* tosort, int64_t num) {
  auto less = [](double a, double b) { return a < b || (b != b && a == a); };
  auto aheapsort = [&](int64_t* ts, int64_t n) {
    int64_t* a = ts - 1;
    int64_t i, j, l, tmp;
    for (l = n >> 1; l > 0; --l) {
      tmp = a[l];
      for (i = l, j = l << 1; j <= n;) {
        if (j < n && less(v[a[j]], v[a[j + 1]])) j += 1;
        if (less(v[tmp], v[a[j]])) { a[i] = a[j]; i = j; j += j; } else break;
      }
      a[i] = tmp;
    }
    for (; n > 1;) {
      tmp = a[n]; a[n] = a[1]; n -= 1;
      for (i = 1, j = 2; j <= n;) {
        if (j < n && less(v[a[j]], v[a[j + 1]])) j++;
        if (less(v[tmp], v[a[j]])) { a[i] = a[j]; i = j; j += j; } else break;
      }
      a[i] = tmp;
    }
  };
  const int SMALL = 15;
  int64_t* pl = tosort;
  int64_t* pr = tosort + num - 1;
  int64_t* stack[128];
  int64_t** sptr = stack;
  int depth[128];
  int* psdepth = depth;
  int cdepth = 0;
  for (int64_t n = num; n >>= 1;) ++cdepth;
  cdepth *= 2;
  int64_t *pm, *pi, *pj, *pk, vi;
  double vp;
  for (;;) {
    if (cdepth < 0) {
      aheapsort(pl, pr - pl + 1);
      goto stack_pop;
    }
    while ((pr - pl) > SMALL) {
      pm = pl + ((pr - pl) >> 1);
      if (less(v[*pm], v[*pl])) std::swap(*pm, *pl);
      if (less(v[*pr], v[*pm])) std::swap(*pr, *pm);
      if (less(v[*pm], v[*pl])) std::swap(*pm, *pl);
      vp = v[*pm];
      pi = pl;
      pj = pr - 1;
      std::swap(*pm, *pj);
      for (;;) {
        do ++pi; while (less(v[*pi], vp));
        do --pj; while (less(vp, v[*pj]));
        if (pi >= pj) break;
        std::swap(*pi, *pj);
      }
      pk = pr - 1;
      std::swap(*pi, *pk);
      if (pi - pl < pr - pi) {
        *sptr++ = pi + 1; *sptr++ = pr; pr = pi - 1;
      } else {
        *sptr++ = pl; *sptr++ = pi - 1; pl = pi + 1;
      }
      *psdepth++ = --cdepth;
    }
    for (pi = pl + 1; pi <= pr; ++pi) {
      vi = *pi;
      vp = v[vi];
      pj = pi;
      pk = pi - 1;
      while (pj > pl && less(vp, v[*pk])) *pj-- = *pk--;
      *pj = vi;
    }
  stack_pop:
    if (sptr == stack) break;
    pr = *(--sptr);
    pl = *(--sptr);
    cdepth = *(--psdepth);
  }
}

// An edge of the pixel graph: its cost and code = type << 30 | base pixel. Codes increase with
// skimage's edge index, so (cost, code) order is skimage's order with ties broken by index.
// 12 bytes: the sort and the merge loop stream these, so their size is memory traffic.
#pragma pack(push, 4)
struct Edge { double cost; uint32_t code; };
#pragma pack(pop)
static_assert(sizeof(Edge) == 12, "Edge must pack to 12 bytes");

inline uint64_t doubleBits(double c) { uint64_t k; std::memcpy(&k, &c, 8); return k; }

// 12-bit bucket of an edge cost (0 <= cost <= sqrt(3)), monotonic in it: 5 bits of exponent
// (2^-31 .. 2^1; smaller costs, zero included, share bucket 0) and the top 7 mantissa bits.
constexpr int kBucketBits = 12;
inline uint32_t costBucket(double c) {
  const uint64_t k = doubleBits(c);
  const int e = int(k >> 52) - (1023 - 31);
  const uint32_t v = (uint32_t(e) << 7) | uint32_t((k >> 45) & 0x7f);
  const uint32_t top = (1u << kBucketBits) - 1u;
  return e <= 0 ? 0u : (e > 31 ? top : v);  // selects, not branches: zero and non-zero mix
}

// Stable sort of a[0, m) by cost (a is in code order, so the result is in (cost, code) order).
// One MSD counting pass on the bit patterns (monotonic for costs >= 0) relative to the range's
// minimum, with about 2m bins (so most bins hold 0 or 1 edge and the insertion pass below
// rarely mispredicts), then big bins recursively and
// one insertion pass over the whole range for the small ones (elements of different bins are
// already in order, so it only moves edges within a bin).
inline void insertionByCost(Edge* a, size_t m) {
  for (size_t i = 1; i < m; ++i) {
    if (!(a[i].cost < a[i - 1].cost)) continue;
    const Edge x = a[i];
    size_t j = i;
    do { a[j] = a[j - 1]; --j; } while (j > 0 && x.cost < a[j - 1].cost);
    a[j] = x;
  }
}
constexpr size_t kMaxSortBins = 32768;
constexpr int kSortDepths = 6;
// counts: kSortDepths * (kMaxSortBins + 1) scratch counters, one row per recursion depth
inline void sortByCost(Edge* a, size_t m, Edge* tmp, uint32_t* counts, int depth = 0) {
  if (m <= 32) return insertionByCost(a, m);
  uint64_t lo = ~uint64_t(0), hi = 0;
  bool sorted = true;
  for (size_t i = 0; i < m; ++i) {
    const uint64_t b = doubleBits(a[i].cost);
    lo = std::min(lo, b);
    hi = std::max(hi, b);
    sorted &= !(i && a[i].cost < a[i - 1].cost);
  }
  if (sorted) return;  // includes runs of equal costs (flat image areas)
  if (depth >= kSortDepths) {  // only for pathological cost distributions
    std::stable_sort(a, a + m, [](const Edge& x, const Edge& y) { return x.cost < y.cost; });
    return;
  }
  const size_t want = std::min(kMaxSortBins, 2 * m);
  int shift = 0;
  while (((hi - lo) >> shift) >= want) ++shift;
  const size_t nb = size_t((hi - lo) >> shift) + 1;
  uint32_t* count = counts + size_t(depth) * (kMaxSortBins + 1);
  std::memset(count, 0, sizeof(uint32_t) * (nb + 1));
  auto key = [&](const Edge& e) { return uint32_t((doubleBits(e.cost) - lo) >> shift); };
  for (size_t i = 0; i < m; ++i) ++count[key(a[i]) + 1];
  for (size_t b = 1; b <= nb; ++b) count[b] += count[b - 1];
  for (size_t i = 0; i < m; ++i) tmp[count[key(a[i])]++] = a[i];
  std::memcpy(static_cast<void*>(a), tmp, m * sizeof(Edge));
  if (shift == 0) return;  // keys were exact
  // count[b] is now the end of bin b
  for (size_t b = 0, s = 0; b < nb; s = count[b++])
    if (count[b] - s > 32) sortByCost(a + s, count[b] - s, tmp, counts, depth + 1);
  insertionByCost(a, m);
}

// ---------------------------------------------------------------- Felzenszwalb (skimage 0.19)

// Union-find node: what every edge test reads, in one 8-byte slot. thr is skimage's float
// inner cost cint + scale / size, computed when the component changes instead of per test.
struct Node { uint32_t parent; float thr; };
// Per-thread buffers reused across images: workers process thousands of images, and fresh
// multi-megabyte allocations cost page faults each time.
struct Workspace {
  std::vector<Edge> edges, tmp;
  std::vector<Node> nodes;
  std::vector<uint32_t> size;
  std::vector<double> cost, rows;  // edge costs in code order; smoothing rows
  std::vector<uint8_t> smallPx, lbp;
  std::vector<int32_t> rootLabel;
  std::vector<uint32_t> sortCounts;
  std::vector<Edge> smallEdges;
  size_t bytes() const {
    return edges.capacity() * sizeof(Edge) + tmp.capacity() * sizeof(Edge) + nodes.capacity() * sizeof(Node) +
           size.capacity() * 4 + cost.capacity() * 8 + rows.capacity() * 8 + smallPx.capacity() + lbp.capacity() + rootLabel.capacity() * 4 +
           sortCounts.capacity() * 4 + smallEdges.capacity() * sizeof(Edge);
  }
};
inline Workspace& workspace() {
  static thread_local Workspace ws;
  return ws;
}
// Buffers of a very large image are released after it, so one outlier does not pin hundreds
// of MB in every pool thread for the rest of a run.
constexpr size_t kKeepWorkspaceBytes = size_t(256) << 20;  // ~2.4 MP at ~105 B/px
inline void trimWorkspace() {
  Workspace& ws = workspace();
  if (ws.bytes() > kKeepWorkspaceBytes) ws = Workspace();
}

// Labels in raster order of first appearance (= skimage's np.unique over min-index roots).
inline int felzenszwalb(const uint8_t* rgb, int W, int H, double scaleIn, double sigma,
                        int minSize, bool numpyTies, std::vector<int32_t>& labels) {
  const size_t N = size_t(W) * H;
  Workspace& ws = workspace();
  const double scale = scaleIn / 255.0;

  // Edges in skimage's order: right, down, down-right, up-right; each raveled row-major.
  // type 0: (p+1, p)  1: (p+W, p)  2: (p+W+1, p)  3: (p+1, p+W)
  const size_t nR = size_t(H) * (W - 1), nD = size_t(H - 1) * W, nX = size_t(H - 1) * (W - 1);
  const size_t M = nR + nD + 2 * nX;
  const uint32_t offA[4] = {1u, uint32_t(W), uint32_t(W) + 1u, 1u};
  const uint32_t offB[4] = {0u, 0u, 0u, uint32_t(W)};
  const size_t typeBase[4] = {0, nR, nR + nD, nR + nD + nX};
  const uint32_t typeW[4] = {uint32_t(W - 1), uint32_t(W), uint32_t(W - 1), uint32_t(W - 1)};

  // Costs in code order, computed as the smoothed rows come out (the smoothed image is never
  // stored), each as skimage: sqrt((d0^2 + d1^2) + d2^2) of the channel differences a - b.
  // Bucket counts for the sort come along (runs of one bucket counted at once: neighbouring
  // edges often share one, and the increments would wait on each other through memory).
  std::vector<double>& cost = ws.cost;
  cost.resize(M);
  std::vector<uint32_t> start((size_t(1) << kBucketBits) + 1, 0);
  uint32_t* cnt = start.data() + 1;
  uint32_t runBucket = 0, run = 0;
  auto edgeRow = [&](const double* __restrict A, const double* __restrict B, int n, double* __restrict dst) {
    for (int x = 0; x < n; ++x) {
      const double d0 = A[3 * x] - B[3 * x], d1 = A[3 * x + 1] - B[3 * x + 1], d2 = A[3 * x + 2] - B[3 * x + 2];
      dst[x] = std::sqrt(d0 * d0 + d1 * d1 + d2 * d2);
    }
    for (int x = 0; x < n; ++x) {
      const uint32_t bk = costBucket(dst[x]);
      if (bk == runBucket) { ++run; continue; }
      cnt[runBucket] += run;
      runBucket = bk;
      run = 1;
    }
  };
  const double* prev = nullptr;
  smoothRows(rgb, W, H, sigma, ws.rows, [&](long y, const double* cur) {
    edgeRow(cur + 3, cur, W - 1, &cost[typeBase[0] + size_t(y) * typeW[0]]);
    if (y > 0) {
      edgeRow(cur, prev, W, &cost[typeBase[1] + size_t(y - 1) * typeW[1]]);
      edgeRow(cur + 3, prev, W - 1, &cost[typeBase[2] + size_t(y - 1) * typeW[2]]);
      edgeRow(prev + 3, cur, W - 1, &cost[typeBase[3] + size_t(y - 1) * typeW[3]]);
    }
    prev = cur;
  });
  cnt[runBucket] += run;
  // Visits every edge in code order with its cost.
  auto forEachEdge = [&](auto&& fn) {
    const double* c = cost.data();
    for (uint32_t t = 0; t < 4; ++t) {
      const int yEnd = t == 0 ? H : H - 1, xEnd = int(typeW[t]);
      for (int y = 0; y < yEnd; ++y) {
        const uint32_t code0 = (t << 30) | (uint32_t(y) * uint32_t(W));
        for (int x = 0; x < xEnd; ++x) fn(*c++, code0 + uint32_t(x));
      }
    }
  };

  std::vector<Node>& nd = ws.nodes;
  std::vector<uint32_t>& sz = ws.size;
  nd.resize(N);
  sz.assign(N, 1u);
  const float thr1 = float(0.0 + scale / 1.0);
  for (size_t p = 0; p < N; ++p) nd[p] = {uint32_t(p), thr1};
  auto find = [&](uint32_t a) {  // path halving
    while (nd[a].parent != a) {
      const uint32_t g = nd[nd[a].parent].parent;
      nd[a].parent = g;
      a = g;
    }
    return a;
  };
  // skimage's merge test with its float inner costs; the bigger component becomes the root
  // (which root survives does not change the partition)
  // Latency bound (random node reads): the nodes of edges ahead are prefetched, those 16
  // ahead and then their parents 8 ahead (by then the pixel's node has arrived).
  auto unite = [&](const Edge* e, const Edge* end) {
    auto a = [&](const Edge* x) { return (x->code & 0x3fffffffu) + offA[x->code >> 30]; };
    auto b = [&](const Edge* x) { return (x->code & 0x3fffffffu) + offB[x->code >> 30]; };
    for (; e != end; ++e) {
      if (end - e > 16) {
        __builtin_prefetch(&nd[a(e + 16)]);
        __builtin_prefetch(&nd[b(e + 16)]);
        __builtin_prefetch(&nd[nd[a(e + 8)].parent]);
        __builtin_prefetch(&nd[nd[b(e + 8)].parent]);
      }
      const uint32_t t = e->code >> 30, p = e->code & 0x3fffffffu;
      const uint32_t s0 = find(p + offA[t]), s1 = find(p + offB[t]);
      if (s0 == s1) continue;
      if (e->cost < double(std::min(nd[s0].thr, nd[s1].thr))) {
        const uint32_t big = sz[s0] >= sz[s1] ? s0 : s1, small = big == s0 ? s1 : s0;
        nd[small].parent = big;
        sz[big] += sz[small];
        nd[big].thr = float(e->cost + scale / double(sz[big]));
      }
    }
  };

  std::vector<Edge>& edges = ws.edges;
  edges.resize(M);
  if (numpyTies) {
    size_t ne = 0;
    forEachEdge([&](double c, uint32_t code) { edges[ne++] = {c, code}; });
    std::vector<double> cost(M);
    for (size_t k = 0; k < M; ++k) cost[k] = edges[k].cost;
    std::vector<int64_t> o(M);
    std::iota(o.begin(), o.end(), 0);
    if (M) numpyArgsort(cost.data(), o.data(), int64_t(M));
    std::vector<Edge> sorted(M);
    for (size_t k = 0; k < M; ++k) sorted[k] = edges[o[k]];
    edges.swap(sorted);
    unite(edges.data(), edges.data() + M);
  } else {
    // Counting sort into 4096 buckets of the cost (counted above), then each bucket is
    // sorted and merged while it is in cache.
    size_t biggest = 0;
    for (size_t b = 1; b < start.size(); ++b) {
      biggest = std::max<size_t>(biggest, start[b]);
      start[b] += start[b - 1];
    }
    std::vector<uint32_t> pos(start.begin(), start.end() - 1);
    Edge* E = edges.data();
    forEachEdge([&](double c, uint32_t code) { E[pos[costBucket(c)]++] = {c, code}; });
    ws.tmp.resize(biggest);
    ws.sortCounts.resize(size_t(kSortDepths) * (kMaxSortBins + 1));
    for (size_t b = 0; b + 1 < start.size(); ++b) {
      Edge *lo = E + start[b], *hi = E + start[b + 1];
      if (lo == hi) continue;
      // the next bucket streams in from L3 while this one is sorted and merged
      const char* nx = reinterpret_cast<const char*>(hi);
      const char* nxEnd = reinterpret_cast<const char*>(E + start[std::min(b + 2, start.size() - 1)]);
      for (size_t k = 0; k < 512 && nx < nxEnd; ++k, nx += 64) __builtin_prefetch(nx);
      sortByCost(lo, size_t(hi - lo), ws.tmp.data(), ws.sortCounts.data());
      unite(lo, hi);
    }
  }

  // Only components below min_size merge now, and a component that is still small holds only
  // pixels that were small after the first pass: edges between two big pixels are skipped.
  std::vector<uint8_t>& smallPx = ws.smallPx;
  smallPx.resize(N);
  size_t nSmall = 0;
  for (size_t p = 0; p < N; ++p) {
    smallPx[p] = sz[find(uint32_t(p))] < uint32_t(minSize);
    nSmall += smallPx[p];
  }
  auto mergeSmall = [&](const Edge& ed) {
    const uint32_t t = ed.code >> 30, p = ed.code & 0x3fffffffu;
    const uint32_t a = p + offA[t], b = p + offB[t];
    if (!smallPx[a] && !smallPx[b]) return;
    const uint32_t s0 = find(a), s1 = find(b);
    if (s0 == s1) return;
    if (sz[s0] < uint32_t(minSize) || sz[s1] < uint32_t(minSize)) {
      const uint32_t big = sz[s0] >= sz[s1] ? s0 : s1, small = big == s0 ? s1 : s0;
      nd[small].parent = big;
      sz[big] += sz[small];
    }
  };
  if (nSmall > 0 && (numpyTies || nSmall > N / 16)) {
    for (const Edge& ed : edges) mergeSmall(ed);
  } else if (nSmall > 0) {
    // Few small pixels: their edges (each pixel's up to 8) in (cost, code) order, which is
    // the order they have in the sorted edges, instead of a pass over all of them.
    std::vector<Edge>& se = ws.smallEdges;
    se.clear();
    auto add = [&](uint32_t t, long qy, long qx) {
      const size_t idx = typeBase[t] + size_t(qy) * typeW[t] + size_t(qx);
      se.push_back({cost[idx], (t << 30) | (uint32_t(qy) * uint32_t(W) + uint32_t(qx))});
    };
    for (long y = 0; y < H; ++y)
      for (long x = 0; x < W; ++x) {
        if (!smallPx[size_t(y) * W + x]) continue;
        const bool l = x > 0, r = x + 1 < W, u = y > 0, d = y + 1 < H;
        if (r) add(0, y, x);          // (p+1, p)
        if (l) add(0, y, x - 1);      // p as the right end
        if (d) add(1, y, x);          // (p+W, p)
        if (u) add(1, y - 1, x);
        if (r && d) add(2, y, x);     // (p+W+1, p)
        if (l && u) add(2, y - 1, x - 1);
        if (l && d) add(3, y, x - 1);  // (q+1, q+W) with p = q+1
        if (r && u) add(3, y - 1, x);  // p = q+W
      }
    std::sort(se.begin(), se.end(), [](const Edge& a, const Edge& b) {
      return a.cost < b.cost || (a.cost == b.cost && a.code < b.code);
    });
    for (size_t k = 0; k < se.size(); ++k)
      if (k == 0 || se[k].code != se[k - 1].code) mergeSmall(se[k]);
  }
  labels.resize(N);
  std::vector<int32_t>& rootLabel = ws.rootLabel;
  rootLabel.assign(N, -1);
  int next = 0;
  for (size_t p = 0; p < N; ++p) {
    const uint32_t r = find(uint32_t(p));
    if (rootLabel[r] < 0) rootLabel[r] = next++;
    labels[p] = rootLabel[r];
  }
  trimWorkspace();
  return next;
}

// ---------------------------------------------------------------- features

// np.histogram(values, bins, (0, 255)) bin of an exact value, as numpy computes it.
inline int numpyBin(double v, int bins) {
  const double step = 255.0 / bins;
  auto edge = [&](int i) { return i == bins ? 255.0 : double(i) * step + 0.0; };
  const double norm = double(bins) / 255.0;
  long idx = long((v - 0.0) * norm);
  if (idx == bins) idx -= 1;
  if (v < edge(int(idx))) idx -= 1;
  if (v >= edge(int(idx) + 1) && idx != bins - 1) idx += 1;
  return int(idx);
}

// skimage local_binary_pattern(P=8, R=1, 'default') of the three 0..255 channels, mode 'C'
// (cval 0). Axis-aligned samples interpolate to the neighbour exactly; the diagonal ones use
// skimage's bilinear arithmetic with r + rp, c + cp rounded as doubles (depends on r, c).
template <int Dummy>
inline void lbp8Impl(const uint8_t* rgb, int W, int H, std::vector<uint8_t>& out) {
  double rp[8], cp[8];
  for (int i = 0; i < 8; ++i) {
    const double ang = 2.0 * M_PI * double(i) / 8.0;
    rp[i] = std::nearbyint(-1.0 * std::sin(ang) * 1e5) / 1e5;  // np.round(x, 5)
    cp[i] = std::nearbyint(1.0 * std::cos(ang) * 1e5) / 1e5;
  }
  bool exact[8];
  std::vector<double> dc[8];
  for (int i = 0; i < 8; ++i) {
    exact[i] = std::floor(rp[i]) == rp[i] && std::floor(cp[i]) == cp[i];
    if (exact[i]) continue;
    dc[i].resize(W);
    for (int c = 0; c < W; ++c) {
      const double cc = double(c) + cp[i];
      dc[i][c] = cc - std::floor(cc);
    }
  }
  // Row by row: rows r-1, r, r+1 of each channel as doubles with a zero border (mode 'C'),
  // all 8 bits of a row accumulated in cache, written once. Each image row is converted once,
  // into a ring of 3 rows per channel; out-of-image rows point at a zero row.
  const int PW = W + 2;
  std::vector<double> rows(size_t(10) * PW, 0.0);
  const double* zero = &rows[size_t(9) * PW + 1];
  auto slot = [&](int ch, int y) { return &rows[size_t(ch * 3 + (y % 3)) * PW + 1]; };
  std::vector<uint64_t> acc(W);  // 64-bit lanes like the doubles compared: vectorisable
  out.resize(size_t(W) * H * 3);
  for (int y = 0; y < std::min(H, 1); ++y)
    for (int ch = 0; ch < 3; ++ch) {
      double* row = slot(ch, y);
      const uint8_t* src = rgb + size_t(y) * W * 3 + ch;
      for (int x = 0; x < W; ++x) row[x] = src[size_t(x) * 3];
    }
  for (int r = 0; r < H; ++r) {
    if (r + 1 < H)
      for (int ch = 0; ch < 3; ++ch) {  // row r+1 replaces row r-2
        double* row = slot(ch, r + 1);
        const uint8_t* src = rgb + size_t(r + 1) * W * 3 + ch;
        for (int x = 0; x < W; ++x) row[x] = src[size_t(x) * 3];
      }
    for (int ch = 0; ch < 3; ++ch) {
      const double* rowAt[3];
      for (int k = 0; k < 3; ++k) {
        const int y = r - 1 + k;
        rowAt[k] = y < 0 || y >= H ? zero : slot(ch, y);
      }
      std::fill(acc.begin(), acc.end(), 0);
      uint64_t* __restrict o = acc.data();
      const double* centre = rowAt[1];
      for (int i = 0; i < 8; ++i) {
        const double rr = double(r) + rp[i];
        const long r0 = long(std::floor(rr)), r1 = long(std::ceil(rr));
        const double dr = rr - double(r0);
        const double* row0 = rowAt[r0 - r + 1];
        const double* row1 = rowAt[r1 - r + 1];
        const uint64_t bit = uint64_t(1) << i;
        if (exact[i]) {
          const long off = long(cp[i]);  // same offset for every column
          for (int c = 0; c < W; ++c)
            o[c] |= row0[c + off] - centre[c] >= 0 ? bit : 0;
        } else {
          // floor/ceil of c + cp are c + o0, c + o1 for every column (cp is not integral)
          const long o0 = long(std::floor(cp[i])), o1 = long(std::ceil(cp[i]));
          const double* d = dc[i].data();
          for (int c = 0; c < W; ++c) {
            const double ddc = d[c];
            const double top = (1 - ddc) * row0[c + o0] + ddc * row0[c + o1];
            const double bottom = (1 - ddc) * row1[c + o0] + ddc * row1[c + o1];
            o[c] |= (1 - dr) * top + dr * bottom - centre[c] >= 0 ? bit : 0;
          }
        }
      }
      uint8_t* dst = out.data() + size_t(r) * W * 3 + ch;
      for (int c = 0; c < W; ++c) dst[size_t(c) * 3] = uint8_t(o[c]);
    }
  }
}

// The same code compiled for AVX2 (twice the doubles per instruction; no FMA, so every
// product and sum is rounded exactly as in the baseline build), picked at run time.
__attribute__((target("avx2"))) inline void lbp8Avx2(const uint8_t* rgb, int W, int H, std::vector<uint8_t>& out) {
  lbp8Impl<1>(rgb, W, H, out);
}
inline void lbp8(const uint8_t* rgb, int W, int H, std::vector<uint8_t>& out) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return lbp8Avx2(rgb, W, H, out);
  lbp8Impl<0>(rgb, W, H, out);
}

// ---------------------------------------------------------------- hierarchical grouping

constexpr int kColourBins = 25, kTextureBins = 10;
constexpr int kHC = 3 * kColourBins, kHT = 3 * kTextureBins;

struct Region {
  int minX, minY, maxX, maxY;  // inclusive, as the authors' code
  int64_t size;
};

// Histograms of every region, one row of `stride` doubles each: the colour bins that can differ
// (vOnly: the 25 V bins; the authors' H and S parts are always [1, 0, ..., 0] and their
// intersection sums to exactly 2.0 before the V bins, so starting there is bit-identical;
// else all 75), then the 30 texture bins. Compact rows keep the similarity reads in cache.
struct Hists {
  int colour = 0, stride = 0;
  double colourBase = 0.0;
  std::vector<double> v;
  double* row(int r) { return v.data() + size_t(r) * stride; }
};

// similarity of region t with each of k others: colour + texture + size + fill, each
// intersection a sequential left-to-right sum (Python's sum() over a list); four others at a
// time so that their eight independent sums overlap instead of waiting on each other.
inline void similarities(Hists& hs, const std::vector<Region>& R, int t, const int* others, int k,
                         double imsize, double* out) {
  const double* a = hs.row(t);
  const int C = hs.colour, S = hs.stride;
  const Region& rt = R[t];
  auto rest = [&](const Region& b, double colour, double texture) {
    const double size = 1.0 - double(rt.size + b.size) / imsize;
    const int64_t bb = int64_t(std::max(rt.maxX, b.maxX) - std::min(rt.minX, b.minX)) *
                       int64_t(std::max(rt.maxY, b.maxY) - std::min(rt.minY, b.minY));
    const double fill = 1.0 - double(bb - rt.size - b.size) / imsize;
    return colour + texture + size + fill;
  };
  int i = 0;
  for (; i + 4 <= k; i += 4) {
    const double* b0 = hs.row(others[i]);
    const double* b1 = hs.row(others[i + 1]);
    const double* b2 = hs.row(others[i + 2]);
    const double* b3 = hs.row(others[i + 3]);
    double c0 = hs.colourBase, c1 = c0, c2 = c0, c3 = c0;
    for (int q = 0; q < C; ++q) {
      const double x = a[q];
      c0 += (b0[q] < x ? b0[q] : x);
      c1 += (b1[q] < x ? b1[q] : x);
      c2 += (b2[q] < x ? b2[q] : x);
      c3 += (b3[q] < x ? b3[q] : x);
    }
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    for (int q = C; q < S; ++q) {
      const double x = a[q];
      t0 += (b0[q] < x ? b0[q] : x);
      t1 += (b1[q] < x ? b1[q] : x);
      t2 += (b2[q] < x ? b2[q] : x);
      t3 += (b3[q] < x ? b3[q] : x);
    }
    out[i] = rest(R[others[i]], c0, t0);
    out[i + 1] = rest(R[others[i + 1]], c1, t1);
    out[i + 2] = rest(R[others[i + 2]], c2, t2);
    out[i + 3] = rest(R[others[i + 3]], c3, t3);
  }
  for (; i < k; ++i) {
    const double* b = hs.row(others[i]);
    double c = hs.colourBase, tx = 0.0;
    for (int q = 0; q < C; ++q) c += (b[q] < a[q] ? b[q] : a[q]);
    for (int q = C; q < S; ++q) tx += (b[q] < a[q] ? b[q] : a[q]);
    out[i] = rest(R[others[i]], c, tx);
  }
}

// The authors' "intersect": a corner of b lies strictly inside a's box.
inline bool cornerInside(const Region& a, const Region& b) {
  const bool x0 = a.minX < b.minX && b.minX < a.maxX, x1 = a.minX < b.maxX && b.maxX < a.maxX;
  const bool y0 = a.minY < b.minY && b.minY < a.maxY, y1 = a.minY < b.maxY && b.maxY < a.maxY;
  return (x0 && y0) || (x1 && y1) || (x0 && y1) || (x1 && y0);
}

inline void hsvBins(const uint8_t* p, bool full, int out[3]) {
  const double r = p[0], g = p[1], b = p[2];
  const double v = std::max(r, std::max(g, b));
  if (!full) {  // H, S in [0, 1] always land in bin 0 of 25 over (0, 255)
    out[0] = 0;
    out[1] = 0;
    out[2] = numpyBin(v, kColourBins);
    return;
  }
  const double delta = v - std::min(r, std::min(g, b));
  double s = v > 0 ? delta / v : 0.0, h = 0.0;
  if (delta > 0) {
    if (b == v) h = 4.0 + (r - g) / delta;
    if (g == v) h = 2.0 + (b - r) / delta;
    if (r == v) h = (g - b) / delta;
    h = std::fmod(h / 6.0, 1.0);
    if (h < 0) h += 1.0;
  }
  out[0] = std::min(kColourBins - 1, int(h * kColourBins));
  out[1] = std::min(kColourBins - 1, int(s * kColourBins));
  out[2] = numpyBin(v, kColourBins);
}

// Runs grouping on a segmentation; appends every region's inclusive box (authors' order).
inline void groupRegions(const uint8_t* rgb, int W, int H, const std::vector<int32_t>& labels,
                         int n, const Params& prm, std::vector<Region>& R) {
  const size_t N = size_t(W) * H;
  R.assign(n, Region{});
  for (auto& r : R) { r.minX = 0xffff; r.minY = 0xffff; r.maxX = 0; r.maxY = 0; r.size = 0; }
  int vbin[256], tbin[256];
  for (int i = 0; i < 256; ++i) { vbin[i] = numpyBin(i, kColourBins); tbin[i] = numpyBin(i, kTextureBins); }
  (void)vbin;
  std::vector<uint8_t>& lbp = workspace().lbp;  // per pixel, the three channels' codes
  lbp8(rgb, W, H, lbp);
  std::vector<uint32_t> ccount(size_t(n) * kHC, 0), tcount(size_t(n) * kHT, 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const size_t p = size_t(y) * W + x;
      const int l = labels[p];
      Region& r = R[l];
      if (x < r.minX) r.minX = x;
      if (y < r.minY) r.minY = y;
      if (x > r.maxX) r.maxX = x;
      if (y > r.maxY) r.maxY = y;
      r.size++;
      int hb[3];
      hsvBins(rgb + p * 3, prm.fullHsv, hb);
      uint32_t* cc = &ccount[size_t(l) * kHC];
      cc[hb[0]]++;
      cc[kColourBins + hb[1]]++;
      cc[2 * kColourBins + hb[2]]++;
      uint32_t* tc = &tcount[size_t(l) * kHT];
      for (int c = 0; c < 3; ++c) tc[c * kTextureBins + tbin[lbp[p * 3 + c]]]++;
    }
  const bool vOnly = !prm.fullHsv;
  Hists hs;
  hs.colour = vOnly ? kColourBins : kHC;
  hs.stride = hs.colour + kHT;
  hs.colourBase = vOnly ? 2.0 : 0.0;
  const int c0 = vOnly ? 2 * kColourBins : 0;  // first colour bin kept
  hs.v.resize(size_t(2 * n) * hs.stride);
  for (int l = 0; l < n; ++l) {
    const double s = double(R[l].size);
    double* h = hs.row(l);
    for (int k = 0; k < hs.colour; ++k) h[k] = double(ccount[size_t(l) * kHC + c0 + k]) / s;
    for (int k = 0; k < kHT; ++k) h[hs.colour + k] = double(tcount[size_t(l) * kHT + k]) / s;
  }
  R.reserve(size_t(2 * n));

  // The authors keep similarities in an insertion-ordered dict and take the last maximal
  // pair; a stamp per (live) pair reproduces that order: max by (similarity, stamp).
  struct Entry { double sim; uint64_t stamp; int a, b; };
  struct Cmp {
    bool operator()(const Entry& x, const Entry& y) const {
      return x.sim < y.sim || (x.sim == y.sim && x.stamp < y.stamp);
    }
  };
  // Each region's pairs in stamp order (stamps only grow, and lists are only appended to).
  struct Adj { int other; uint64_t stamp; double sim; };
  std::vector<Entry> heapv;
  std::vector<std::vector<Adj>> adj(n);
  std::vector<char> alive(n, 1);
  const double imsize = double(N);
  uint64_t stamp = 0;
  std::vector<int> others;
  std::vector<double> sims;
  auto addPairs = [&](int t) {  // pairs (t, others[k]) in order, as new dict entries
    sims.resize(others.size());
    similarities(hs, R, t, others.data(), int(others.size()), imsize, sims.data());
    for (size_t k = 0; k < others.size(); ++k) {
      const uint64_t s = stamp++;
      heapv.push_back({sims[k], s, t, others[k]});
      adj[t].push_back({others[k], s, sims[k]});
      adj[others[k]].push_back({t, s, sims[k]});
    }
  };

  // Initial neighbour pairs (a < b) in the authors' enumeration order.
  if (!prm.pixelAdjacency) {
    for (int a = 0; a + 1 < n; ++a) {
      others.clear();
      for (int b = a + 1; b < n; ++b)
        if (cornerInside(R[a], R[b])) others.push_back(b);
      addPairs(a);
    }
  } else {
    std::vector<std::pair<int, int>> pairs;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int l = labels[size_t(y) * W + x];
        if (x + 1 < W && labels[size_t(y) * W + x + 1] != l)
          pairs.emplace_back(std::min(l, labels[size_t(y) * W + x + 1]), std::max(l, labels[size_t(y) * W + x + 1]));
        if (y + 1 < H && labels[size_t(y + 1) * W + x] != l)
          pairs.emplace_back(std::min(l, labels[size_t(y + 1) * W + x]), std::max(l, labels[size_t(y + 1) * W + x]));
      }
    std::sort(pairs.begin(), pairs.end());
    pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    for (size_t k = 0; k < pairs.size();) {
      const int a = pairs[k].first;
      others.clear();
      for (; k < pairs.size() && pairs[k].first == a; ++k) others.push_back(pairs[k].second);
      addPairs(a);
    }
  }
  std::priority_queue<Entry, std::vector<Entry>, Cmp> heap(Cmp(), std::move(heapv));
  size_t live = heap.size();
  std::vector<Adj> touched;
  std::vector<int> seenMark;
  while (!heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    if (!alive[top.a] || !alive[top.b]) continue;
    const int i = top.a, j = top.b, t = int(R.size());
    Region m;
    const Region &ri = R[i], &rj = R[j];
    m.minX = std::min(ri.minX, rj.minX);
    m.minY = std::min(ri.minY, rj.minY);
    m.maxX = std::max(ri.maxX, rj.maxX);
    m.maxY = std::max(ri.maxY, rj.maxY);
    m.size = ri.size + rj.size;
    {
      const double si = double(ri.size), sj = double(rj.size), sm = double(m.size);
      const double *hi = hs.row(i), *hj = hs.row(j);
      double* hm = hs.row(t);
      for (int k = 0; k < hs.stride; ++k) hm[k] = (hi[k] * si + hj[k] * sj) / sm;
    }
    R.push_back(m);
    alive[i] = alive[j] = 0;
    alive.push_back(1);
    // live pairs of i or j in dict order (both lists are in stamp order: merged, not sorted),
    // then re-inserted as (t, other) in that order
    touched.clear();
    auto liveOf = [&](const Adj& a) { return alive[a.other] != 0; };
    {
      const std::vector<Adj>&li = adj[i], &lj = adj[j];
      size_t p = 0, q = 0;
      while (p < li.size() || q < lj.size()) {
        const bool fromI = q == lj.size() || (p < li.size() && li[p].stamp < lj[q].stamp);
        const Adj& x = fromI ? li[p++] : lj[q++];
        if (liveOf(x)) touched.push_back(x);
      }
    }
    adj.emplace_back();
    seenMark.resize(R.size(), -1);
    live -= touched.size() + 1;  // pairs of i and j, (i, j) itself included
    others.clear();
    for (const Adj& a : touched) {
      if (seenMark[a.other] == t) continue;  // second assignment keeps the first position
      seenMark[a.other] = t;
      others.push_back(a.other);
    }
    live += others.size();
    std::vector<Adj>().swap(adj[i]);
    std::vector<Adj>().swap(adj[j]);
    sims.resize(others.size());
    similarities(hs, R, t, others.data(), int(others.size()), imsize, sims.data());
    for (size_t k = 0; k < others.size(); ++k) {
      const uint64_t s = stamp++;
      heap.push({sims[k], s, t, others[k]});
      adj[t].push_back({others[k], s, sims[k]});
      adj[others[k]].push_back({t, s, sims[k]});
    }
    // Dead pairs pile up in the heap and the lists (dense box-rule graphs): compact them when
    // they outnumber the live ones, so heap operations stay on a small, cache-resident heap.
    if (heap.size() > 2 * live + 4096) {
      std::vector<Entry> keep;
      keep.reserve(live);
      for (int r = 0; r < int(R.size()); ++r) {
        if (!alive[r]) continue;
        std::vector<Adj>& l = adj[r];
        size_t w = 0;
        for (const Adj& a : l)
          if (alive[a.other]) {
            l[w++] = a;
            if (r < a.other) keep.push_back({a.sim, a.stamp, r, a.other});
          }
        l.resize(w);
      }
      heap = std::priority_queue<Entry, std::vector<Entry>, Cmp>(Cmp(), std::move(keep));
    }
  }
}

// ---------------------------------------------------------------- filter + driver

// Keeps the authors' (x, y, w, h) semantics (w = max_x - min_x) for the thresholds.
inline bool keepRatioSize(int w, int h, double imgSqrt, int stage) {
  if (w < 32 || h < 32) return false;
  if (stage == 2) return true;
  const double ar = double(w) / double(h);
  if (!(1.0 / 3.0 <= ar && ar <= 3.0)) return false;
  if (stage == 1) return true;
  const double rel = std::sqrt(double(w) * double(h)) / imgSqrt;
  return 0.3 <= rel && rel <= 0.8;
}

// Area-average downscale (each output pixel = mean of the input area it covers).
inline void resizeArea(const uint8_t* src, int W, int H, int w, int h, std::vector<uint8_t>& dst) {
  dst.assign(size_t(w) * h * 3, 0);
  const double sx = double(W) / w, sy = double(H) / h;
  std::vector<double> acc(size_t(w) * 3);
  for (int y = 0; y < h; ++y) {
    std::fill(acc.begin(), acc.end(), 0.0);
    const double y0 = y * sy, y1 = (y + 1) * sy;
    for (int Y = int(y0); Y < H && Y < y1; ++Y) {
      const double wy = std::min<double>(Y + 1, y1) - std::max<double>(Y, y0);
      if (wy <= 0) continue;
      for (int x = 0; x < w; ++x) {
        const double x0 = x * sx, x1 = (x + 1) * sx;
        for (int X = int(x0); X < W && X < x1; ++X) {
          const double wx = std::min<double>(X + 1, x1) - std::max<double>(X, x0);
          if (wx <= 0) continue;
          const uint8_t* p = src + (size_t(Y) * W + X) * 3;
          for (int c = 0; c < 3; ++c) acc[x * 3 + c] += wx * wy * p[c];
        }
      }
    }
    const double area = sx * sy;
    for (int x = 0; x < w * 3; ++x)
      dst[size_t(y) * w * 3 + x] = uint8_t(std::min(255.0, std::floor(acc[x] / area + 0.5)));
  }
}

inline Result selectiveSearch(const uint8_t* rgbIn, int W0, int H0, const Params& prm,
                              std::vector<int32_t>* labelsOut = nullptr) {
  Result res;
  const uint8_t* rgb = rgbIn;
  int W = W0, H = H0;
  std::vector<uint8_t> small;
  if (prm.maxSide > 0 && std::max(W0, H0) > prm.maxSide) {
    const double f = double(prm.maxSide) / std::max(W0, H0);
    W = std::max(1, int(std::lround(W0 * f)));
    H = std::max(1, int(std::lround(H0 * f)));
    resizeArea(rgbIn, W0, H0, W, H, small);
    rgb = small.data();
  }
  res.width = W;
  res.height = H;
  std::vector<int32_t> labels;
  const int n = felzenszwalb(rgb, W, H, prm.scale, prm.sigma, prm.minSize, prm.numpyTieOrder, labels);
  res.segments = n;
  std::vector<Region> R;
  groupRegions(rgb, W, H, labels, n, prm, R);
  if (labelsOut) labelsOut->swap(labels);
  res.rawCount = int32_t(R.size());
  // unique boxes, first occurrence order
  std::vector<std::array<int, 4>> uniq;
  {
    std::vector<std::pair<std::array<int, 4>, int>> keyed;
    keyed.reserve(R.size());
    for (size_t k = 0; k < R.size(); ++k)
      keyed.push_back({{R[k].minX, R[k].minY, R[k].maxX, R[k].maxY}, int(k)});
    std::stable_sort(keyed.begin(), keyed.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<char> first(R.size(), 0);
    for (size_t k = 0; k < keyed.size(); ++k)
      if (k == 0 || keyed[k].first != keyed[k - 1].first) first[keyed[k].second] = 1;
    for (size_t k = 0; k < R.size(); ++k)
      if (first[k]) uniq.push_back({R[k].minX, R[k].minY, R[k].maxX, R[k].maxY});
  }
  res.uniqueCount = int32_t(uniq.size());
  std::vector<std::array<int, 4>> kept;
  if (prm.filter) {
    const double imgSqrt = std::sqrt(double(W) * double(H));
    res.filterStage = 3;
    for (int stage = 0; stage < 3 && kept.empty(); ++stage) {
      for (auto& b : uniq)
        if (keepRatioSize(b[2] - b[0], b[3] - b[1], imgSqrt, stage)) kept.push_back(b);
      if (!kept.empty()) res.filterStage = stage;
    }
  } else {
    kept = uniq;
  }
  // exact pixel extents, mapped back to the original image when downscaled
  const double fx = double(W0) / W, fy = double(H0) / H;
  const bool scaled = W != W0 || H != H0;
  res.boxes.reserve(kept.size() * 4);
  for (auto& b : kept) {
    int x0 = b[0], y0 = b[1], x1 = b[2] + 1, y1 = b[3] + 1;
    if (scaled) {
      x0 = int(std::floor(x0 * fx)); y0 = int(std::floor(y0 * fy));
      x1 = std::min(W0, int(std::ceil(x1 * fx))); y1 = std::min(H0, int(std::ceil(y1 * fy)));
    }
    res.boxes.insert(res.boxes.end(), {x0, y0, x1, y1});
  }
  trimWorkspace();
  return res;
}

}  // namespace soco_ss
