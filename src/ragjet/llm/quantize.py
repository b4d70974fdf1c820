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

Compute dtype for int8: bf16 on CPU whatever the loaded dtype, because the fused int8 kernel is only
fast for bf16 inputs (fp32 inputs take a reference loop ~20x slower than the bf16 one); on other devices
the loaded dtype (bf16/fp16 on CUDA). Measured on SmolLM2-135M (see the tests and the bench notes): the
bf16 activations cost more accuracy than the int8 weights do.

Dense prefill (``dense_prefill=True``, the CPU default through ``llm.dense_prefill``): each quantised
linear, the LM head included, also keeps a dense copy of its weight in the compute dtype (prepacked for
oneDNN on the CPU) and uses it for steps of many rows (``PrefillDenseLinear``): the weight-only kernels
are fast for decode's few rows but several times slower than a dense bf16 GEMM for a prefill or a large
decode batch. It costs 2 bytes a parameter of memory.

With tied embeddings the LM head is quantised from the embedding table and the embedding then reads
its rows from the same int8 table (``Int8Embedding``), so the two stay one tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from ragjet.llm.layers.linear import INT4_GROUP_SIZE, Int4WeightOnlyLinear, Int8Embedding, Int8WeightOnlyLinear
from ragjet.llm.layers.prefill_linear import LM_HEAD_DENSE_MIN_ROWS, PrefillDenseLinear
from ragjet.llm.loaders.gguf import is_gguf, layer_weight_types

QuantizationMode = Literal["none", "int8", "int4", "bf16"]
QUANTIZATION_MODES: tuple[str, ...] = get_args(QuantizationMode)


def int8_compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The activation dtype an int8 model on ``device`` loaded as ``dtype`` computes in."""
    return torch.bfloat16 if device.type == "cpu" else dtype


def auto_quantization(device: torch.device, source: Path) -> QuantizationMode:
    """What ``quantization = "auto"`` serves for weights loaded from ``source`` onto ``device``.

    None (the loaded bf16/fp16) off the CPU; on the CPU int4 for a GGUF file whose layer matrices are
    all Q4_1 (int4 groups hold them exactly, and read half the bytes of int8), int8 otherwise.
    """
    if device.type != "cpu":
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
    if mode == "bf16":
        return model.to(torch.bfloat16)
    if mode in ("int8", "int4"):
        param = next(model.parameters())
        if mode == "int4" and param.device.type != "cpu":
            raise ValueError(f"int4 quantization runs on the CPU only, not on {param.device.type}")
        _quantize(model, int8_compute_dtype(param.device, param.dtype), mode, dense_prefill)
    return model


def _quantize(model: nn.Module, dtype: torch.dtype, mode: QuantizationMode, dense_prefill: bool) -> None:
    installed = _install_int8_head(model, dtype)  # before the layers are replaced, so the head stays int8
    _replace_linears(model, dtype, mode, dense_prefill)
    if installed is not None and dense_prefill:
        head, weight = installed
        dense = weight.detach().to(dtype)
        model.lm_head = PrefillDenseLinear(head, dense, head.bias, min_rows=LM_HEAD_DENSE_MIN_ROWS)
    # Norms, the untied embedding, scales and biases; int8/int4 tensors and (already in dtype) dense copies are
    # left alone.
    model.to(dtype)


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


def _replace_linears(module: nn.Module, dtype: torch.dtype, mode: QuantizationMode, dense_prefill: bool) -> None:
    for name, child in module.named_children():
        if not isinstance(child, nn.Linear):
            _replace_linears(child, dtype, mode, dense_prefill)
            continue
        quantized: nn.Module
        if mode == "int4" and child.in_features % INT4_GROUP_SIZE == 0:
            quantized = Int4WeightOnlyLinear.from_float(child.weight, child.bias, dtype)
        else:
            quantized = Int8WeightOnlyLinear.from_float(child.weight, child.bias, dtype)
        if dense_prefill:
            quantized = PrefillDenseLinear(quantized, child.weight.detach().to(dtype), getattr(quantized, "bias", None))
        setattr(module, name, quantized)
