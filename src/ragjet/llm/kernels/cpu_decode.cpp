// The decoder layers of a decode step in one op (torch.ops.ragjet_cpu.decode_layers; built with cpu_kernels.cpp by
// kernels/cpu.py, used by models/cpu_decode.py).
//
// A decode step of a small model on a 2-core CPU is ~13 ms, of which ~4 ms is Python: module calls, views and
// the dispatch of ~30 small ops per layer, 30 layers a token. This op runs the same ops in the same order as
// the Python layers (models/llama.py, with int4 linears and the fused kernels) from C++, so it computes the same
// values; only the interpreter is gone. It covers steps of few rows whose every sequence already has a cache
// (decode and speculative verify steps): the Python path keeps every other case.

#include <ATen/ATen.h>
#include <torch/library.h>

#include "cpu_kernels.h"

namespace {

constexpr size_t LINEARS = 4;  // per layer, each a (packed int4 weight, scales and zeros) pair: qkv, o, gate/up, down

at::Tensor int4_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales_and_zeros,
                       int64_t group_size) {
  return at::_weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros);
}

// x: (T, hidden) token embeddings; cos, sin: (T, 1, D); slot_mapping: (T,); block_tables, context_lens,
// query_starts: as paged_attention reads them. Per layer l: norms[2l], norms[2l + 1] (input, post-attention),
// linears[8l .. 8l + 7] (qkv, o, gate_up, down: packed weight then scales and zeros), caches[2l], caches[2l + 1]
// (k, v: (num_blocks, block_size, Hkv, D)). Returns the last layer's (output, residual), as the Python loop
// leaves them for the final norm.
std::tuple<at::Tensor, at::Tensor> decode_layers(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                                 const at::Tensor& slot_mapping, const at::Tensor& block_tables,
                                                 const at::Tensor& context_lens, const at::Tensor& query_starts,
                                                 at::TensorList norms, at::TensorList linears, at::TensorList caches,
                                                 int64_t num_heads, int64_t num_kv_heads, int64_t group_size,
                                                 double eps, double scale) {
  const size_t layers = norms.size() / 2;
  TORCH_CHECK(norms.size() == 2 * layers && linears.size() == 2 * LINEARS * layers && caches.size() == 2 * layers,
              "decode_layers: 2 norms, 8 linear tensors and 2 caches per layer");
  TORCH_CHECK(x.dim() == 2 && layers > 0, "decode_layers: x must be (T, hidden) and there must be layers");
  const int64_t tokens = x.size(0), head_dim = caches[0].size(-1);
  const int64_t q_size = num_heads * head_dim, kv_size = num_kv_heads * head_dim;
  at::Tensor hidden = x, residual;
  for (size_t l = 0; l < layers; ++l) {
    const at::Tensor* w = linears.data() + 2 * LINEARS * l;
    auto [h, summed] = ragjet::cpu::add_rms_norm(hidden, l == 0 ? std::nullopt : std::optional<at::Tensor>(residual),
                                                 norms[2 * l], eps);
    residual = l == 0 ? hidden : summed;
    const at::Tensor qkv = int4_linear(h, w[0], w[1], group_size);  // (T, (Hq + 2 Hkv) D)
    const at::Tensor qk = qkv.narrow(1, 0, q_size + kv_size).view({tokens, num_heads + num_kv_heads, head_dim});
    const at::Tensor v = qkv.narrow(1, q_size + kv_size, kv_size).view({tokens, num_kv_heads, head_dim});
    ragjet::cpu::rotary_(qk, cos, sin);  // q and k together, in place
    const at::Tensor q = qk.narrow(1, 0, num_heads), k = qk.narrow(1, num_heads, num_kv_heads);
    const at::Tensor &k_cache = caches[2 * l], &v_cache = caches[2 * l + 1];
    k_cache.view({-1, num_kv_heads, head_dim}).index_copy_(0, slot_mapping, k);
    v_cache.view({-1, num_kv_heads, head_dim}).index_copy_(0, slot_mapping, v);
    const at::Tensor attended =
        ragjet::cpu::paged_attention(q, k_cache, v_cache, block_tables, context_lens, query_starts, scale);
    const at::Tensor o = int4_linear(attended.reshape({tokens, q_size}), w[2], w[3], group_size);
    auto [h2, summed2] = ragjet::cpu::add_rms_norm(o, residual, norms[2 * l + 1], eps);
    residual = summed2;
    const at::Tensor gate_up = int4_linear(h2, w[4], w[5], group_size);  // (T, 2 I)
    const auto halves = gate_up.chunk(2, -1);
    hidden = int4_linear(at::silu(halves[0]) * halves[1], w[6], w[7], group_size);
  }
  return {hidden, residual};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ragjet_cpu, m) {
  m.def(
      "decode_layers(Tensor x, Tensor cos, Tensor sin, Tensor slot_mapping, Tensor block_tables, "
      "Tensor context_lens, Tensor query_starts, Tensor[] norms, Tensor[] linears, Tensor(a!)[] caches, "
      "int num_heads, int num_kv_heads, int group_size, float eps, float scale) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(ragjet_cpu, CPU, m) { m.impl("decode_layers", &decode_layers); }
