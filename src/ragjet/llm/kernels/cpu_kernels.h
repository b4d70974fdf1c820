// Host functions of the fused CPU ops (cpu_kernels.cpp), callable from other sources of the same build without
// a trip through the dispatcher.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace ragjet::cpu {

std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                                                const at::Tensor& weight, double eps);
void rotary_(at::Tensor x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const at::Tensor& block_tables, const at::Tensor& context_lens,
                           const at::Tensor& query_starts, double scale);

}  // namespace ragjet::cpu
