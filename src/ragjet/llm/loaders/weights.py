"""From HF-named tensors to a built model: fuse q/k/v and gate/up, check every shape, assign.

Every loader (HF safetensors, GGUF, the converted-weights cache) ends here, so shape errors read the
same whatever the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

from ragjet.llm.config import ModelConfig
from ragjet.llm.models.llama import LlamaForCausalLM

# HF name -> (our fused name, slot in the fused tensor, number of slots).
_FUSED = [
    (re.compile(r"(.*\.self_attn)\.([qkv])_proj\.(weight|bias)$"), "{0}.qkv_proj.{2}", "qkv"),
    (re.compile(r"(.*\.mlp)\.(gate|up)_proj\.(weight)$"), "{0}.gate_up_proj.{2}", ("gate", "up")),
]
# Present in some checkpoints, recomputed by the model.
_IGNORED = re.compile(r".*\.rotary_emb\.inv_freq$")


class WeightsError(ValueError):
    """The weights do not fit the model their config describes (missing, unexpected or misshapen)."""


def fuse_hf_tensors(named: Iterable[tuple[str, torch.Tensor]], config: ModelConfig) -> dict[str, torch.Tensor]:
    """HF-named tensors (``model.layers.0.self_attn.q_proj.weight``...) -> our parameter names.

    q/k/v rows are concatenated into ``qkv_proj`` and gate/up rows into ``gate_up_proj``; a tied
    ``lm_head.weight`` is dropped.
    """
    state: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in named:
        if _IGNORED.match(name) or (config.tie_word_embeddings and name == "lm_head.weight"):
            continue
        for pattern, target, parts in _FUSED:
            match = pattern.match(name)
            if match is None:
                continue
            fused_name = target.format(*match.groups())
            group = pending.setdefault(fused_name, {})
            group[match.group(2)] = tensor
            if len(group) == len(parts):
                state[fused_name] = torch.cat([group[p] for p in parts], dim=0)
                del pending[fused_name]
            break
        else:
            state[name] = tensor
    if pending:
        name, group = next(iter(pending.items()))
        raise WeightsError(f"incomplete fused weight {name}: found only {sorted(group)}")
    return state


def build_model(
    config: ModelConfig, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
) -> LlamaForCausalLM:
    """A model whose parameters are ``state``'s tensors (moved to device/dtype), checked name by name.

    Built on the meta device first so no time goes into random initialisation of weights we replace.
    Raises WeightsError naming every missing or unexpected tensor and the first shape mismatch.
    """
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise WeightsError(
            f"weights do not match the {config.architecture} config: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    for name, param in expected.items():
        if state[name].shape != param.shape:
            raise WeightsError(
                f"{name}: shape {tuple(state[name].shape)} in the weights, "
                f"{tuple(param.shape)} expected from the config"
            )
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state.items()}, assign=True)
    # .to() moves the RoPE cache built on the CPU; no parameter needs gradients at inference.
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
