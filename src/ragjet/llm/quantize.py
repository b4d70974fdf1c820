"""Weight quantisation as a transform applied to a built, loaded model (gpt-fast style).

Modes:
    ``"none"``: leave the model as loaded.
    ``"bf16"``: every floating parameter and buffer in bf16 (activations follow).
    ``"int8"``: every ``nn.Linear`` (the fused qkv/gate-up projections and the LM head) becomes an
        ``Int8WeightOnlyLinear`` with per-output-channel scales; everything else (embedding, norms,
        biases, activations, KV cache) runs in the compute dtype.
    ``"int4"`` (CPU only): as int8, but the decoder layers' linears become ``Int4WeightOnlyLinear``
        (groups of 32 inputs); the LM head (and a tied embedding) stays int8, as llama.cpp files keep
        the embedding at 8 bits. ``auto_quantization`` picks it for GGUF files whose layer weights are
        all Q4_1, which int4 groups represent exactly: it costs no accuracy against the file itself.

Compute dtype for int8/int4 on the CPU: the hardware policy's ``llm_dtype`` whatever the loaded dtype, bf16
wherever the weight-only kernels are vectorised (AVX2 and AVX-512: they widen bf16 in registers, while fp32
inputs take a reference loop ~20x slower); on other devices the loaded dtype (bf16/fp16 on CUDA). Measured on
SmolLM2-135M (see the tests and the bench notes): the bf16 activations cost more accuracy than the int8
weights do. Where the kernels are scalar (the generic level) ``auto`` does not quantise at all.

Dense prefill (``dense_prefill=True``, the CPU default through ``llm.dense_prefill``): each quantised
linear, the LM head included, also keeps a dense copy of its weight and uses it for steps of many rows
(``PrefillDenseLinear``): the weight-only kernels are fast for decode's few rows but several times slower
than a dense GEMM for a prefill or a large decode batch. The copy is in the policy's ``dense_dtype``: bf16
prepacked for oneDNN where bf16 GEMMs are native (2 bytes a parameter), fp32 elsewhere (4 bytes a
parameter; an AVX2 CPU's bf16 GEMM is emulated and ~10x slower than its fp32 one).

With tied embeddings the LM head is quantised from the embedding table and the embedding then reads
its rows from the same int8 table (``Int8Embedding``), so the two stay one tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from ragjet.hardware import cpu_policy
from ragjet.llm.layers.linear import INT4_GROUP_SIZE, Int4WeightOnlyLinear, Int8Embedding, Int8WeightOnlyLinear
from ragjet.llm.layers.prefill_linear import LM_HEAD_DENSE_MIN_ROWS, PrefillDenseLinear
from ragjet.llm.loaders.gguf import is_gguf, layer_weight_types

QuantizationMode = Literal["none", "int8", "int4", "bf16"]
QUANTIZATION_MODES: tuple[str, ...] = get_args(QuantizationMode)


def int8_compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The activation dtype an int8 model on ``device`` loaded as ``dtype`` computes in."""
    return cpu_policy().llm_dtype if device.type == "cpu" else dtype


def quantized_dtype(mode: str, device: torch.device, loaded_dtype: torch.dtype) -> torch.dtype:
    """The dtype a model loaded as ``loaded_dtype`` on ``device`` computes in after ``quantize_model(mode)``."""
    if mode == "bf16":
        return torch.bfloat16
    if mode in ("int8", "int4"):
        return int8_compute_dtype(device, loaded_dtype)
    return loaded_dtype


def auto_quantization(device: torch.device, source: Path) -> QuantizationMode:
    """What ``quantization = "auto"`` serves for weights loaded from ``source`` onto ``device``.

    None (the loaded bf16/fp16) off the CPU, and on a CPU whose weight-only kernels are scalar loops (dense
    fp32 BLAS is faster there); on other CPUs int4 for a GGUF file whose layer matrices are all Q4_1 (int4
    groups hold them exactly, and read half the bytes of int8), int8 otherwise.
    """
    if device.type != "cpu" or not cpu_policy().weight_only_kernels:
        return "none"
    if source.is_file() and is_gguf(source) and layer_weight_types(source) == {"Q4_1"}:
        return "int4"
    return "int8"


