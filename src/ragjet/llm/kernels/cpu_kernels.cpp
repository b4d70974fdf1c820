// Fused CPU kernels for a decode step (registered as torch.ops.ragjet_cpu.*; loaded by kernels/cpu.py).
//
// A small model's decode step on the CPU is bound by per-op overhead and by memory passes, not FLOPs:
// an RMSNorm is eight torch ops, RoPE four, and paged attention first copies every sequence's keys and
// values out of the block pool and then reads the copies again. Each kernel here is one pass over its
// data, math in fp32, one rounding to the tensor's dtype at the end. Tensors are bf16 or fp32. The one
// hand-vectorised loop (paged attention's key scores) has an AVX-512 and an AVX2+FMA form, chosen by the
// build's level (kernels/cpu.py); a generic build runs the scalar / `omp simd` loops, which compute the same.
// (SiLU-and-mul is not here: torch's two vectorised ops beat a fused loop without a vector exp.)

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_kernels.h"

#include <algorithm>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// Row converters and exp written so that gcc vectorises them (-O3 and the level's -march): c10::BFloat16's own
// conversions check for NaN per element, which keeps loops scalar. The float -> bf16 rounding is
// round-to-nearest-even; a NaN stays a NaN unless its payload sits only in the low 16 bits.
inline void load_row(const float* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
inline void load_row(const c10::BFloat16* src, float* dst, int64_t n) {
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(src);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = static_cast<uint32_t>(bits[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    dst[i] = f;
  }
}
inline void store_row(const float* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
inline void store_row(const float* src, c10::BFloat16* dst, int64_t n) {
  uint16_t* bits = reinterpret_cast<uint16_t*>(dst);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, src + i, sizeof(u));
    u += 0x7FFFu + ((u >> 16) & 1u);
    bits[i] = static_cast<uint16_t>(u >> 16);
  }
}

// exp(x) for x <= 0 (softmax after subtracting the maximum): 2^n * 2^f with a degree-6 polynomial for 2^f,
// f in [-0.5, 0.5]; relative error ~2e-7. Inputs below -87 give 0.
#pragma omp declare simd
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.f);
  const float t = x * 1.44269504088896341f;  // x / ln 2
  const float n = std::nearbyint(t);
  const float f = (t - n) * 0.693147180559945309f;  // back to natural units, |f| <= ln2 / 2
  float p = 1.f / 720.f;
  p = p * f + 1.f / 120.f;
  p = p * f + 1.f / 24.f;
  p = p * f + 1.f / 6.f;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  uint32_t scale_bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

#ifdef __AVX512F__
// v[0..15] -> one vector whose element i is the sum of v[i]'s 16 elements: pairs are folded within 128-bit
// lanes (unpack + add, twice), then the four lanes of four vectors are transposed and added.
inline __m512 sum16(const __m512* v) {
  __m512 pairs[8], quads[4];
  for (int i = 0; i < 8; ++i)
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(pairs[2 * i]), b = _mm512_castps_pd(pairs[2 * i + 1]);
    quads[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // quads[i], lane L: partial sums over lane L of v[4i..4i+3]; add the four lanes of each.
  const __m512 h01 = _mm512_add_ps(_mm512_shuffle_f32x4(quads[0], quads[1], 0x44),   // lanes 0,1 | 0,1
                                   _mm512_shuffle_f32x4(quads[0], quads[1], 0xEE));  // lanes 2,3 | 2,3
  const __m512 h23 = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2], quads[3], 0x44),
                                   _mm512_shuffle_f32x4(quads[2], quads[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(h01, h23, 0x88),   // lanes 0,2 | 0,2
                       _mm512_shuffle_f32x4(h01, h23, 0xDD));  // lanes 1,3 | 1,3
}
#elif defined(__AVX2__) && defined(__FMA__)
// v[0..7] -> one vector whose element i is the sum of v[i]'s 8 elements: two rounds of horizontal adds leave,
// in each 128-bit lane, the partial sums of four vectors over that lane; the two lanes are then added.
inline __m256 sum8(const __m256* v) {
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),   // low lanes: s0123 | s4567
                       _mm256_permute2f128_ps(s0123, s4567, 0x31));  // high lanes
}
#endif

