"""Loaders on real files: HF directories (single and sharded), GGUF files written the way llama.cpp's
converter writes them (q/k rows permuted, quantised), the converted-weights cache, and every bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ragjet.llm.config import UnsupportedModelError
from ragjet.llm.layers.attention import uncached_metadata
from ragjet.llm.loaders import ModelNotFoundError, WeightsError, load_model
from ragjet.llm.loaders import cache as cache_module
from ragjet.llm.loaders import gguf as gguf_module

TEXTS = ["Sourdough bread rises", "<|im_start|>user\nA Fresnel lens 1823!<|im_end|>", "  Ünïcödé 🙂\n\n"]


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        hidden = model(ids, torch.arange(len(ids)), uncached_metadata([len(ids)], ids.device))
        return model.compute_logits(hidden)


def as_f32(name: str, array: np.ndarray) -> tuple[np.ndarray, object]:
    return array, None


def as_q8_0(name: str, array: np.ndarray) -> tuple[np.ndarray, object]:
    import gguf

    if array.ndim == 1:  # llama.cpp keeps norms in F32
        return array, None
    return gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0


def with_int8_ffn_up(name: str, array: np.ndarray) -> tuple[np.ndarray, object]:
    return (array.astype(np.int8), None) if name == "blk.0.ffn_up.weight" else (array, None)


@pytest.fixture(scope="module")
def f32_gguf(tiny_llama_dir: Path, gguf_writer: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gguf_writer(tiny_llama_dir, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", as_f32)


IDS = torch.arange(0, 400, 7)


def test_gguf_loads_the_same_model_and_tokenizer_as_its_hf_source(
    f32_gguf: Path, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from_gguf = load_model(str(f32_gguf), cache_dir=tmp_path)
    from_hf = load_model(str(tiny_llama_dir))
    assert from_gguf.config.tie_word_embeddings and from_gguf.config.num_kv_heads == 2
    torch.testing.assert_close(logits(from_gguf.model, IDS), logits(from_hf.model, IDS), atol=1e-5, rtol=1e-5)
    for text in TEXTS:
        assert from_gguf.tokenizer.encode(text) == from_hf.tokenizer.encode(text)
    assert from_gguf.tokenizer.eos_token_ids == from_hf.tokenizer.eos_token_ids == {2}
    messages = [{"role": "user", "content": "Why does bread rise?"}]
    assert from_gguf.tokenizer.apply_chat_template(messages) == from_hf.tokenizer.apply_chat_template(messages)


def test_without_undoing_the_qk_permutation_the_model_is_wrong(
    f32_gguf: Path, tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_module, "unpermute_rope_rows", lambda weight, num_heads: weight)
    wrong = load_model(str(f32_gguf), cache_dir=tmp_path).model
    right = load_model(str(tiny_llama_dir)).model
    assert not torch.allclose(logits(wrong, IDS), logits(right, IDS), atol=1e-3)


def test_quantised_gguf_stays_close_to_the_float_model(
    tiny_llama_dir: Path, gguf_writer: Callable[..., Path], tmp_path: Path
) -> None:
    q8 = load_model(str(gguf_writer(tiny_llama_dir, tmp_path / "q8.gguf", as_q8_0)), cache_dir=tmp_path).model
    exact, approx = logits(load_model(str(tiny_llama_dir)).model, IDS), logits(q8, IDS)
    assert (approx - exact).abs().max() < 0.05
    assert (approx.argmax(-1) == exact.argmax(-1)).float().mean() > 0.9


def test_second_load_comes_from_the_cache(f32_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_model(str(f32_gguf), cache_dir=tmp_path)
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert entry.name.endswith("-float32") and (entry / "meta.json").is_file()
    assert len(json.loads((tmp_path / "hashes.json").read_text())) == 1

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(cache_module, "convert_gguf", no_conversion)
    second = load_model(str(f32_gguf), cache_dir=tmp_path)
    torch.testing.assert_close(logits(second.model, IDS), logits(first.model, IDS), atol=0, rtol=0)
    assert second.tokenizer.encode(TEXTS[1]) == first.tokenizer.encode(TEXTS[1])
    assert second.tokenizer.eos_token_id == first.tokenizer.eos_token_id


@pytest.mark.parametrize("damage", ["truncate-weights", "garbage-meta", "delete-tokenizer"])
def test_corrupt_cache_entry_is_rebuilt(f32_gguf: Path, tmp_path: Path, damage: str) -> None:
    reference = logits(load_model(str(f32_gguf), cache_dir=tmp_path).model, IDS)
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    weights = entry / "model.safetensors"
    if damage == "truncate-weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage-meta":
        (entry / "meta.json").write_text("{not json")
    else:
        (entry / "tokenizer.json").unlink()
    reloaded = load_model(str(f32_gguf), cache_dir=tmp_path)
    torch.testing.assert_close(logits(reloaded.model, IDS), reference, atol=0, rtol=0)
    meta = json.loads((entry / "meta.json").read_text())
    assert weights.stat().st_size == meta["sizes"]["model.safetensors"]


def test_unwritable_cache_dir_still_loads(f32_gguf: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    assert load_model(str(f32_gguf), cache_dir=blocker / "llm").config.num_layers == 2
    assert blocker.read_text() == "a file where the cache directory should be"


def test_sharded_checkpoint_loads_the_same_weights(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    source = tiny_model_dirs["qwen2"]
    AutoModelForCausalLM.from_pretrained(source).save_pretrained(tmp_path, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, tmp_path / name)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    single, sharded = load_model(str(source)).model, load_model(str(tmp_path)).model
    torch.testing.assert_close(logits(sharded, IDS), logits(single, IDS), atol=0, rtol=0)


def copy_model_dir(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_unknown_name_is_model_not_found() -> None:
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        load_model("no-such-model")


def test_directory_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(str(tmp_path))


def test_file_that_is_not_gguf_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_text("hello")
    with pytest.raises(ValueError, match="neither a GGUF"):
        load_model(str(path), cache_dir=tmp_path / "cache")


def test_truncated_gguf_is_rejected(f32_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(f32_gguf.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a readable GGUF"):
        load_model(str(path), cache_dir=tmp_path / "cache")


def test_unsupported_quantisation_names_tensor_and_type(
    tiny_llama_dir: Path, gguf_writer: Callable[..., Path], tmp_path: Path
) -> None:
    path = gguf_writer(tiny_llama_dir, tmp_path / "int8.gguf", with_int8_ffn_up)
    with pytest.raises(UnsupportedModelError, match=r"blk\.0\.ffn_up\.weight.*I8"):
        load_model(str(path), cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]  # nothing half-written cached


def test_unsupported_gguf_architecture(tmp_path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "falcon.gguf"), "falcon")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match="'falcon'"):
        load_model(str(tmp_path / "falcon.gguf"), cache_dir=tmp_path / "cache")


def test_unsupported_hf_architecture_names_it(tiny_llama_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(tiny_llama_dir, tmp_path / "m")
    edit_config(directory, architectures=["GPT2LMHeadModel"], model_type="gpt2")
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel"):
        load_model(str(directory))


def test_shape_mismatch_names_the_tensor(tiny_llama_dir: Path, tmp_path: Path) -> None:
    directory = copy_model_dir(tiny_llama_dir, tmp_path / "m")
    edit_config(directory, intermediate_size=96)
    with pytest.raises(WeightsError, match=r"gate_up_proj\.weight: shape \(256, 64\).*\(192, 64\)"):
        load_model(str(directory))


@pytest.mark.parametrize(
    ("missing", "message"), [("model.safetensors", "safetensors"), ("tokenizer.json", "tokenizer")]
)
def test_missing_files_are_named(tiny_llama_dir: Path, tmp_path: Path, missing: str, message: str) -> None:
    directory = copy_model_dir(tiny_llama_dir, tmp_path / "m")
    (directory / missing).unlink()
    with pytest.raises(FileNotFoundError, match=message):
        load_model(str(directory))
