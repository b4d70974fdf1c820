"""Builders shared by test areas: a tiny random-weight chat Llama written as a real HF model directory
(config.json, safetensors, tokenizer.json, ChatML template) and a small three-document corpus."""

from __future__ import annotations

import json
import os
from pathlib import Path

from jinja2 import Template
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
COLLECTION = "facts"  # the name tests give the corpus's collection
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = {
    "lighthouse.md": (
        "# Lighthouses\n\nThe Pharos of Alexandria was a lighthouse built in the third century BC. "
        "It stood on the island of Pharos and guided sailors into the harbour for many centuries.\n\n"
        "## Lenses\n\nA Fresnel lens focuses the lamp's light into a beam visible far out at sea. "
        "Augustin Fresnel designed it in 1822 to replace heavy mirrors.\n"
    ),
    "volcano.md": (
        "# Volcanoes\n\nMount Etna on Sicily is one of the most active volcanoes in the world. "
        "Its eruptions have been recorded for thousands of years.\n\n"
        "## Lava\n\nBasaltic lava is runny and flows quickly, while rhyolitic lava is thick and explosive.\n"
    ),
    "bread.md": (
        "# Bread\n\nSourdough bread rises because wild yeast and lactic acid bacteria ferment the dough. "
        "A starter is fed with flour and water every day.\n\n"
        "## Baking\n\nBake the loaf in a hot oven at about 240 degrees Celsius with steam for a crisp crust.\n"
    ),
}


def train_tokenizer(texts: list[str], vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE trained on `texts`, with ChatML special tokens: a real, small tokenizer.json."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


class ChatMLTokenizer:
    """The generator view the prompt builder needs, from a tokenizer.json and a jinja chat template."""

    def __init__(self, tokenizer: Tokenizer, template: str = CHATML_TEMPLATE):
        self.tokenizer = tokenizer
        self.template = Template(template)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        return self.template.render(messages=messages, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def write_tiny_llama(directory: Path, tokenizer: Tokenizer) -> Path:
    """A 2-layer random-weight Llama saved like any HF checkpoint: config.json, safetensors, tokenizer files."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.token_to_id("<|im_end|>"),
    )
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = {"chat_template": CHATML_TEMPLATE, "eos_token": "<|im_end|>", "bos_token": None}
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return directory