template <typename T>
void add_rms_norm_kernel(const T* x, const T* residual, const T* weight, T* out, T* summed, int64_t rows,
                         int64_t size, float eps) {
  std::vector<float> w(size);
  load_row(weight, w.data(), size);
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    std::vector<float> row(size), other(size);
    for (int64_t r = begin; r < end; ++r) {
      load_row(x + r * size, row.data(), size);
      if (residual != nullptr) {
        // The sum is rounded to the dtype first: it is the residual stream the next layer adds to.
        load_row(residual + r * size, other.data(), size);
#pragma omp simd
        for (int64_t i = 0; i < size; ++i) row[i] += other[i];
        store_row(row.data(), summed + r * size, size);
        load_row(summed + r * size, row.data(), size);
      }
      float sum_sq = 0.f;
#pragma omp simd reduction(+ : sum_sq)
      for (int64_t i = 0; i < size; ++i) sum_sq += row[i] * row[i];
      const float inv = 1.f / std::sqrt(sum_sq / static_cast<float>(size) + eps);
#pragma omp simd
      for (int64_t i = 0; i < size; ++i) row[i] = row[i] * inv * w[i];
      store_row(row.data(), out + r * size, size);
    }
  });
}

template <typename T>
void rotary_kernel(T* x, int64_t tokens, int64_t heads, int64_t token_stride, int64_t head_stride, const T* cos,
                   const T* sin, int64_t dim) {
  const int64_t half = dim / 2;
  at::parallel_for(0, tokens, 64, [&](int64_t begin, int64_t end) {
    std::vector<float> c(dim), s(dim), v(dim), rotated(dim);
    for (int64_t t = begin; t < end; ++t) {
      load_row(cos + t * dim, c.data(), dim);
      load_row(sin + t * dim, s.data(), dim);
      for (int64_t h = 0; h < heads; ++h) {
        T* row = x + t * token_stride + h * head_stride;
        load_row(row, v.data(), dim);
        // sin carries the sign: rows are (-sin | sin), so this is rotate-half.
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          rotated[i] = v[i] * c[i] + v[i + half] * s[i];
          rotated[i + half] = v[i + half] * c[i + half] + v[i] * s[i + half];
        }
        store_row(rotated.data(), row, dim);
      }
    }
  });
}