def compute_dtype(model: nn.Module) -> torch.dtype:
    """The dtype ``model`` computes in: what its activations, and so its KV cache, must use.

    Not the load dtype: an int8 model loaded in fp32 on the CPU computes in bf16.
    """
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def quantize_model(model: nn.Module, mode: QuantizationMode, dense_prefill: bool = False) -> nn.Module:
    """Quantise ``model`` in place and return it.

    Args:
        model: a loaded causal LM (``LlamaForCausalLM``: ``model.embed_tokens`` and ``lm_head``, None
            when tied). Call before the runner allocates its KV cache in ``compute_dtype(model)``.
        mode: ``"none"``, ``"int8"``, ``"int4"`` or ``"bf16"``.
        dense_prefill: with int8/int4, keep a dense copy of each layer weight for many-token steps.

    Raises:
        ValueError: an unknown mode, or int4 off the CPU.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"quantization mode {mode!r} is not one of {', '.join(map(repr, QUANTIZATION_MODES))}")
    param = next(model.parameters())
    dtype = quantized_dtype(mode, param.device, param.dtype)
    if mode == "bf16":
        return model.to(dtype)
    if mode in ("int8", "int4"):
        if mode == "int4" and param.device.type != "cpu":
            raise ValueError(f"int4 quantization runs on the CPU only, not on {param.device.type}")
        _quantize(model, dtype, mode, dense_prefill)
    return model


def _quantize(model: nn.Module, dtype: torch.dtype, mode: QuantizationMode, dense_prefill: bool) -> None:
    installed = _install_int8_head(model, dtype)  # before the layers are replaced, so the head stays int8
    replaced = _replace_linears(model, dtype, mode)
    # Norms, the untied embedding, scales and biases; int8/int4 tensors are left alone. Dense copies are made
    # after this, in their own dtype, which need not be the compute dtype.
    model.to(dtype)
    if not dense_prefill:
        return
    for parent, name, linear in replaced:
        quantized = getattr(parent, name)
        setattr(parent, name, PrefillDenseLinear(quantized, linear.weight, linear.bias))
    if installed is not None:
        head, weight = installed
        model.lm_head = PrefillDenseLinear(head, weight, head.bias, min_rows=LM_HEAD_DENSE_MIN_ROWS)


def _install_int8_head(model: nn.Module, dtype: torch.dtype) -> tuple[Int8WeightOnlyLinear, torch.Tensor] | None:
    """Make the LM head int8 (a tied embedding then reads its rows from it); returns it and its float weight."""
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    lm_head = getattr(model, "lm_head", "untied")
    if lm_head is None and isinstance(embed, nn.Embedding):
        weight, head = embed.weight, Int8WeightOnlyLinear.from_float(embed.weight, None, dtype)
        model.model.embed_tokens = Int8Embedding(head)  # type: ignore[union-attr]
    elif isinstance(lm_head, nn.Linear):
        weight, head = lm_head.weight, Int8WeightOnlyLinear.from_float(lm_head.weight, lm_head.bias, dtype)
    else:
        return None
    model.lm_head = head
    return head, weight


Replaced = list[tuple[nn.Module, str, nn.Linear]]


def _replace_linears(module: nn.Module, dtype: torch.dtype, mode: QuantizationMode) -> Replaced:
    """Swap every nn.Linear under ``module`` for its quantised form; returns (parent, name, float linear) each."""
    replaced: Replaced = []
    for name, child in module.named_children():
        if not isinstance(child, nn.Linear):
            replaced += _replace_linears(child, dtype, mode)
            continue
        quantized: nn.Module
        if mode == "int4" and child.in_features % INT4_GROUP_SIZE == 0:
            quantized = Int4WeightOnlyLinear.from_float(child.weight, child.bias, dtype)
        else:
            quantized = Int8WeightOnlyLinear.from_float(child.weight, child.bias, dtype)
        setattr(module, name, quantized)
        replaced.append((module, name, child))
    return replaced