// Few queries per sequence (a decode step has one, a speculative verify step 1 + its draft); query i of
// a sequence with q_len new tokens and len tokens in all sits at position len - q_len + i and sees keys
// 0..that position. Its Hq heads share Hkv key/value heads in groups of G = Hq / Hkv. A work item is one
// sequence and a run of its kv heads: all of them when there are enough sequences to keep every thread
// busy (each token's keys are then one contiguous read), one otherwise. An item reads its keys and values
// once, straight from the block pool, for every query of its heads. DIM > 0 fixes the head size at compile
// time (fully unrolled row loops, about twice as fast); DIM == 0 reads it from `head_dim`.
template <typename T, int64_t DIM>
void paged_attention_kernel(const T* q, int64_t q_token_stride, int64_t q_head_stride, const T* k_cache,
                            const T* v_cache, const int64_t* block_tables, int64_t max_blocks,
                            const int64_t* context_lens, const int64_t* query_starts, T* out, int64_t seqs,
                            int64_t q_heads, int64_t kv_heads, int64_t head_dim, int64_t block_size, float scale) {
  const int64_t group = q_heads / kv_heads, dim = DIM > 0 ? DIM : head_dim;
  const int64_t runs = seqs >= 2 * at::get_num_threads() ? 1 : kv_heads, run_heads = kv_heads / runs;
  const int64_t run_queries = run_heads * group, run_width = run_heads * dim;
  at::parallel_for(0, seqs * runs, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf, acc, row(run_width), keys(16 * run_width), scores;
    std::vector<int64_t> kv_offset, visible, slots;  // per query: its kv head's place in a row, keys it sees
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / runs, h0 = (item % runs) * run_heads, len = context_lens[b];
      const int64_t first = query_starts[b], q_len = query_starts[b + 1] - first, n = q_len * run_queries;
      const int64_t* table = block_tables + b * max_blocks;
      qf.resize(n * dim);
      acc.assign(n * dim, 0.f);
      scores.resize(n * len);
      kv_offset.resize(n);
      visible.resize(n);
      slots.resize(len);  // the block table walked once per item, not once per key and again per value
      for (int64_t blk = 0, t = 0; t < len; ++blk)
        for (int64_t o = 0; o < block_size && t < len; ++o, ++t) slots[t] = table[blk] * block_size + o;
      for (int64_t i = 0; i < q_len; ++i) {
        for (int64_t j = 0; j < run_queries; ++j) {  // query (i, j): token first + i, head h0 * group + j
          const int64_t r = i * run_queries + j;
          load_row(q + (first + i) * q_token_stride + (h0 * group + j) * q_head_stride, qf.data() + r * dim, dim);
#pragma omp simd
          for (int64_t d = 0; d < dim; ++d) qf[r * dim + d] *= scale;
          kv_offset[r] = (j / group) * dim;
          visible[r] = len - q_len + i + 1;
        }
      }
      int64_t t = 0;
#ifdef __AVX512F__
      if constexpr (DIM > 0 && DIM % 16 == 0) {
        // Sixteen keys at a time: each query's 16 dot products stay whole vectors until one transposing
        // reduction (sum16) packs them into one; a dot product at a time spent most of its time reducing.
        // The last group is padded with zero keys rather than finished by the scalar loop below, so every
        // key's dot product is summed in one order wherever it falls: a verify step, whose sequence holds
        // its draft's keys too, then scores each query exactly as the decode step at that position would.
        for (; t < len; t += 16) {
          const int64_t count = std::min<int64_t>(16, len - t);
          for (int64_t u = 0; u < count; ++u)
            load_row(k_cache + (slots[t + u] * kv_heads + h0) * dim, keys.data() + u * run_width, run_width);
          std::fill(keys.begin() + count * run_width, keys.end(), 0.f);
          for (int64_t r = 0; r < n; ++r) {
            const float* qr = qf.data() + r * dim;
            const float* kr = keys.data() + kv_offset[r];
            __m512 products[16];
            for (int64_t u = 0; u < 16; ++u) {
              const float* ku = kr + u * run_width;
              __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qr), _mm512_loadu_ps(ku));
              for (int64_t c = 16; c < DIM; c += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qr + c), _mm512_loadu_ps(ku + c), acc);
              products[u] = acc;
            }
            _mm512_mask_storeu_ps(scores.data() + r * len + t, static_cast<__mmask16>((1u << count) - 1),
                                  sum16(products));
          }
        }
      }
#elif defined(__AVX2__) && defined(__FMA__)
      if constexpr (DIM > 0 && DIM % 8 == 0) {
        // The AVX2 form of the loop above: eight keys at a time, reduced by sum8, the last group padded with
        // zero keys for the same reason.
        for (; t < len; t += 8) {
          const int64_t count = std::min<int64_t>(8, len - t);
          for (int64_t u = 0; u < count; ++u)
            load_row(k_cache + (slots[t + u] * kv_heads + h0) * dim, keys.data() + u * run_width, run_width);
          std::fill(keys.begin() + count * run_width, keys.begin() + 8 * run_width, 0.f);
          for (int64_t r = 0; r < n; ++r) {
            const float* qr = qf.data() + r * dim;
            const float* kr = keys.data() + kv_offset[r];
            __m256 products[8];
            for (int64_t u = 0; u < 8; ++u) {
              const float* ku = kr + u * run_width;
              __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(qr), _mm256_loadu_ps(ku));
              for (int64_t c = 8; c < DIM; c += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qr + c), _mm256_loadu_ps(ku + c), acc);
              products[u] = acc;
            }
            alignas(32) float sums[8];
            _mm256_store_ps(sums, sum8(products));
            std::copy(sums, sums + count, scores.data() + r * len + t);
          }
        }
      }
#endif
      for (; t < len; ++t) {  // every key, where the vector path above does not apply
        load_row(k_cache + (slots[t] * kv_heads + h0) * dim, keys.data(), run_width);
        for (int64_t r = 0; r < n; ++r) {
          const float* qr = qf.data() + r * dim;
          const float* kr = keys.data() + kv_offset[r];
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < dim; ++d) dot += qr[d] * kr[d];
          scores[r * len + t] = dot;
        }
      }
      for (int64_t r = 0; r < n; ++r) {
        float* sr = scores.data() + r * len;
        const int64_t seen = visible[r];
        float peak = -INFINITY, total = 0.f;
        for (int64_t t = 0; t < seen; ++t) peak = std::max(peak, sr[t]);
#pragma omp simd reduction(+ : total)
        for (int64_t t = 0; t < seen; ++t) {
          sr[t] = exp_nonpositive(sr[t] - peak);
          total += sr[t];
        }
        const float inv = 1.f / total;
#pragma omp simd
        for (int64_t t = 0; t < seen; ++t) sr[t] *= inv;
        std::fill(sr + seen, sr + len, 0.f);  // keys after the query's own position
      }
      for (int64_t t = 0; t < len; ++t) {
        load_row(v_cache + (slots[t] * kv_heads + h0) * dim, row.data(), run_width);
        for (int64_t r = 0; r < n; ++r) {
          const float p = scores[r * len + t];
          const float* vr = row.data() + kv_offset[r];
          float* ar = acc.data() + r * dim;
#pragma omp simd
          for (int64_t d = 0; d < dim; ++d) ar[d] += p * vr[d];
        }
      }
      for (int64_t i = 0; i < q_len; ++i)
        for (int64_t j = 0; j < run_queries; ++j)
          store_row(acc.data() + (i * run_queries + j) * dim, out + ((first + i) * q_heads + h0 * group + j) * dim,
                    dim);
    }
  });
}

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kFloat, name, " must be bf16 or fp32");
}

#define DISPATCH(dtype, ...)                                                          \
  if ((dtype) == at::kBFloat16) {                                                    \
    using scalar_t = c10::BFloat16;                                                  \
    __VA_ARGS__();                                                                   \
  } else {                                                                           \
    using scalar_t = float;                                                          \
    __VA_ARGS__();                                                                   \
  }

}  // namespace

// The ops' host functions, declared in cpu_kernels.h for the fused decode op (cpu_decode.cpp).
namespace ragjet::cpu {

// x, residual: (rows, size); weight: (size,). Returns (norm(x + residual) * weight, x + residual); without a
// residual, (norm(x) * weight, an empty tensor): outputs never alias inputs, as the schema promises.
std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                                                const at::Tensor& weight, double eps) {
  check_float(x, "x");
  const int64_t size = x.size(-1), rows = x.numel() / size;
  auto xc = x.contiguous(), wc = weight.to(x.scalar_type()).contiguous();
  auto out = at::empty_like(xc);
  at::Tensor rc, summed = at::empty({0}, xc.options());
  if (residual.has_value()) {
    rc = residual->contiguous();
    TORCH_CHECK(rc.sizes() == xc.sizes() && rc.scalar_type() == xc.scalar_type(), "residual must match x");
    summed = at::empty_like(xc);
  }
  DISPATCH(x.scalar_type(), [&] {
    add_rms_norm_kernel<scalar_t>(xc.data_ptr<scalar_t>(), rc.defined() ? rc.data_ptr<scalar_t>() : nullptr,
                                  wc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                  rc.defined() ? summed.data_ptr<scalar_t>() : nullptr, rows, size,
                                  static_cast<float>(eps));
  });
  return {out, summed};
}

// x: (T, H, D) with unit stride in D, rotated in place; cos, sin: (T, 1, D) rows from RotaryEmbedding.
void rotary_(at::Tensor x, const at::Tensor& cos, const at::Tensor& sin) {
  check_float(x, "x");
  TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "x must be (T, H, D) with contiguous D");
  const int64_t dim = x.size(2);
  auto cc = cos.to(x.scalar_type()).contiguous(), sc = sin.to(x.scalar_type()).contiguous();
  TORCH_CHECK(cc.numel() == x.size(0) * dim && sc.numel() == cc.numel(), "cos/sin must be (T, 1, D)");
  DISPATCH(x.scalar_type(), [&] {
    rotary_kernel<scalar_t>(x.data_ptr<scalar_t>(), x.size(0), x.size(1), x.stride(0), x.stride(1),
                            cc.data_ptr<scalar_t>(), sc.data_ptr<scalar_t>(), dim);
  });
}

// q: (T, Hq, D), every sequence's new tokens flattened, unit stride in D; k_cache, v_cache: (num_blocks,
// block_size, Hkv, D) contiguous, this step's keys already written; block_tables: (B, max_blocks) int64;
// context_lens: (B,) int64; query_starts: (B + 1,) int64, sequence b's queries are rows
// query_starts[b]..query_starts[b + 1]. Returns (T, Hq, D).
at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const at::Tensor& block_tables, const at::Tensor& context_lens,
                           const at::Tensor& query_starts, double scale) {
  check_float(q, "q");
  TORCH_CHECK(q.dim() == 3 && q.stride(2) == 1, "q must be (T, Hq, D) with contiguous D");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "the KV cache must be contiguous");
  TORCH_CHECK(k_cache.scalar_type() == q.scalar_type() && v_cache.scalar_type() == q.scalar_type(),
              "q and the KV cache must share a dtype");
  const int64_t q_heads = q.size(1), dim = q.size(2);
  const int64_t block_size = k_cache.size(1), kv_heads = k_cache.size(2);
  TORCH_CHECK(k_cache.size(3) == dim && q_heads % kv_heads == 0, "head shapes of q and the KV cache differ");
  auto tables = block_tables.to(at::kLong).contiguous(), lens = context_lens.to(at::kLong).contiguous();
  auto starts = query_starts.to(at::kLong).contiguous();
  const int64_t seqs = lens.numel();
  TORCH_CHECK(tables.size(0) == seqs && starts.numel() == seqs + 1, "one block table and length per sequence");
  TORCH_CHECK(starts.data_ptr<int64_t>()[seqs] == q.size(0), "query_starts must end at the number of queries");
  auto out = at::empty({q.size(0), q_heads, dim}, q.options());
  DISPATCH(q.scalar_type(), [&] {
    auto kernel = dim == 64    ? paged_attention_kernel<scalar_t, 64>
                  : dim == 128 ? paged_attention_kernel<scalar_t, 128>
                               : paged_attention_kernel<scalar_t, 0>;
    kernel(q.data_ptr<scalar_t>(), q.stride(0), q.stride(1), k_cache.data_ptr<scalar_t>(),
           v_cache.data_ptr<scalar_t>(), tables.data_ptr<int64_t>(), tables.size(1), lens.data_ptr<int64_t>(),
           starts.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), seqs, q_heads, kv_heads, dim, block_size,
           static_cast<float>(scale));
  });
  return out;
}

}  // namespace ragjet::cpu

TORCH_LIBRARY(ragjet_cpu, m) {
  m.def("add_rms_norm(Tensor x, Tensor? residual, Tensor weight, float eps) -> (Tensor, Tensor)");
  m.def("rotary_(Tensor(a!) x, Tensor cos, Tensor sin) -> ()");
  m.def(
      "paged_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor block_tables, Tensor context_lens, "
      "Tensor query_starts, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(ragjet_cpu, CPU, m) {
  m.impl("add_rms_norm", &ragjet::cpu::add_rms_norm);
  m.impl("rotary_", &ragjet::cpu::rotary_);
  m.impl("paged_attention", &ragjet::cpu::paged_attention);
}
